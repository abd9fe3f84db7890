"""Radii that mean what they say: refuse eps 0 and a ball that covers the whole input box.

`--eps 8` meant as 8/255 is the classic slip: a Linf ball of radius 8 around an image in [0, 1]
holds every image, so every attack "succeeds" and the numbers say nothing. An L2 ball of radius
at least side * sqrt(d) (the diagonal of the box of d values) is as vacuous. A radius of 0 allows
no perturbation at all. Both are refused with a one-line hint before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bastion.errors import InputError
from bastion.threat import get_norm

__all__ = ["check_eps", "eps_hint"]


def eps_hint(eps: float) -> str:
    """The radius a user most likely meant: eps/255 for a pixel-scale number (1 < eps <= 255)."""
    if 1 < eps <= 255:
        return f"did you mean {eps:g}/255?"
    return "give a smaller radius, e.g. 8/255 (Linf, CIFAR-10), 0.3 (Linf, MNIST) or 0.5 (L2)"


def check_eps(
    norm: str,
    eps: float,
    *,
    shape: Sequence[int] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    flag: str = "--eps",
) -> None:
    """Refuse a radius of 0, or one that makes the threat model hold the whole input box.

    Linf: eps >= high - low; L2: eps >= (high - low) * sqrt(d), d the number of values of one input
    (checked only when `shape` is known). Other norms (L0 counts pixels) are not checked.

    Args:
        norm: The norm's name ("linf", "l2", ...).
        eps: The parsed radius.
        shape: Shape of one input, e.g. (1, 28, 28); None skips the L2 check.
        bounds: The input range of the threat model.
        flag: How the user gave eps, for the message ("--eps", "eps").

    Raises:
        InputError: eps is 0, or at least the size of the input box in this norm.
    """
    name = get_norm(norm).name
    if name not in ("linf", "l2"):
        return
    if eps == 0:
        raise InputError(f"{flag} 0 allows no perturbation, so robust accuracy is clean accuracy: give a radius > 0, "
                         "e.g. 8/255 (Linf, CIFAR-10) or 0.3 (Linf, MNIST)")
    side = float(bounds[1]) - float(bounds[0])
    if name == "linf" and eps >= side:
        raise InputError(f"{flag} {eps:g} (linf) is not smaller than the input range [{bounds[0]:g}, {bounds[1]:g}]: "
                         f"the ball holds every input, so any attack succeeds; {eps_hint(eps)}")
    if name == "l2" and shape is not None:
        d = math.prod(int(s) for s in shape)
        diameter = side * math.sqrt(d)
        if eps >= diameter:
            raise InputError(f"{flag} {eps:g} (l2) is not smaller than the diagonal of the input box ({diameter:.4g} "
                             f"= sqrt({d}) for {d} values in [{bounds[0]:g}, {bounds[1]:g}]): the ball holds every "
                             f"input, so any attack succeeds; {eps_hint(eps)}")
