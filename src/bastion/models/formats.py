"""The model formats `--model` takes, as a registry: each says which specs are its own and loads them.

A format is a small class registered in `FORMATS` (`bastion.models.builtin_formats` holds bastion's
own). `load_model` tries the registered formats in ascending `order`, and the first whose `claims`
accepts a spec builds it, so a new format is one class and one registration, and the error for a
spec no format claims lists every registered one.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from torch import nn

from bastion.errors import InputError
from bastion.registry import Registry

__all__ = ["FORMATS", "ModelFormat", "find_format", "formats_help", "ordered_formats"]


class ModelFormat(ABC):
    """One kind of model spec: which specs it claims, and how it builds the module they name.

    Attributes:
        order: Formats are tried in ascending order; the first that claims a spec loads it.
        usage: The spec's shape, e.g. "zoo:NAME", listed in errors and in `bastion list models`.
        help: One line on what it loads, for `bastion list models`.
    """

    order: ClassVar[int]
    usage: ClassVar[str]
    help: ClassVar[str]

    @abstractmethod
    def claims(self, spec: str) -> bool:
        """True when `spec` is this format's (a prefix, a suffix, a file's contents)."""

    @abstractmethod
    def load(self, spec: str, weights: str | Path | None) -> nn.Module:
        """The module `spec` names, with `weights` (a state dict file) loaded, or a one-line refusal of them."""


FORMATS: Registry[ModelFormat] = Registry("model format")


def ordered_formats() -> list[tuple[str, ModelFormat]]:
    """(name, format) of every registered format, in the order they are tried."""
    importlib.import_module("bastion.models.builtin_formats")  # registers bastion's own before the first lookup
    found = [(name, FORMATS.create(name)) for name in FORMATS.names()]
    return sorted(found, key=lambda pair: (pair[1].order, pair[0]))


def find_format(spec: str) -> ModelFormat:
    """The first registered format, in order, that claims `spec`; an `InputError` listing them all if none does."""
    formats = ordered_formats()
    for _, model_format in formats:
        if model_format.claims(spec):
            return model_format
    usages = "; ".join(f"{model_format.usage} ({name})" for name, model_format in formats)
    raise InputError(f"cannot load model {spec!r}: no model format takes it; use one of: {usages}")


def formats_help() -> list[str]:
    """One line per registered format, in order: its usage and what it loads."""
    return [f"{model_format.usage}  {model_format.help}" for _, model_format in ordered_formats()]
