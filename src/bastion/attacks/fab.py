"""FAB, the fast adaptive boundary attack: minimal-norm adversarial examples, untargeted and targeted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar, Protocol

import torch
from torch import Tensor, nn

from bastion.attacks._fab_projections import project_onto_hyperplane
from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.attacks.restarts import restart_survivors
from bastion.errors import InputError
from bastion.threat import ThreatModel

__all__ = ["FAB", "FABT"]


class _Settings(Protocol):
    steps: int
    n_restarts: int
    alpha_max: float
    eta: float
    beta: float


def _validate(steps: int, n_restarts: int, alpha_max: float, eta: float, beta: float) -> None:
    if int(steps) < 1 or int(n_restarts) < 1:
        raise InputError(f"steps and n_restarts must be >= 1, got {steps} and {n_restarts}")
    if not (0.0 <= alpha_max <= 1.0 and eta > 0.0 and 0.0 < beta <= 1.0):
        raise InputError(f"FAB needs 0 <= alpha_max <= 1, eta > 0, 0 < beta <= 1; got {alpha_max}, {eta}, {beta}")


def _boundaries(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, strict: bool) -> tuple[Tensor, Tensor]:
    """Logit differences f_s(x), (B, S), whose zero sets are the decision boundaries, and their gradients, (B, S, D).

    Untargeted (target None): f_j = z_j - z_y for every j != y. The full Jacobian costs one backward
    pass per column, K - 1 per step, the price of untargeted FAB. Targeted: the single f = z_t - z_r,
    one backward: r = y for AutoAttack's FAB-T (success is any misclassification there); with
    `strict`, r is the strongest class other than t, the boundary a point must cross to be labelled t.
    """
    x = x.detach().requires_grad_(True)
    rows = torch.arange(len(x), device=x.device)
    with torch.enable_grad():  # also when called under no_grad
        logits = model(x)
        if target is None:
            classes = torch.arange(logits.shape[1], device=x.device).expand(len(x), -1)
            others = classes[classes != y[:, None]].view(len(x), -1)
            diffs = logits.gather(1, others) - logits[rows, y][:, None]
        else:
            rival = logits.detach().scatter(1, target[:, None], -torch.inf).argmax(1) if strict else y
            diffs = (logits[rows, target] - logits[rows, rival])[:, None]
        grads = [
            torch.autograd.grad(diffs[:, j].sum(), x, retain_graph=j + 1 < diffs.shape[1])[0].flatten(1)
            for j in range(diffs.shape[1])
        ]
    return diffs.detach(), torch.stack(grads, dim=1)


def _run(
    knobs: _Settings, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, strict: bool,
    start: Tensor, threat: ThreatModel,
) -> tuple[Tensor, Tensor]:
    """One run of FAB (Croce & Hein 2020, Alg. 1) from `start`: the smallest-norm adversarial iterate and its norm.

    Points never fooled come back as x with norm inf. Every point iterates all `steps`: once fooled,
    FAB goes on shrinking the perturbation, which is its purpose.
    """
    norm, bounds, batch = threat.norm, threat.bounds, len(x)
    rows, x_flat = torch.arange(batch, device=x.device), x.flatten(1)
    best, best_norm = x.clone(), torch.full((batch,), torch.inf, dtype=x.dtype, device=x.device)
    x_cur = start
    for _ in range(knobs.steps):
        f, grad = _boundaries(model, x_cur, y, target, strict)
        # Closest linearized boundary pi_s: {z : f_s(x_cur) + <grad f_s, z - x_cur> = 0}, chosen by the
        # distance |f_s| / ||grad f_s||_q, q the dual norm of p (L1 for Linf, L2 for L2).
        dual = grad.abs().sum(2) if norm.name == "linf" else grad.norm(dim=2)
        s = (f.abs() / (dual + 1e-12)).argmin(1)
        w = grad[rows, s]
        b = (w * x_cur.flatten(1)).sum(1) - f[rows, s]
        # delta = proj_p(x_cur, pi_s, C) - x_cur and delta_orig = proj_p(x_orig, pi_s, C) - x_orig.
        both = project_onto_hyperplane(
            torch.cat([x_cur.flatten(1), x_flat]), torch.cat([w, w]), torch.cat([b, b]), norm.name, bounds
        )
        delta, delta_orig = both[:batch].view_as(x), both[batch:].view_as(x)
        # Biased step: alpha = min(||delta|| / (||delta|| + ||delta_orig||), alpha_max) pulls towards x_orig.
        n_cur, n_orig = norm.measure(delta).clamp_min(1e-8), norm.measure(delta_orig).clamp_min(1e-8)
        alpha = (n_cur / (n_cur + n_orig)).clamp(0.0, knobs.alpha_max).view(-1, *[1] * (x.dim() - 1))
        # x_{i+1} = proj_C((1 - alpha)(x_i + eta delta) + alpha (x_orig + eta delta_orig)), eta > 1 overshoots.
        x_cur = ((1 - alpha) * (x_cur + knobs.eta * delta) + alpha * (x + knobs.eta * delta_orig)).clamp(*bounds)
        with torch.no_grad():
            fooled = is_success(model(x_cur), y, target if strict else None)
        dist = norm.measure(x_cur - x)
        better = fooled & (dist < best_norm)
        best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_cur, best)
        best_norm = torch.where(better, dist, best_norm)
        # Backward step on fooled points, x_{i+1} = (1 - beta) x_orig + beta x_{i+1}: search closer to x_orig.
        x_cur = torch.where(fooled.view(-1, *[1] * (x.dim() - 1)), x + knobs.beta * (x_cur - x), x_cur)
    return best, best_norm


def _random_start(x: Tensor, radius: Tensor, threat: ThreatModel, generator: torch.Generator | None) -> Tensor:
    """A point at distance `radius` (B,) from x in a uniformly random direction, clipped to the box."""
    direction = threat.norm.random_init(x, 1.0, generator)
    scale = radius / threat.norm.measure(direction).clamp_min(1e-12)
    return (x + direction * scale.view(-1, *[1] * (x.dim() - 1))).clamp(*threat.bounds)


def _search(
    knobs: _Settings, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel,
    targets: Sequence[Tensor | None], strict: bool, generator: torch.Generator | None,
) -> Tensor:
    """Runs over targets x restarts, each on the points not yet fooled within eps (AutoAttack's schedule).

    Restart 0 starts at x; later ones at distance min(best norm, eps) / 2 in a random direction (the
    paper's restarts; eps / 2 in practice, as only points not fooled within eps restart). Returns, per
    point, the smallest-norm adversarial example found, else x.
    """
    best, best_norm = x.clone(), torch.full((len(x),), torch.inf, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        misclassified = is_success(model(x), y, targets[0] if strict else None)  # never attacked
    for target in targets:
        restarts = iter(range(knobs.n_restarts))

        def run(rows: Tensor, target: Tensor | None = target,
                restarts: Iterator[int] = restarts) -> tuple[Tensor, Tensor, Tensor]:
            x_rows, radius = x[rows], best_norm[rows].clamp(max=threat.eps) / 2
            start = x_rows if next(restarts) == 0 else _random_start(x_rows, radius, threat, generator)
            sub_target = None if target is None else target[rows]
            x_run, n_run = _run(knobs, model, x_rows, y[rows], sub_target, strict, start, threat)
            return x_run, n_run, n_run <= threat.eps

        done = misclassified | (best_norm <= threat.eps)
        if bool(done.all()):
            break
        best = restart_survivors(x, knobs.n_restarts, run, score=best_norm, fooled=done, higher_is_better=False,
                                 best=best)
    return best


@ATTACKS.register("fab")
class FAB(Attack):
    """Untargeted FAB (Croce & Hein, ICML 2020, arXiv:1907.02044), minimizing the Linf or L2 norm.

    Each step linearizes every decision boundary z_j - z_y = 0 at the current iterate, takes the
    closest one, projects onto it both the iterate and the original point (exactly, within the box),
    and steps between the two projections with overshoot eta, biased towards the original point by
    at most alpha_max; a fooled iterate is pulled back towards x by beta. Every step needs the
    Jacobian of the K - 1 logit differences: K - 1 backward passes (and 2 forward passes) per step.
    With a target given, it attacks that class through one boundary per step, like `FABT`.
    The result is the smallest-norm adversarial point found; `Attack.__call__` clips it into the
    threat model, so a point whose minimal perturbation exceeds eps comes back unfooled.

    Args:
        steps: Iterations per run (n_iter in AutoAttack).
        n_restarts: Runs; the first starts at x, the others at random points (on points still robust).
        alpha_max: Largest weight of the step from the original point.
        eta: Overshoot of each projection step (> 1 lands past the boundary).
        beta: Backward step towards x after each success.

    Example:
        >>> result = FAB(steps=100)(model, x, y, ThreatModel("l2", 1.0))
    """

    name: ClassVar[str] = "fab"
    minimizes_norm: ClassVar[bool] = True

    def __init__(
        self, steps: int = 100, n_restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9
    ) -> None:
        _validate(steps, n_restarts, alpha_max, eta, beta)
        self.steps, self.n_restarts = int(steps), int(n_restarts)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *,
        target: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> Tensor:
        """Minimal-norm adversarial examples, untargeted or towards `target`."""
        return _search(self, model, x, y, threat, [target], target is not None, generator)


@ATTACKS.register("fab-t")
class FABT(Attack):
    """Targeted FAB as in AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690 and arXiv:1907.02044).

    Without a target, runs FAB against the boundary z_t - z_y = 0 of each of the `n_targets` classes
    ranked highest after y on the clean input, in turn, on the points still robust; success is any
    misclassification. Each step needs a single backward pass. With a target given, attacks that
    class only, and success means the model predicts it.

    Args:
        steps: Iterations per run (n_iter in AutoAttack; 100 in its standard version).
        n_restarts: Runs per target class; the first starts at x, the others at random points.
        n_targets: Target classes tried (9 in AutoAttack), at most num_classes - 1.
        alpha_max: Largest weight of the step from the original point.
        eta: Overshoot of each projection step.
        beta: Backward step towards x after each success.

    Example:
        >>> result = FABT(n_targets=9)(model, x, y, ThreatModel("linf", 8 / 255))
    """

    name: ClassVar[str] = "fab-t"
    minimizes_norm: ClassVar[bool] = True

    def __init__(
        self, steps: int = 100, n_restarts: int = 1, n_targets: int = 9, alpha_max: float = 0.1,
        eta: float = 1.05, beta: float = 0.9,
    ) -> None:
        _validate(steps, n_restarts, alpha_max, eta, beta)
        if int(n_targets) < 1:
            raise InputError(f"n_targets must be >= 1, got {n_targets}")
        self.steps, self.n_restarts, self.n_targets = int(steps), int(n_restarts), int(n_targets)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *,
        target: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> Tensor:
        """Minimal-norm adversarial examples through the top-k target classes, or towards `target`."""
        if target is not None:
            return _search(self, model, x, y, threat, [target], True, generator)
        with torch.no_grad():
            ranked = model(x).argsort(dim=1, descending=True)
        count = min(self.n_targets, ranked.shape[1] - 1)
        return _search(self, model, x, y, threat, [ranked[:, k] for k in range(1, count + 1)], False, generator)
