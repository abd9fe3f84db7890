"""Auto-PGD: PGD with momentum and a step size that adapts itself at checkpoints, for Linf and L2."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, Protocol

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.attacks.restarts import restart_survivors
from bastion.errors import InputError
from bastion.losses import get_loss
from bastion.threat import ThreatModel

__all__ = ["APGD", "APGDDLR", "checkpoint_schedule"]

# (logits, rows) -> (loss to maximize, success), both (B',), for the rows `rows` of the attacked batch.
Objective = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
Best = tuple[Tensor, Tensor, Tensor]  # per-sample best point, its loss, and whether it fools the model
# (x[rows], rows) -> x^(0) for those rows: where a run starts (default: `_random_start`).
Start = Callable[[Tensor, Tensor], Tensor]
# (k, w_prev, rows, f_max, f_max at w_prev) at checkpoint w_j = k -> (B',) bool: robust points to stop attacking.
GiveUp = Callable[[int, int, Tensor, Tensor, Tensor], Tensor]


class _Settings(Protocol):
    steps: int
    n_restarts: int
    rho: float
    momentum: float
    eot_iter: int


def checkpoint_schedule(steps: int) -> list[int]:
    """Iterations w_j at which APGD may halve its step size (Croce & Hein, ICML 2020, arXiv:2003.01690, Sec. 3.2).

    w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), kept
    while p_j <= 1; for 100 steps [0, 22, 41, 57, 70, 80, 87, 93, 99].
    """
    schedule, previous, p = [0], 0, 22  # p_j in hundredths: integers, so ceil() meets no rounding error
    while p <= 100:
        w = -(-p * steps // 100)
        if w > schedule[-1]:
            schedule.append(w)
        previous, p = p, p + max(p - previous - 3, 6)
    return schedule


def _check_settings(steps: int, n_restarts: int, rho: float, momentum: float, eot_iter: int) -> None:
    """Refuse hyperparameters outside their ranges with a one-line `InputError`."""
    for name, value in (("steps", steps), ("n_restarts", n_restarts), ("eot_iter", eot_iter)):
        if int(value) < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if not 0.0 <= rho <= 1.0 or not 0.0 < momentum <= 1.0:
        raise InputError(f"rho must lie in [0, 1] and momentum in (0, 1], got {rho} and {momentum}")


def _empty_best(x: Tensor) -> Best:
    """Accumulators for `_apgd`: the inputs themselves, loss -inf, nothing fooled."""
    return x.clone(), x.new_full(x.shape[:1], -torch.inf), x.new_zeros(len(x), dtype=torch.bool)


@dataclass
class _State:
    """Per-sample state of the points a run still iterates; every field is indexed by those points."""

    rows: Tensor  # their indices in the attacked batch
    x0: Tensor  # clean inputs
    x: Tensor  # iterate x^(k)
    x_prev: Tensor  # x^(k-1), for the momentum term
    grad: Tensor  # gradient at x^(k)
    loss: Tensor  # f(x^(k))
    eta: Tensor  # step size
    x_max: Tensor  # best point so far, its loss and gradient
    f_max: Tensor
    g_max: Tensor
    increases: Tensor  # steps since the last checkpoint that raised the loss (condition 1)
    f_max_last: Tensor  # f_max at the last checkpoint (condition 2)
    halved: Tensor  # whether eta was halved at the last checkpoint (condition 2)

    def select(self, keep: Tensor) -> _State:
        return _State(*(getattr(self, f.name)[keep] for f in fields(self)))


def _random_start(x: Tensor, threat: ThreatModel, generator: torch.Generator | None) -> Tensor:
    """x^(0): uniform in the Linf cube; for L2 on the eps-sphere along a Gaussian direction, as fra31/auto-attack."""
    delta = threat.norm.random_init(x, threat.eps, generator)
    if threat.norm.name == "l2":
        scale = threat.eps / (threat.norm.measure(delta) + 1e-12)
        delta = delta * scale.view(-1, *[1] * (x.dim() - 1))
    return threat.clip(x, x + delta)


def _evaluate(
    model: nn.Module, x: Tensor, rows: Tensor, objective: Objective, eot_iter: int, with_grad: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss and gradient at x averaged over `eot_iter` passes (EOT, for randomized models), and success."""
    x = x.detach().requires_grad_(with_grad)
    loss_sum, grad_sum = x.new_zeros(len(x)), torch.zeros_like(x)
    with torch.set_grad_enabled(with_grad):
        for _ in range(eot_iter):
            logits: Tensor = model(x)
            loss, success = objective(logits, rows)
            if with_grad:
                grad_sum += torch.autograd.grad(loss.sum(), x)[0]
            loss_sum += loss.detach()
    return loss_sum / eot_iter, grad_sum / eot_iter, success.detach()


