"""`bastion serve`: a guarded inference server (needs the `serve` extra: pip install 'bastion[serve]').

The Open Inference Protocol v2 routes and a plain `/predict`, a guard on every request (detector
scores as conformal p-values against clean calibration data, optional probes, a policy), micro-
batching, Prometheus metrics, an anytime-valid monitor of the guarantee, a drift monitor, a sampled
SQLite request log and a status page. Names load on first access (PEP 562): `import bastion.serve`
imports no web framework; FastAPI is imported when `create_app` builds the HTTP application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
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

_HOMES = {
    "ABSTAIN": "bastion.serve.policy",
    "ConformalScores": "bastion.serve.conformal",
    "Decision": "bastion.serve.policy",
    "DriftMonitor": "bastion.serve.drift",
    "DriftState": "bastion.serve.drift",
    "Guard": "bastion.serve.guard",
    "GuardBatch": "bastion.serve.guard",
    "GuardedServer": "bastion.serve.server",
    "LogRow": "bastion.serve.requestlog",
    "MicroBatcher": "bastion.serve.batching",
    "Policy": "bastion.serve.policy",
    "RequestLog": "bastion.serve.requestlog",
    "ServeConfig": "bastion.serve.config",
    "Verdict": "bastion.serve.guard",
    "bonferroni_level": "bastion.serve.conformal",
    "build_server": "bastion.serve.server",
    "create_app": "bastion.serve.app",
    "load_config": "bastion.serve.config",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
