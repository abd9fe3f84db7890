"""The git commit of the user's working directory, recorded with each run when there is one."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(cwd: str | Path | None = None) -> str | None:
    """`git rev-parse HEAD` in `cwd` (default: the current directory), or None quietly.

    None when git is not installed, `cwd` is not inside a repository, the repository has no commit
    yet, or git takes more than five seconds.
    """
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or len(commit) < 7 or not all(c in "0123456789abcdef" for c in commit):
        return None
    return commit
