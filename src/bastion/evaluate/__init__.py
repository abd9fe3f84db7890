"""The evaluation: suites of stages, from clean accuracy to per-class robustness, and their report.

The package is callable: `bastion.evaluate(model, data, eps=0.3)` is `evaluate_robustness`.
"""

import sys
import types
from typing import Any

from bastion.evaluate.api import evaluate_robustness
from bastion.evaluate.config import EvalConfig, read_toml
from bastion.evaluate.pipeline import evaluate, evaluate_model
from bastion.evaluate.result import EvalResult, StageRecord
from bastion.evaluate.runner import Runner
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.suites import SUITES, plan

__all__ = ["STAGES", "SUITES", "EvalConfig", "EvalResult", "Runner", "Stage", "StageRecord", "StageResult",
           "evaluate", "evaluate_model", "evaluate_robustness", "plan", "read_toml"]


class _CallableModule(types.ModuleType):
    """This package, callable as `evaluate_robustness` (a module cannot be a function and a package at once)."""

    def __call__(self, *args: Any, **kwargs: Any) -> EvalResult:
        return evaluate_robustness(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
