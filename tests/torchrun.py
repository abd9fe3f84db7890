"""Launch `python -m bastion` under torchrun on CPU (gloo), one thread per process, for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["free_port", "torchrun"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def torchrun(processes: int, argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m torch.distributed.run --nproc-per-node N -m bastion ...` with one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "bastion", *argv]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
