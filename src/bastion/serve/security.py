"""Protection of the server itself: API key, per-key rate limit, failed-key limit per address, body-size limit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.serve.payloads import RequestError

__all__ = ["ApiKey", "RateLimiter", "read_key_file"]


def read_key_file(path: str | Path) -> str:
    """The key in a file (surrounding whitespace dropped); at least 16 characters."""
    file = Path(path)
    try:
        key = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the API key file {file}: {error}") from None
    if len(key) < 16:
        raise InputError(f"the API key in {file} is shorter than 16 characters")
    return key


class ApiKey:
    """Checks `Authorization: Bearer KEY`, `X-API-Key: KEY` or HTTP Basic (any user, KEY as the password).

    Basic lets a browser open the status page (it asks once and resends the key with the page's
    own requests). The comparison runs in constant time (`hmac.compare_digest`), both sides hashed
    first, so its time does not even depend on the key's length.
    """

    def __init__(self, key: str) -> None:
        self._digest = hashlib.sha256(key.encode()).digest()

    def check(self, headers: Any) -> str:
        """The presented key's identity (a short hash) if valid; RequestError 401 otherwise."""
        presented = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if presented is None and auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
        elif presented is None and auth.lower().startswith("basic "):
            try:
                presented = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                presented = None
        if not presented:
            raise RequestError(401, "an API key is required (Authorization: Bearer KEY or X-API-Key: KEY)")
        digest = hashlib.sha256(presented.encode()).digest()
        if not hmac.compare_digest(digest, self._digest):
            raise RequestError(401, "the API key is not valid")
        return digest.hex()[:12]


class RateLimiter:
    """A token bucket per client key: `rate` requests per second on average, bursts up to `burst`.

    Args:
        rate: Tokens added per second.
        burst: Bucket size.
        clock: Monotonic clock (replaceable in tests).
        what: The limit's name in the 429 message.
    """

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic, what: str = "rate limit") -> None:
        self.rate, self.burst, self.clock, self.what = rate, burst, clock, what
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """RequestError 429 when `key`'s bucket holds less than one token; spends nothing."""
        self.take(key, 1.0, spend=False)

    def take(self, key: str, cost: float = 1.0, *, spend: bool = True) -> None:
        """Spend `cost` tokens of `key`'s bucket; RequestError 429 (with `retry_after`) when it is short."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                wait = (cost - tokens) / self.rate
                raise RequestError(429, f"{self.what} of {self.rate:g} per second exceeded; retry in {wait:.2f} s",
                                   retry_after=wait)
            self._buckets[key] = (tokens - cost if spend else tokens, now)
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow without bound
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}
