"""bastion's own model formats, registered in `FORMATS` in the order `load_model` tries them.

A training output folder, `zoo:`, `hf:`, an ONNX file, a torch.export program, a TorchScript file,
and a user's factory (`module:factory`, `file.py:factory`). A file spec with a model suffix that
does not exist is "not found" in the format its suffix names.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from bastion.errors import InputError
from bastion.models.exported import is_exported_program, load_exported
from bastion.models.factory import call_factory, import_factory
from bastion.models.formats import FORMATS, ModelFormat, find_format
from bastion.models.hf import load_hf_model
from bastion.models.normalize import Normalized
from bastion.models.onnx_model import load_onnx
from bastion.models.statedict import load_weights
from bastion.models.trained import read_card, trained_weights
from bastion.models.zoo import load_zoo_model
from bastion.outputs import returning_logits

__all__ = ["ExportedFormat", "FactoryFormat", "HFFormat", "ONNXFormat", "TorchScriptFormat", "TrainedFormat",
           "ZooFormat"]


def _file(spec: str, suffixes: tuple[str, ...]) -> bool:
    """An existing file, or a missing one whose suffix is among `suffixes` (to be reported as not found)."""
    path = Path(spec)
    return path.is_file() or (path.suffix.lower() in suffixes and not path.exists())


def _own_weights(spec: str, weights: str | Path | None, message: str) -> None:
    """A file that carries its own weights: refuse a missing file, then any `weights` given."""
    if not Path(spec).exists():
        raise InputError(f"model file not found: {spec}")
    if weights is not None:
        raise InputError(message)


@FORMATS.register("trained")
class TrainedFormat(ModelFormat):
    """The output directory of `bastion train`: architecture from its card, weights from model.pt."""

    order: ClassVar[int] = 10
    usage: ClassVar[str] = "DIR"
    help: ClassVar[str] = "the output folder of bastion train (model_card.json + model.pt / model.safetensors)"

    def claims(self, spec: str) -> bool:  # noqa: D102
        return Path(spec).is_dir()

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:
        """The card's `model.spec` rebuilt, `model.pt` loaded, the training normalization put back in front."""
        if weights is not None:
            raise InputError("a training output directory carries its own weights (model.pt); drop --weights")
        card = read_card(spec)
        inner = card["model"]["spec"]
        if Path(inner).is_dir():
            raise InputError(f"{spec}: its model spec {inner!r} is itself a directory")
        state = trained_weights(spec)
        model = returning_logits(find_format(inner).load(inner, None)).to("cpu").eval()
        load_weights(model, state)
        mean, std = card["model"].get("mean"), card["model"].get("std")
        return Normalized(model, mean, std).eval() if mean is not None and std is not None else model.eval()


@FORMATS.register("zoo")
class ZooFormat(ModelFormat):
    """A model of bastion's bundled zoo, with its weights."""

    order: ClassVar[int] = 20
    usage: ClassVar[str] = "zoo:NAME"
    help: ClassVar[str] = "a bundled model with its weights (listed above)"

    def claims(self, spec: str) -> bool:  # noqa: D102
        return spec.startswith("zoo:")

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        if weights is not None:
            raise InputError("zoo models carry their own weights; drop --weights")
        return load_zoo_model(spec[4:])


@FORMATS.register("hf")
class HFFormat(ModelFormat):
    """A transformers image classifier (`bastion.models.hf`)."""

    order: ClassVar[int] = 30
    usage: ClassVar[str] = "hf:NAME_OR_PATH[@REVISION]"
    help: ClassVar[str] = (
        "a transformers image classifier (pip install 'bastion[hf]'): a hub repo (cached in $HF_HOME; @REVISION "
        "pins a branch, tag or commit) or a save_pretrained folder; its image processor runs inside the model on "
        "pixels in [0, 1]; class names from config.id2label")

    def claims(self, spec: str) -> bool:  # noqa: D102
        return spec.startswith("hf:")

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        if weights is not None:
            raise InputError("hf: models carry their own weights (save_pretrained folder or hub repo); drop --weights")
        return load_hf_model(spec[3:])


@FORMATS.register("onnx")
class ONNXFormat(ModelFormat):
    """An ONNX model run by onnxruntime (`bastion.models.onnx_model`)."""

    order: ClassVar[int] = 40
    usage: ClassVar[str] = "FILE.onnx"
    help: ClassVar[str] = ("an ONNX model run by onnxruntime (pip install 'bastion[onnx]'), without gradients: "
                           "query-based and transfer attacks only")

    def claims(self, spec: str) -> bool:  # noqa: D102
        return spec.lower().endswith(".onnx") and _file(spec, (".onnx",))

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        _own_weights(spec, weights, f"{spec} carries its own weights; drop --weights")
        return load_onnx(spec)


@FORMATS.register("pt2")
class ExportedFormat(ModelFormat):
    """A torch.export program (`bastion.models.exported`), told apart from other files by its contents."""

    order: ClassVar[int] = 50
    usage: ClassVar[str] = "FILE.pt2"
    help: ClassVar[str] = ("a torch.export program (torch.export.save; one exported with a fixed batch runs in "
                           "chunks of it)")

    def claims(self, spec: str) -> bool:  # noqa: D102
        path = Path(spec)
        return (path.suffix.lower() == ".pt2" and not path.exists()) or (path.is_file() and is_exported_program(path))

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        _own_weights(spec, weights, f"{spec} carries its own weights; drop --weights")
        return load_exported(spec)


@FORMATS.register("torchscript")
class TorchScriptFormat(ModelFormat):
    """A TorchScript module: any other model file, refused in one line if it is not one."""

    order: ClassVar[int] = 60
    usage: ClassVar[str] = "FILE.pt"
    help: ClassVar[str] = "a TorchScript module (deprecated upstream; prefer .pt2)"

    def claims(self, spec: str) -> bool:  # noqa: D102
        return _file(spec, (".pt", ".pth", ".ts"))

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        if not Path(spec).exists():
            raise InputError(f"model file not found: {spec}")
        if not _is_torchscript(Path(spec)):
            raise InputError(
                f"{spec} is not a TorchScript file, a torch.export program (.pt2) or an ONNX model; for a state dict "
                "give the architecture as --model module:factory and the file as --weights"
            )
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many users ship
            warnings.simplefilter("ignore", DeprecationWarning)
            model: nn.Module = torch.jit.load(spec, map_location="cpu")  # type: ignore[no-untyped-call]
        if weights is not None:
            raise InputError("a TorchScript model carries its own weights; drop --weights")
        return model


@FORMATS.register("factory")
class FactoryFormat(ModelFormat):
    """A callable returning an `nn.Module`, from a module or a Python file (`bastion.models.factory`)."""

    order: ClassVar[int] = 70
    usage: ClassVar[str] = "package.module:factory | path/file.py:factory"
    help: ClassVar[str] = ("a callable returning an nn.Module; --weights FILE gives its state dict (.safetensors, "
                           "or a torch checkpoint read with weights_only=True)")

    def claims(self, spec: str) -> bool:  # noqa: D102
        return ":" in spec

    def load(self, spec: str, weights: str | Path | None) -> nn.Module:  # noqa: D102
        factory = import_factory(spec)
        model = call_factory(spec, factory) if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            raise InputError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
        if weights is not None:
            load_weights(model, weights)
        return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
