"""Training methods behind `bastion train`, each registered by name in `TRAINERS`, and the shared loop.

Importing this package registers every method (explicit imports, no star-imports).
"""

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
