"""Minimal-norm projection onto a hyperplane intersected with a box, the inner problem of FAB.

Croce & Hein (ICML 2020, arXiv:1907.02044), Sec. 2: FAB's every step needs

    proj_p(t, pi, C) = argmin_z ||z - t||_p  subject to  <w, z> = b  and  z in C = [low, high]^d,

for p = inf and p = 2. Both are solved exactly, in O(d log d) per point, by the same "water-filling"
argument (our own derivation; the authors' code solves the same problems by bisection over sorted
breakpoints).

Orient the hyperplane so that c = <w, t> - b >= 0: the step must lower <w, z> by exactly c.
Coordinate i can move in the direction -sign(w_i), at most room_i (t_i - low if w_i > 0, high - t_i
if w_i < 0), and each unit of movement lowers <w, z> by |w_i|. The optimal steps are, for a scalar
tau >= 0 shared by all coordinates,

    d_i = -sign(w_i) * min(tau * s_i, room_i),   s_i = 1 (Linf)  or  s_i = |w_i| (L2),

(Linf: every coordinate moves by the common radius tau unless the box stops it first; L2: the KKT
conditions of the box-constrained least-norm problem give d = clip(-tau * w, box)). The decrease
G(tau) = sum_i |w_i| min(tau s_i, room_i) is piecewise linear and nondecreasing in tau, with kinks
at tau_i = room_i / s_i; sorting the kinks and taking cumulative sums gives G at every kink, and
tau follows from the one linear piece that reaches c. If even G(inf) < c the box cannot reach the
hyperplane: every coordinate then moves to its bound, the closest the box gets (as in the authors'
code).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_onto_hyperplane"]


def project_onto_hyperplane(
    points: Tensor, w: Tensor, b: Tensor, norm: str, bounds: tuple[float, float] = (0.0, 1.0)
) -> Tensor:
    """The minimal-norm step from each point onto its hyperplane within the box.

    Args:
        points: (N, D) points t inside the box.
        w: (N, D) hyperplane normals.
        b: (N,) offsets: the hyperplane is {z : <w, z> = b}.
        norm: "linf" or "l2", the norm the step minimizes.
        bounds: The box [low, high] every coordinate of t + d must stay in.

    Returns:
        (N, D) steps d with t + d in the box, <w, t + d> = b where the box allows it, and ||d||_p
        minimal among such steps; where the box cannot reach the hyperplane, the box corner that
        comes closest.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"FAB projects in 'linf' or 'l2', got {norm!r}")
    low, high = bounds
    gap = (w * points).sum(1) - b
    w = w * torch.where(gap >= 0, 1.0, -1.0).to(w.dtype)[:, None]  # now <w, t> - b = c >= 0
    c = gap.abs()[:, None]
    rate = w.abs()
    room = torch.where(w > 0, points - low, high - points).clamp_min(0.0)
    speed = rate if norm == "l2" else torch.ones_like(rate)
    # Kinks tau_i = room_i / s_i; coordinates that cannot move (s_i = 0) never saturate.
    kink = torch.where(speed > 0, room / speed, torch.full_like(room, torch.inf))
    kink, order = kink.sort(dim=1)
    rate_s, speed_s, room_s = rate.gather(1, order), speed.gather(1, order), room.gather(1, order)
    # G at the k-th kink: saturated coordinates j <= k give |w_j| room_j, the rest tau_k |w_j| s_j.
    saturated = (rate_s * room_s).cumsum(1)
    slope_left = (rate_s * speed_s).sum(1, keepdim=True) - (rate_s * speed_s).cumsum(1)
    finite = torch.isfinite(kink)
    gain = saturated + torch.where(finite, kink * slope_left, torch.zeros_like(kink))
    gain = torch.where(finite, gain, saturated[:, -1:])
    # k = number of kinks that do not yet reach c: tau lies on the linear piece after kink k - 1.
    k = (gain < c).sum(1, keepdim=True)
    feasible = k < points.shape[1]
    prev = (k - 1).clamp_min(0)
    done = torch.where(k > 0, saturated.gather(1, prev), torch.zeros_like(c))
    slope = torch.where(k > 0, slope_left.gather(1, prev), (rate_s * speed_s).sum(1, keepdim=True))
    tau = (c - done) / slope.clamp_min(torch.finfo(points.dtype).tiny)
    tau = torch.where(feasible, tau, torch.full_like(tau, torch.inf))
    move = torch.minimum(tau * speed, room)
    move = torch.where(rate > 0, move, torch.zeros_like(move))  # also clears inf * 0 = nan
    return -torch.sign(w) * move
