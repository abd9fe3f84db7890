"""DETECTORS: every run-time detector by name, the one list `--help`, errors and defaults read.

Each entry names its class as `"module:Class"`, imported when a detector is first built, so the CLI
lists the detectors without importing torch. A new detector is a `Detector` subclass and one line
here; tests/detect/test_registry.py checks every entry against its class's `name`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bastion.registry import Registry

if TYPE_CHECKING:
    from bastion.detect.detectors import Detector
    from bastion.detect.squeezers import Squeezer

__all__ = ["DETECTORS", "make_detector"]

DETECTORS: Registry[Detector] = Registry("detector")
DETECTORS.register("confidence", "bastion.detect.detectors:Confidence")
DETECTORS.register("entropy", "bastion.detect.detectors:Entropy")
DETECTORS.register("feature-squeezing", "bastion.detect.detectors:FeatureSqueezing",
                   aliases=("squeeze", "fs", "feature-squeeze"))
DETECTORS.register("margin", "bastion.detect.detectors:Margin")


def make_detector(name: str, squeezers: Sequence[Squeezer | str] | None = None) -> Detector:
    """Build a registered detector by name or alias (any case); `squeezers` go to the detectors that take them.

    Args:
        name: A name in `DETECTORS.names()` or an alias ("squeeze" for "feature-squeezing").
        squeezers: Squeezer objects or specs ("bit-depth:1") for feature squeezing; None keeps its defaults.
    """
    factory = DETECTORS.get(name.strip().lower())  # an unknown name: one line listing the registered detectors
    takes_squeezers = "squeezers" in inspect.signature(factory).parameters
    return factory(squeezers) if takes_squeezers else factory()
