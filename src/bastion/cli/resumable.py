"""--resume and --overwrite for the commands whose work runs as a suite of stages (`bastion.evaluate.commands`).

The same rules as `bastion evaluate`: the results of an earlier run in --out are never replaced
unasked; --resume continues an interrupted run from the stages saved in --out and leaves a finished
one alone; --overwrite runs it again. Under torchrun every process runs the suite on its share of
the points and rank 0 alone checks --out and writes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bastion.cli.common import check_out_dir, take_over_out_dir
from bastion.errors import InputError

__all__ = ["add_resume_options", "earlier_run", "run_resumable"]


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """--resume, --overwrite."""
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from the stages saved in --out (a finished run is left "
                        "alone)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")


def earlier_run(out: Path, result: str, *, resume: bool, overwrite: bool, command: str) -> Path | None:
    """The result file of a finished run that --resume leaves alone, or None to run; refuses to replace one unasked.

    Args:
        out: The output folder.
        result: The file the command writes last: its presence marks a finished run.
        resume: --resume was given.
        overwrite: --overwrite was given.
        command: The subcommand, for the message.

    Raises:
        InputError: If both flags are given, or --out holds an earlier run and neither is.
    """
    from bastion.evaluate.runner import STATE_NAME

    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    earlier = [name for name in (result, STATE_NAME) if (out / name).exists()]
    if earlier and not resume and not overwrite:
        what = "the results" if earlier[0] == result else "the saved stages"
        raise InputError(f"--out {out} holds {what} of an earlier `bastion {command}` run ({earlier[0]}): give "
                         "--resume to continue it, --overwrite to replace it, or another --out")
    return out / result if resume and earlier == [result] else None


def run_resumable(args: argparse.Namespace, command: str, result: str, work: Callable[[bool], int]) -> int:
    """Check --out, then run `work(is_main)` in a torchrun session unless --resume finds the run finished.

    `args` needs `out`, `resume`, `overwrite` and `device`; under torchrun `args.device` becomes
    this process's device. `work` returns the exit status; it writes the files only when `is_main`.
    """
    from bastion import distributed

    with distributed.session(args.device) as world:
        if world.active:
            args.device = world.device
        out = Path(args.out)
        finished = None
        if world.is_main:
            check_out_dir(out)
            finished = earlier_run(out, result, resume=args.resume, overwrite=args.overwrite, command=command)
            take_over_out_dir(out)
        if distributed.broadcast_object(finished is not None):
            if finished is not None:
                print(f"the {command} run in {out} is finished: its results are in {finished}; nothing was run "
                      "again (--overwrite runs it again)")
            return 0
        return work(world.is_main)
