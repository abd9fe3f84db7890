"""Online drift monitor: windowed two-sample tests of confidence and margin against the calibration set.

Traffic is cut into consecutive windows of `window` requests. For each monitored signal (the top
softmax probability and the logit margin) a window is compared with clean reference values by a
one-sided, variance-weighted Kolmogorov-Smirnov statistic on a grid of the reference's lower-half
quantiles (`ks_on_grid`; the windowed two-sample scheme of Rabanser, Guennemann & Lipton, "Failing
Loudly", NeurIPS 2019, arXiv:1810.11953, with the tail weighting of Anderson & Darling 1952). It
looks for more low-confidence, low-margin inputs than clean traffic has: a share of attacked or
out-of-distribution inputs lands there, while more confident traffic is no cause for alarm.

The alarm threshold is calibrated by Monte Carlo on held-out clean values (half the calibration
values; the other half is the reference): windows drawn from them with replacement give the
statistic's null distribution, and the threshold is its (1 - q) quantile with
q = window / run_length / signals. A clean window then alarms with probability at most q per signal
(up to the Monte Carlo error), so the expected run length to a false alarm is at least
`run_length` requests. The guarantee needs clean traffic exchangeable with the calibration set:
calibrate on held-out data, not the training set.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.errors import InputError

__all__ = ["DriftMonitor", "DriftState", "ks_on_grid"]

_GRID = 128
_LOW = 0.02  # lowest reference quantile tested: below it the weighting divides by almost nothing


def ks_on_grid(reference_cdf: Tensor, grid: Tensor, windows: Tensor) -> Tensor:
    """max_g (F_window(g) - F_ref(g)) / sqrt(F_ref(g) (1 - F_ref(g))) per window; windows (S, W); (S,).

    The one-sided, variance-weighted Kolmogorov-Smirnov statistic (the weighting of Anderson &
    Darling, Ann. Math. Stat. 1952): large when the window holds more low values than the
    reference, with equal sensitivity in the lower tail, where a minority of suspicious inputs lands.
    """
    ordered = windows.double().sort(dim=1).values
    counts = torch.searchsorted(ordered.contiguous(), grid.expand(len(ordered), -1).contiguous(), right=True)
    scale = (reference_cdf * (1 - reference_cdf)).sqrt()
    return ((counts.double() / windows.shape[1] - reference_cdf) / scale).amax(dim=1)


@dataclass(frozen=True)
class DriftState:
    """The monitor as last updated: statistics of the last completed window, thresholds, alarms."""

    window: int
    run_length: int
    statistics: dict[str, float]
    thresholds: dict[str, float]
    windows_done: int
    alarms: int
    alarm: bool
    filled: int


class DriftMonitor:
    """Windowed KS tests of named signals against clean references (see the module docstring).

    Args:
        reference: Clean values per signal, e.g. {"confidence": (n,), "margin": (n,)}; split in
            two halves, one the reference distribution, the other the null pool of the threshold.
        window: Requests per window, >= 20.
        run_length: Expected requests before a false alarm on clean traffic.
        simulations: Monte Carlo windows (default: enough for 20 exceedances of q).
        seed: Seed of the Monte Carlo draws.
    """

    def __init__(self, reference: dict[str, Tensor], window: int = 200, run_length: int = 100_000,
                 simulations: int | None = None, seed: int = 0) -> None:
        if window < 20 or run_length < window:
            raise InputError(f"drift window must be >= 20 and run length >= window, got {window} and {run_length}")
        self.window, self.run_length, self.names = window, run_length, list(reference)
        q = window / run_length / max(1, len(self.names))
        sims = simulations or min(50_000, max(2_000, math.ceil(20 / q)))
        generator = torch.Generator().manual_seed(seed)
        self._grid: dict[str, Tensor] = {}
        self._cdf: dict[str, Tensor] = {}
        self.thresholds: dict[str, float] = {}
        for name, values in reference.items():
            values = values.detach().double().cpu().flatten()
            if len(values) < self.min_reference(window):
                raise InputError(f"the drift monitor needs at least {self.min_reference(window)} calibration images "
                                 f"(2 x --drift-window {window}), got {len(values)}: calibrate on more images "
                                 "(--calibration, --calibration-limit) or give a smaller --drift-window")
            perm = torch.randperm(len(values), generator=generator)
            ref, pool = values[perm[::2]].sort().values, values[perm[1::2]]
            probs = torch.linspace(_LOW, 0.5, _GRID, dtype=torch.float64)
            grid: Tensor = torch.unique(torch.quantile(ref, probs))
            cdf = torch.searchsorted(ref, grid, right=True).double() / len(ref)
            keep = (cdf > 0) & (cdf < 1)
            self._grid[name], self._cdf[name] = grid[keep], cdf[keep]
            grid = self._grid[name]
            null = torch.empty(sims, dtype=torch.float64)
            for start in range(0, sims, 2_000):
                size = min(2_000, sims - start)
                idx = torch.randint(len(pool), (size, window), generator=generator)
                null[start:start + size] = ks_on_grid(self._cdf[name], grid, pool[idx])
            self.thresholds[name] = float(torch.quantile(null, 1.0 - q))
        self._reset()

    @staticmethod
    def min_reference(window: int) -> int:
        """Clean values a monitor of this window needs: two halves (reference and null pool) of a window each."""
        return 2 * window

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffer: dict[str, list[float]] = {name: [] for name in self.names}
        self._stats: dict[str, float] = {name: 0.0 for name in self.names}
        self._windows = self._alarms = 0
        self._alarm = False

    def fresh(self) -> DriftMonitor:
        """A monitor with the same reference and thresholds and no traffic yet (e.g. after an alarm was handled)."""
        other = copy.copy(self)
        other._reset()
        return other

    def update(self, values: dict[str, float]) -> bool:
        """Add one request's signals; returns True when this completes a window that alarms."""
        with self._lock:
            for name in self.names:
                self._buffer[name].append(float(values[name]))
            if len(self._buffer[self.names[0]]) < self.window:
                return False
            alarm = False
            for name in self.names:
                window = torch.tensor(self._buffer[name], dtype=torch.float64)[None]
                stat = float(ks_on_grid(self._cdf[name], self._grid[name], window)[0])
                self._stats[name] = stat
                alarm |= stat > self.thresholds[name]
                self._buffer[name] = []
            self._windows += 1
            self._alarms += int(alarm)
            self._alarm = alarm
            return alarm

    def state(self) -> DriftState:
        """A consistent snapshot."""
        with self._lock:
            return DriftState(self.window, self.run_length, dict(self._stats), dict(self.thresholds), self._windows,
                              self._alarms, self._alarm, len(self._buffer[self.names[0]]))