def _run(
    model: nn.Module,
    x: Tensor,
    rows: Tensor,
    threat: ThreatModel,
    objective: Objective,
    hp: _Settings,
    generator: torch.Generator | None,
    start_fn: Start | None = None,
    give_up: GiveUp | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One run of Algorithm 1 of Croce & Hein (2020) on the points `rows` of x.

    `start_fn` replaces the random start; `give_up`, asked at each checkpoint, lets robust points
    leave the run early with their best point so far (neither is used by APGD itself).
    Returns, per row: the point that first fooled the model (and its loss), or else the point of
    highest loss of the run; and whether it fooled the model.
    """
    shape = (-1, *[1] * (x.dim() - 1))
    local = torch.full((len(x),), -1, dtype=torch.long, device=rows.device)
    local[rows] = torch.arange(len(rows), device=rows.device)
    x_out, loss_out = x[rows].clone(), torch.full((len(rows),), -torch.inf, device=x.device, dtype=x.dtype)
    fooled_out = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
    start = _random_start(x[rows], threat, generator) if start_fn is None else start_fn(x[rows], rows)
    loss, grad, success = _evaluate(model, start, rows, objective, hp.eot_iter, True)
    eta = torch.full_like(loss, 2.0 * threat.eps)  # eta^(0) = 2 eps
    zeros = torch.zeros_like(loss)
    s = _State(rows, x[rows], start, start, grad, loss, eta, start, loss, grad, zeros, loss, zeros.bool())
    checkpoints, last = {w for w in checkpoint_schedule(hp.steps)[1:] if w < hp.steps}, 0
    for k in range(hp.steps + 1):
        if k > 0:  # x^(k) from x^(k-1): a step to z, then momentum (none on the first step)
            with torch.no_grad():
                a = 1.0 if k == 1 else hp.momentum
                z = threat.clip(s.x0, s.x + s.eta.view(shape) * threat.norm.ascent(s.grad))
                x_new = threat.clip(s.x0, s.x + a * (z - s.x) + (1.0 - a) * (s.x - s.x_prev))
            loss, grad, success = _evaluate(model, x_new, s.rows, objective, hp.eot_iter, k < hp.steps)
            s.increases += (loss > s.loss).to(loss.dtype)
            s.x_prev, s.x, s.grad, s.loss = s.x, x_new, grad, loss
            better = loss > s.f_max
            s.x_max = torch.where(better.view(shape), x_new, s.x_max)
            s.g_max = torch.where(better.view(shape), grad, s.g_max)
            s.f_max = torch.where(better, loss, s.f_max)
        if bool(success.any()):  # keep the first point that fools the model, before any restart moves x
            idx = local[s.rows[success]]
            x_out[idx], loss_out[idx], fooled_out[idx] = s.x[success], s.loss[success].to(x.dtype), True
        leave = success
        if k in checkpoints:
            if give_up is not None:  # asked before f_max_last moves on: it still holds f_max at w_{j-1}
                leave = success | give_up(k, last, s.rows, s.f_max, s.f_max_last)
                idx = local[s.rows[leave & ~success]]
                x_out[idx], loss_out[idx] = s.x_max[leave & ~success], s.f_max[leave & ~success].to(x.dtype)
            # Condition 1: under rho of the steps since w_{j-1} raised the loss; condition 2: eta and f_max unchanged.
            halve = (s.increases < hp.rho * (k - last)) | (~s.halved & (s.f_max <= s.f_max_last))
            s.eta = torch.where(halve, s.eta / 2, s.eta)
            s.x = torch.where(halve.view(shape), s.x_max, s.x)  # restart from the best point
            s.grad = torch.where(halve.view(shape), s.g_max, s.grad)
            s.loss = torch.where(halve, s.f_max, s.loss)
            s.increases, s.f_max_last, s.halved, last = torch.zeros_like(s.increases), s.f_max, halve, k
        if bool(leave.any()):  # fooled points leave the batch; the others' schedules are per sample
            s = s.select(~leave)
            if len(s.rows) == 0:
                return x_out, loss_out, fooled_out
    idx = local[s.rows]  # never fooled: the point of highest loss of this run
    x_out[idx], loss_out[idx] = s.x_max, s.f_max.to(x.dtype)
    return x_out, loss_out, fooled_out


def _apgd(
    model: nn.Module,
    x: Tensor,
    threat: ThreatModel,
    objective: Objective,
    best: Best,
    hp: _Settings,
    generator: torch.Generator | None,
    start_fn: Start | None = None,
    give_up: GiveUp | None = None,
) -> None:
    """`hp.n_restarts` APGD runs, each only on the points no earlier run fooled; updates `best` in place."""
    x_best, loss_best, fooled = best

    def run(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return _run(model, x, rows, threat, objective, hp, generator, start_fn, give_up)

    x_best.copy_(restart_survivors(x, hp.n_restarts, run, score=loss_best, fooled=fooled, best=x_best))


@ATTACKS.register("apgd-ce")
class APGD(Attack):
    """Auto-PGD (Croce & Hein, ICML 2020, arXiv:2003.01690, Algorithm 1), Linf and L2 alike.

    From a random start x^(0), each step goes z = P(x + eta * ascent(grad)), then
    x <- P(x + momentum * (z - x) + (1 - momentum) * (x - x_prev)) (Eq. 2; no momentum on the first
    step), with eta^(0) = 2 eps. At the checkpoints of `checkpoint_schedule` a point halves its step
    size and restarts from its best point if under `rho` of its steps since the last checkpoint raised
    the loss, or if neither its step size nor its best loss changed since then. Points leave the batch
    once fooled; restarts run only on the points still robust.

    Args:
        steps: Iterations per run (N_iter).
        n_restarts: Runs from independent random starts.
        loss: "ce" (APGD-CE), "dlr" (APGD-DLR, Eq. 5) or "cw"; targeted runs maximize -loss(target).
        rho: Fraction of loss-raising steps below which the step size is halved (condition 1).
        momentum: alpha of Eq. 2, the weight of the new step against the previous one.
        eot_iter: Gradients averaged per iterate (EOT); 20 in AutoAttack's "rand" version.

    Example:
        >>> result = APGD(steps=100)(model, x, y, ThreatModel("linf", 8 / 255))
    """

    name: ClassVar[str] = "apgd-ce"

    def __init__(
        self,
        steps: int = 100,
        n_restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
    ) -> None:
        _check_settings(steps, n_restarts, rho, momentum, eot_iter)
        get_loss(loss)
        self.steps, self.n_restarts, self.loss = int(steps), int(n_restarts), loss
        self.rho, self.momentum, self.eot_iter = float(rho), float(momentum), int(eot_iter)

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
        """Run APGD on the batch and return each point's first adversarial example, else its highest-loss point."""
        loss_fn = get_loss(self.loss)
        labels, sign = (y, 1.0) if target is None else (target, -1.0)  # targeted: maximize -loss(target)

        def objective(logits: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            success = is_success(logits, y[rows], None if target is None else labels[rows])
            return sign * loss_fn(logits, labels[rows]), success

        best = _empty_best(x)
        _apgd(model, x, threat, objective, best, self, generator)
        return best[0]


@ATTACKS.register("apgd-dlr")
class APGDDLR(Attack):
    """APGD on the difference-of-logits-ratio loss (Croce & Hein, ICML 2020, arXiv:2003.01690, Eq. 5).

    The same algorithm as `APGD` with loss "dlr", which is invariant to shifts and rescaling of the
    logits. Needs at least 3 classes. Arguments as for `APGD`.

    Example:
        >>> result = APGDDLR(eot_iter=20)(model, x, y, ThreatModel("linf", 8 / 255))
    """

    name: ClassVar[str] = "apgd-dlr"

    def __init__(
        self, steps: int = 100, n_restarts: int = 1, rho: float = 0.75, momentum: float = 0.75, eot_iter: int = 1
    ) -> None:
        _check_settings(steps, n_restarts, rho, momentum, eot_iter)
        self.steps, self.n_restarts = int(steps), int(n_restarts)
        self.rho, self.momentum, self.eot_iter = float(rho), float(momentum), int(eot_iter)

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
        """Run APGD-DLR on the batch (see `APGD.perturb`)."""
        apgd = APGD(self.steps, self.n_restarts, "dlr", self.rho, self.momentum, self.eot_iter)
        return apgd.perturb(model, x, y, threat, target=target, generator=generator)
