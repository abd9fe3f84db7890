"""Training methods behind `bastion train`, each registered by name in `TRAINERS`, and the shared loop.

Names load on first access (PEP 562); reading `TRAINERS` first imports every method below, which
registers them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.train._check import heldout_accuracy
    from bastion.train.base import TRAINERS, StepOutput, Trainer
    from bastion.train.distill import Distill
    from bastion.train.fgsm_rs import FGSMRS
    from bastion.train.free import Free
    from bastion.train.gaussian import Gaussian
    from bastion.train.loop import FitConfig, FitResult, fit
    from bastion.train.mart import MART
    from bastion.train.mixed import Mixed
    from bastion.train.pgd_at import PGDAT
    from bastion.train.standard import Standard
    from bastion.train.trades import TRADES

__all__ = [
    "heldout_accuracy",
    "FGSMRS",
    "MART",
    "PGDAT",
    "TRADES",
    "TRAINERS",
    "Distill",
    "FitConfig",
    "FitResult",
    "Free",
    "Gaussian",
    "Mixed",
    "Standard",
    "StepOutput",
    "Trainer",
    "fit",
]

_HOMES = {
    "Distill": "bastion.train.distill",
    "FGSMRS": "bastion.train.fgsm_rs",
    "FitConfig": "bastion.train.loop",
    "FitResult": "bastion.train.loop",
    "Free": "bastion.train.free",
    "Gaussian": "bastion.train.gaussian",
    "MART": "bastion.train.mart",
    "Mixed": "bastion.train.mixed",
    "PGDAT": "bastion.train.pgd_at",
    "Standard": "bastion.train.standard",
    "StepOutput": "bastion.train.base",
    "TRADES": "bastion.train.trades",
    "TRAINERS": "bastion.train.base",
    "Trainer": "bastion.train.base",
    "fit": "bastion.train.loop",
    "heldout_accuracy": "bastion.train._check",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, complete=("TRAINERS",))
