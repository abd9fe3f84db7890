"""Model formats are a registry (issue 23 part 4): listed, tried in their declared order, named in errors."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from bastion.errors import InputError
from bastion.models import FORMATS, MODELS_HELP, ModelFormat, builtin_formats, load_model
from bastion.models.formats import formats_help, ordered_formats


class _Toy(ModelFormat):
    """A format claiming `toy:WIDTH` specs, registered only while a test runs."""

    order: ClassVar[int] = 5
    usage: ClassVar[str] = "toy:WIDTH"
    help: ClassVar[str] = "a linear layer of the given width"

    def claims(self, spec: str) -> bool:
        return spec.startswith("toy:")

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(4, int(spec[4:])))


@pytest.fixture
def toy() -> Iterator[str]:
    FORMATS.register("toy", _Toy)
    try:
        yield "toy"
    finally:
        FORMATS.unregister("toy")
    assert "toy" not in FORMATS and not any(line.startswith("toy:") for line in formats_help())


def test_every_builtin_format_class_is_registered_under_one_name():
    classes = {cls for _, cls in inspect.getmembers(builtin_formats, inspect.isclass)
               if issubclass(cls, ModelFormat) and cls is not ModelFormat}
    registered = [FORMATS.get(name) for name in FORMATS.names()]
    assert len(classes) >= 7 and classes == set(registered) and len(registered) == len(set(registered))


def test_formats_are_tried_in_their_declared_order_and_help_follows_it():
    orders = [fmt.order for _, fmt in ordered_formats()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert MODELS_HELP == formats_help() and [line.split("  ")[0] for line in MODELS_HELP] == [
        fmt.usage for _, fmt in ordered_formats()]


def test_a_spec_no_format_claims_names_every_registered_format():
    with pytest.raises(InputError, match="cannot load model 'justaname'") as caught:
        load_model("justaname", device="cpu")
    for name, fmt in ordered_formats():
        assert f"{fmt.usage} ({name})" in str(caught.value)


def test_a_new_registration_is_listed_loaded_and_named_in_errors(toy):
    assert toy in FORMATS.names() and "toy:WIDTH  a linear layer of the given width" in formats_help()
    loaded = load_model("toy:3", device="cpu")
    assert loaded.module(torch.rand(2, 1, 2, 2)).shape == (2, 3)
    with pytest.raises(InputError, match=r"toy:WIDTH \(toy\)"):
        load_model("justaname", device="cpu")


def test_a_lower_order_wins_a_spec_two_formats_claim(monkeypatch, toy):
    """The zoo (order 20) claims `zoo:` specs; a format tried earlier that claims them too loads them instead."""
    monkeypatch.setattr(_Toy, "claims", lambda self, spec: spec.startswith(("toy:", "zoo:")))
    monkeypatch.setattr(_Toy, "load", lambda self, spec, weights: nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    assert load_model("zoo:mnist-cnn", device="cpu").module(torch.rand(1, 1, 2, 2)).shape == (1, 2)
    monkeypatch.setattr(_Toy, "order", FORMATS.create("zoo").order + 1)
    assert load_model("zoo:mnist-cnn", device="cpu").module(torch.rand(1, 1, 28, 28)).shape == (1, 10)
