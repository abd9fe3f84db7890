"""The evaluation pipeline: the field's protocol from clean accuracy to per-class robustness."""

from bastion.evaluate.config import EvalConfig, read_toml
from bastion.evaluate.pipeline import evaluate, evaluate_model
from bastion.evaluate.result import EvalResult

__all__ = ["EvalConfig", "EvalResult", "evaluate", "evaluate_model", "read_toml"]
