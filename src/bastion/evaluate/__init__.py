"""The evaluation: suites of stages, from clean accuracy to per-class robustness, and their report."""

from bastion.evaluate.config import EvalConfig, read_toml
from bastion.evaluate.pipeline import evaluate, evaluate_model
from bastion.evaluate.result import EvalResult, StageRecord
from bastion.evaluate.runner import Runner
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.suites import SUITES, plan

__all__ = ["STAGES", "SUITES", "EvalConfig", "EvalResult", "Runner", "Stage", "StageRecord", "StageResult",
           "evaluate", "evaluate_model", "plan", "read_toml"]
