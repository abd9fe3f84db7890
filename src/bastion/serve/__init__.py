"""`bastion serve`: a guarded inference server (needs the `serve` extra: pip install 'bastion[serve]').

The Open Inference Protocol v2 routes and a plain `/predict`, a guard on every request (detector
scores as conformal p-values against clean calibration data, optional probes, a policy), micro-
batching, Prometheus metrics, a drift monitor, a sampled SQLite request log and a status page.
"""

from bastion.serve.app import create_app
from bastion.serve.batching import MicroBatcher
from bastion.serve.config import ServeConfig, load_config
from bastion.serve.conformal import ConformalScores, bonferroni_level
from bastion.serve.drift import DriftMonitor, DriftState
from bastion.serve.guard import Guard, GuardBatch, Verdict
from bastion.serve.policy import ABSTAIN, Decision, Policy
from bastion.serve.requestlog import LogRow, RequestLog
from bastion.serve.server import GuardedServer, build_server

__all__ = [
    "ABSTAIN",
    "ConformalScores",
    "Decision",
    "DriftMonitor",
    "DriftState",
    "Guard",
    "GuardBatch",
    "GuardedServer",
    "LogRow",
    "MicroBatcher",
    "Policy",
    "RequestLog",
    "ServeConfig",
    "Verdict",
    "bonferroni_level",
    "build_server",
    "create_app",
    "load_config",
]
