"""Which certification procedure runs, with its settings: fixed-n CERTIFY, sequential decisions, or ISS.

- "fixed": Cohen et al.'s CERTIFY (ICML 2019, arXiv:1902.02918): n0 selection and n estimation
  samples on every point, the one-sided Clopper-Pearson bound on pA.
- "sequential": Voracek & Hein (NeurIPS 2024, arXiv:2406.17830): decide "robust at r" for each r
  of `radii` with anytime-valid tests, stopping as soon as every radius is decided or out of reach;
  `n` is the budget of estimation samples (`bastion.certify.sequential`).
- "iss": Chen et al. (AAAI 2022, arXiv:2112.12084): a radius per point, CERTIFY with an
  input-specific n. `allocation` "global" (the default) plans every point's n together so that the
  *mean* expected radius decline against n = `n`, over the points expected to certify, is at most
  `decline` (`bastion.certify.plan`); "point" caps each point's own decline (`bastion.certify.iss`).

`randomized` replaces the Clopper-Pearson bound of "fixed" and "iss" by its randomized version
(Voracek & Hein 2024, section 3), whose uniform draw comes from the point's own seeded stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import InputError

__all__ = ["ALLOCATIONS", "DEFAULTS", "KINDS", "Procedure"]

KINDS = ("fixed", "sequential", "iss")
ALLOCATIONS = ("global", "point")  # radius mode: a cap on the mean decline, or on each point's

# Per kind: (n0, n). Sequential: a 16-sample selection and a 30,000-sample budget, chosen by simulation
# on the zoo noise model's pA at sigma 0.5 (radii 0.5 and 1): the certified counts of fixed-n CERTIFY with
# n = 10,000 for about a tenth of its samples (see benchmarks/bench_certify_sequential.py).
DEFAULTS = {"fixed": (100, 100_000), "sequential": (16, 30_000), "iss": (100, 100_000)}
DEFAULT_DECLINE = 0.05


@dataclass(frozen=True)
class Procedure:
    """A certification procedure and its settings.

    Attributes:
        kind: "fixed", "sequential" or "iss".
        n0: Selection samples per point.
        n: Estimation samples per point (fixed), or the most a point may draw (sequential, iss).
        alpha: Error probability in (0, 1).
        radii: The radii a sequential run decides.
        decline: ISS's largest expected radius loss against n (L2 units): the mean over the points
            the plan expects to certify with allocation "global", each point's with "point".
        allocation: ISS's sample allocation, "global" (`bastion.certify.plan`) or "point".
        randomized: Use the randomized Clopper-Pearson bound (fixed, iss).
        sound: Sample soundly in floating point (`bastion.certify.sound`, Voracek & Hein, ICLR 2023):
            on by default, it costs about 5% more time for a slack of about 1e-8 on pA.
    """

    kind: str = "fixed"
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    radii: tuple[float, ...] = field(default_factory=tuple)
    decline: float = DEFAULT_DECLINE
    randomized: bool = False
    sound: bool = True
    allocation: str = "global"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown certification procedure {self.kind!r}; choose one of: {', '.join(KINDS)}")
        for name, value in (("n0", self.n0), ("n", self.n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise InputError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if not (math.isfinite(self.decline) and self.decline > 0):
            raise InputError(f"decline must be a number > 0, got {self.decline!r}")
        if self.allocation not in ALLOCATIONS:
            raise InputError(f"unknown sample allocation {self.allocation!r}; choose one of: {', '.join(ALLOCATIONS)}")
        if self.kind == "sequential" and self.randomized:
            raise InputError("the randomized Clopper-Pearson bound applies to fixed-n and ISS runs, not --sequential "
                             "with --radii")

    @classmethod
    def build(cls, *, sequential: bool, radii: Sequence[float] | None, n0: int | None, n: int | None,
              alpha: float, decline: float | None = None, randomized: bool = False,
              sound: bool = True, allocation: str | None = None) -> Procedure:
        """The procedure a command line asks for: --sequential with --radii decides them, without gives ISS."""
        kind = "fixed" if not sequential else ("sequential" if radii else "iss")
        default_n0, default_n = DEFAULTS[kind]
        return cls(kind=kind, n0=default_n0 if n0 is None else n0, n=default_n if n is None else n, alpha=alpha,
                   radii=tuple(sorted(float(r) for r in radii or ())),
                   decline=DEFAULT_DECLINE if decline is None else decline, randomized=randomized, sound=sound,
                   allocation=ALLOCATIONS[0] if allocation is None else allocation)

    @property
    def fixed_samples(self) -> int:
        """Samples per point of fixed-n CERTIFY with this n (and its usual n0 of 100): the cost to compare with."""
        return DEFAULTS["fixed"][0] + self.n

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings recorded with the results."""
        out: dict[str, Any] = {"procedure": self.kind, "n0": self.n0, "n": self.n, "alpha": self.alpha,
                               "randomized": self.randomized, "sound": self.sound}
        if self.kind == "sequential":
            out["decided_radii"] = list(self.radii)
        if self.kind == "iss":
            out["decline"] = self.decline
            out["allocation"] = self.allocation
        return out

    def describe(self) -> str:
        """One line for the terminal."""
        if self.kind == "sequential":
            return (f"sequential decisions at radii {', '.join(f'{r:g}' for r in self.radii)} (n0={self.n0}, "
                    f"budget n={self.n}, alpha={self.alpha:g})")
        if self.kind == "iss":
            per = "mean" if self.allocation == "global" else "per-point"
            return (f"input-specific sample size (ISS, n0={self.n0}, n <= {self.n}, {per} radius decline <= "
                    f"{self.decline:g}, alpha={self.alpha:g})")
        return f"CERTIFY with fixed n0={self.n0}, n={self.n}, alpha={self.alpha:g}"
