"""Detectors are one registry (issue 23 part 4): listed without torch, built by name or alias, named in errors."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from bastion.detect import DETECTORS, Detector, FeatureSqueezing, detectors, make_detector
from bastion.errors import InputError


class _Constant(Detector):
    """Scores every input the same: a detector registered only while a test runs."""

    name: ClassVar[str] = "constant"

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return torch.zeros(len(x))


@pytest.fixture
def constant() -> Iterator[str]:
    DETECTORS.register("constant", _Constant, aliases=("const",))
    try:
        yield "constant"
    finally:
        DETECTORS.unregister("constant")
    assert "constant" not in DETECTORS.names() and "const" not in DETECTORS


def test_every_detector_class_is_registered_under_its_own_name():
    classes = {cls for _, cls in inspect.getmembers(detectors, inspect.isclass)
               if issubclass(cls, Detector) and not inspect.isabstract(cls)}
    assert len(classes) >= 4 and {DETECTORS.get(name) for name in DETECTORS.names()} == classes
    for name in DETECTORS.names():
        assert DETECTORS.get(name).name == name and make_detector(name).name == name


def test_the_names_are_listed_without_importing_torch():
    code = ("import json, sys\nfrom bastion.detect.registry import DETECTORS\n"
            "print(json.dumps([DETECTORS.names(), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    names, torch_loaded = json.loads(done.stdout.splitlines()[-1])
    assert names == DETECTORS.names() and not torch_loaded


def test_an_unknown_name_lists_every_registered_detector():
    with pytest.raises(InputError, match="unknown detector 'oracle'") as caught:
        make_detector("oracle")
    assert str(caught.value).endswith(", ".join(DETECTORS.names()))


def test_aliases_and_case_build_feature_squeezing_and_only_it_takes_squeezers():
    built = make_detector(" Squeeze ", ["bit-depth:2"])
    assert isinstance(built, FeatureSqueezing) and [s.name for s in built.squeezers] == ["bit-depth:2"]
    assert "squeeze" not in DETECTORS.names() and DETECTORS.canonical("fs") == "feature-squeezing"
    assert make_detector("margin", ["bit-depth:2"]).name == "margin"  # the squeezers are not its option


def test_a_new_registration_is_listed_built_and_named_in_errors(constant):
    assert constant in DETECTORS.names() and isinstance(make_detector("CONST"), _Constant)
    with pytest.raises(InputError, match="constant"):
        make_detector("oracle")


def test_the_evaluation_calibrates_every_registered_detector_by_default():
    from bastion.detect.registry import DETECTORS
    from bastion.evaluate.stages.detection_run import DEFAULT_DETECTORS

    assert sorted(DEFAULT_DETECTORS) == DETECTORS.names()
