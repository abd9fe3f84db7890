"""Carlini & Wagner's L2 attack: a minimal-norm search in tanh space with a binary search over c."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack
from bastion.errors import InputError
from bastion.losses import cw_margin
from bastion.threat import ThreatModel

__all__ = ["CW"]

_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


@ATTACKS.register("cw")
class CW(Attack):
    """The C&W L2 attack (Carlini & Wagner, IEEE S&P 2017, arXiv:1608.04644, section V.A).

    Minimizes ||x' - x||_2^2 + c * f(x') over w, with x' = low + (high - low) * (tanh(w) + 1) / 2
    so that x' always lies in the box (the paper's change of variables, section V.A), and
    f(x') = max(z_y - max_{i != y} z_i, -kappa) untargeted, max(max_{i != t} z_i - z_t, -kappa)
    targeted (the paper's f_6). Adam runs `steps` iterations per value of c; c then moves per
    sample by binary search: down (bisection) after a success, up after a failure (times 10 until
    a success bounds it). Every iterate is checked, and each point keeps its smallest-L2 example
    whose margin reaches kappa over all values of c, or x itself if none was found.

    It is a minimal-norm attack: eps plays no part in the search, which minimizes L2 whatever the
    threat norm; `Attack.__call__` clips the result into the threat model, so a point whose
    smallest perturbation lies outside the eps-ball may count as not fooled.

    Where it differs from the reference code (carlini/nn_robust_attacks, l2_attack.py):
    the early abort is decided per point (the reference decides on the batch's summed loss, which
    is the same at its default batch size of 1), so a point's result does not depend on its batch;
    the distance is measured to x itself, not to tanh(atanh(x)); and an untargeted example must
    reach the margin kappa (the reference lowers the true logit by kappa where it should raise it).

    Args:
        binary_search_steps: Values of c tried per point.
        steps: Adam iterations per value of c (the reference code uses 10,000).
        lr: Adam's learning rate, in w space.
        initial_const: The first c.
        kappa: Confidence: the logit margin an example must reach (0 gives the closest example).
        abort_early: Stop a point's descent for the current c once its loss has fallen by less
            than 0.01% over steps // 10 iterations; the later iterates change little.

    Example:
        >>> result = CW()(model, x, y, ThreatModel.unbounded("l2", x.shape[1:]))
        >>> result.norms  # each point's smallest L2 perturbation found
    """

    name: ClassVar[str] = "cw"
    minimizes_norm: ClassVar[bool] = True

    def __init__(
        self,
        binary_search_steps: int = 9,
        steps: int = 1000,
        lr: float = 0.01,
        initial_const: float = 1e-3,
        kappa: float = 0.0,
        abort_early: bool = True,
    ) -> None:
        for label, value in (("binary_search_steps", binary_search_steps), ("steps", steps)):
            if int(value) < 1:
                raise InputError(f"{label} must be >= 1, got {value}")
        for label, number in (("lr", lr), ("initial_const", initial_const)):
            if not (math.isfinite(number) and number > 0):
                raise InputError(f"{label} must be a finite number > 0, got {number}")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise InputError(f"kappa must be a finite number >= 0, got {kappa}")
        self.binary_search_steps = int(binary_search_steps)
        self.steps = int(steps)
        self.lr = float(lr)
        self.initial_const = float(initial_const)
        self.kappa = float(kappa)
        self.abort_early = bool(abort_early)

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run the binary search over c; return each point's smallest-L2 example (x if none)."""
        if threat.eps == 0:  # only x itself is in the threat model: nothing to search
            return x
        low, high = threat.bounds
        mid, half = (low + high) / 2, (high - low) / 2
        # Scaling by 1 - 1e-6 keeps atanh finite for pixels on the box's faces (as the reference code does).
        w0 = torch.atanh(((x - mid) / half).clamp(-1, 1) * (1 - 1e-6))
        labels = y if target is None else target
        best, best_l2 = x.clone(), torch.full(y.shape, torch.inf, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(best_l2)
        upper = torch.full_like(best_l2, torch.inf)
        const = torch.full_like(best_l2, self.initial_const)
        for step in range(self.binary_search_steps):
            if self.binary_search_steps >= 10 and step == self.binary_search_steps - 1:
                # The reference code's last pass, with many steps: retry at the smallest c that succeeded.
                const = torch.where(upper.isfinite(), upper, const)
            found = self._descend(model, x, w0, labels, target is not None, const, threat, best, best_l2)
            # Per-sample binary search (section V.A): a success bounds c from above, a failure from below.
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper.isfinite(), (lower + upper) / 2, const * 10)
        return best

    def _descend(
        self,
        model: nn.Module,
        x: Tensor,
        w0: Tensor,
        labels: Tensor,
        targeted: bool,
        const: Tensor,
        threat: ThreatModel,
        best: Tensor,
        best_l2: Tensor,
    ) -> Tensor:
        """Adam on the objective for one c per point; updates `best`/`best_l2`, returns where it succeeded."""
        low, high = threat.bounds
        mid, half = (low + high) / 2, (high - low) / 2
        sign = 1.0 if targeted else -1.0  # f's raw margin is sign * cw_margin: below -kappa means success
        shape = (-1, *[1] * (x.dim() - 1))
        found = torch.zeros(labels.shape, dtype=torch.bool, device=x.device)
        # The points still descending, and their state; a point leaves when it aborts early.
        rows = torch.arange(len(x), device=x.device)
        x_run, lab, c, w, m, v = x, labels, const, w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
        run_best, run_l2, run_found = best.clone(), best_l2.clone(), found.clone()
        prev = torch.full_like(const, torch.inf)
        check = max(self.steps // 10, 1)
        for i in range(self.steps + 1):
            w.requires_grad_(i < self.steps)
            # The same arithmetic as ThreatModel.clip, so the point judged here is the one __call__ judges.
            x_adv = (x_run + (mid + half * torch.tanh(w) - x_run)).clamp(low, high)
            raw = sign * cw_margin(model(x_adv), lab)
            l2 = (x_adv - x_run).flatten(1).pow(2).sum(1)
            # f + kappa instead of f: the same gradient, and a loss >= 0 for the early-abort ratio test.
            loss = l2 + c * (raw + self.kappa).clamp(min=0)
            with torch.no_grad():
                success = raw < -self.kappa
                better = success & (l2 < run_l2)
                run_l2 = torch.where(better, l2, run_l2)
                run_best = torch.where(better.view(shape), x_adv, run_best)
                run_found = run_found | success
            if i == self.steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), w)
            with torch.no_grad():
                w = w.detach()
                if self.abort_early and i % check == 0:
                    keep, prev = ~(loss > prev * 0.9999), loss.detach()
                    if not bool(keep.all()):
                        gone = rows[~keep]
                        best[gone], best_l2[gone], found[gone] = run_best[~keep], run_l2[~keep], run_found[~keep]
                        if not bool(keep.any()):
                            return found
                        rows, x_run, lab, c, prev = rows[keep], x_run[keep], lab[keep], c[keep], prev[keep]
                        run_best, run_l2, run_found = run_best[keep], run_l2[keep], run_found[keep]
                        w, m, v, grad = w[keep], m[keep], v[keep], grad[keep]
                w = self._adam(w, grad, m, v, i + 1)
        best[rows], best_l2[rows], found[rows] = run_best, run_l2, run_found
        return found

    def _adam(self, w: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: int) -> Tensor:
        """One Adam step (Kingma & Ba, ICLR 2015, arXiv:1412.6980, Algorithm 1); updates m and v in place."""
        (b1, b2) = _ADAM_BETAS
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        step = m / (1 - b1**t) / ((v / (1 - b2**t)).sqrt() + _ADAM_EPS)
        return w - self.lr * step
