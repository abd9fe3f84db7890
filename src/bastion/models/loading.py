"""Load a model from a spec: `zoo:NAME`, `hf:NAME`, `module:factory`, `file.py:factory`, `.pt2`, `.onnx`, TorchScript.

Weights are read with `torch.load(weights_only=True)` or from safetensors: a checkpoint holds
tensors, and loading one must never run code. Every loaded model returns logits
(`bastion.outputs.returning_logits`), whatever its own output type.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion.errors import InputError
from bastion.models.exported import is_exported_program, load_exported
from bastion.models.hf import load_hf_model
from bastion.models.normalize import Normalized
from bastion.models.onnx_model import load_onnx
from bastion.models.tensorfile import is_safetensors, read_safetensors
from bastion.models.trained import read_card, trained_weights
from bastion.models.traits import class_names, is_gradient_free
from bastion.models.weightsfile import read_checkpoint
from bastion.models.zoo import load_zoo_model
from bastion.outputs import returning_logits

__all__ = ["MODELS_HELP", "LoadedModel", "fingerprint_model", "load_model", "load_weights", "resolve_device"]

MODELS_HELP: list[str] = [
    "hf:NAME_OR_PATH[@REVISION]  a transformers image classifier (pip install 'bastion[hf]'): a hub repo "
    "(cached in $HF_HOME; @REVISION pins a branch, tag or commit) or a save_pretrained folder; its image "
    "processor runs inside the model on pixels in [0, 1]; class names from config.id2label",
    "package.module:factory | path/file.py:factory  a callable returning an nn.Module; --weights FILE gives "
    "its state dict (.safetensors, or a torch checkpoint read with weights_only=True)",
    "FILE.pt2  a torch.export program (torch.export.save; one exported with a fixed batch runs in chunks of it)",
    "FILE.onnx  an ONNX model run by onnxruntime (pip install 'bastion[onnx]'), without gradients: "
    "query-based and transfer attacks only",
    "FILE.pt  a TorchScript module (deprecated upstream; prefer .pt2)",
    "DIR  the output folder of bastion train (model_card.json + model.pt / model.safetensors)",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Suffixes of the model files --model takes (torch.export, ONNX, TorchScript): a missing one is "not found".
_MODEL_SUFFIXES = (".pt2", ".onnx", ".pt", ".pth", ".ts")
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for evaluation, with where it came from.

    Attributes:
        classes: Class names the model itself carries (a Hugging Face config's `id2label`), or None.
        gradient_free: True for models that run without autograd (ONNX under onnxruntime): only
            query-based and transfer attacks apply to them.
    """

    module: nn.Module
    spec: str
    fingerprint: str
    device: torch.device
    classes: list[str] | None = None
    gradient_free: bool = False


def resolve_device(name: str | None) -> torch.device:
    """`auto` (or None) picks CUDA, then Apple MPS, then the CPU; otherwise the named device."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available here")
    return device


def fingerprint_model(model: nn.Module) -> str:
    """sha256 over parameter and buffer names and values: the same weights give the same fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        value = tensor.detach().cpu().contiguous()
        digest.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def _import_factory(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"model file not found: {target}")
        module_name = f"_bastion_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise InputError(f"cannot import {target}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except SyntaxError as error:
            sys.modules.pop(module_name, None)
            raise InputError(f"cannot import {target}: syntax error at line {error.lineno}: {error.msg}") from None
        except Exception as error:  # the user's module failed while importing: say so in one line
            sys.modules.pop(module_name, None)
            raise InputError(f"cannot import {target}: {_one_line(error)}") from None
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, "")  # like `python -m`: modules in the current directory can be named
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise InputError(f"cannot import model module {target!r}: {error}") from None
        except SyntaxError as error:
            raise InputError(f"cannot import model module {target!r}: syntax error in {error.filename} at line "
                             f"{error.lineno}: {error.msg}") from None
        except Exception as error:  # the user's module failed while importing
            raise InputError(f"cannot import model module {target!r}: {_one_line(error)}") from None
    if not hasattr(module, attr):
        raise InputError(f"unknown factory {attr!r} in {target}")
    return getattr(module, attr)


def _one_line(error: BaseException) -> str:
    """`TypeName: first line of the message`, without terminal escape codes."""
    text = _ANSI.sub("", str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _call_factory(spec: str, factory: Any) -> Any:
    """Call a model factory with no arguments; its failure is the user's, reported in one line."""
    try:
        return factory()
    except TypeError as error:
        if "required" in str(error) and "argument" in str(error):
            raise InputError(f"the factory {spec} must build the model without arguments ({error}); wrap it in a "
                             "function that passes them, e.g. def build(): return Net(width=64)") from None
        raise InputError(f"the factory {spec} failed: {_one_line(error)}") from None
    except Exception as error:  # the user's code raised: one line, no traceback
        raise InputError(f"the factory {spec} failed: {_one_line(error)}") from None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def _state_dict_of(checkpoint: object, source: str) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in _STATE_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return _state_dict_of(checkpoint[key], source)
        if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return {str(k).removeprefix("module."): v for k, v in checkpoint.items()}
    raise InputError(f"{source} holds no state dict (expected a dict of tensors, or one under {_STATE_KEYS})")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict (a `.safetensors` file, or a torch checkpoint holding one) into `model`, strictly."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    if is_safetensors(path):
        return _fit_or_raise(model, _state_dict_of(read_safetensors(path), str(path)), path)
    return _fit_or_raise(model, _state_dict_of(read_checkpoint(path), str(path)), path)


def _fit_or_raise(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    result = _check_fit(model, state, path)
    if result:
        raise InputError(f"the weights in {path} do not fit the model: {result}")
    return model


def _check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if names:
            more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
            problems.append(f"{label}: {', '.join(names[:3])}{more}")
    if not problems:
        model.load_state_dict(state, strict=True)
    return "; ".join(problems)


def load_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Build the model a spec names, load its weights, wrap normalization, move it to `device`.

    Args:
        spec: `zoo:NAME`, `hf:NAME_OR_PATH[@REVISION]` (a transformers image classifier),
            `package.module:factory`, `path/to/file.py:factory` (the factory is a callable
            returning an `nn.Module`), a `.pt2` torch.export program, an `.onnx` file (run by
            onnxruntime, without gradients), a TorchScript file, or the output directory of
            `bastion train`.
        weights: State dict (`.safetensors` or a torch checkpoint) for a factory-built model.
        mean: Per-channel normalization mean, if the model expects standardized inputs.
        std: Per-channel normalization std, given together with `mean`.
        device: Where to run it; None or "auto" picks the best available.
    """
    if (mean is None) != (std is None):
        raise InputError("give --mean and --std together")
    target = resolve_device(device if not isinstance(device, torch.device) else str(device))
    if Path(spec).is_dir():  # a `bastion train` output directory: model_card.json + model.pt
        if weights is not None:
            raise InputError("a training output directory carries its own weights (model.pt); drop --weights")
        model = _load_trained(spec)
    elif spec.startswith("zoo:"):
        if weights is not None:
            raise InputError("zoo models carry their own weights; drop --weights")
        model = load_zoo_model(spec[4:])
    elif spec.startswith("hf:"):
        if weights is not None:
            raise InputError("hf: models carry their own weights (save_pretrained folder or hub repo); drop --weights")
        model = load_hf_model(spec[3:])
    elif Path(spec).suffix.lower() in _MODEL_SUFFIXES and not Path(spec).exists():
        raise InputError(f"model file not found: {spec}")
    elif Path(spec).is_file() and (spec.lower().endswith(".onnx") or is_exported_program(Path(spec))):
        if weights is not None:
            raise InputError(f"{spec} carries its own weights; drop --weights")
        model = load_onnx(spec) if spec.lower().endswith(".onnx") else load_exported(spec)
    elif Path(spec).is_file():
        if not _is_torchscript(Path(spec)):
            raise InputError(
                f"{spec} is not a TorchScript file, a torch.export program (.pt2) or an ONNX model; for a state dict "
                "give the architecture as --model module:factory and the file as --weights"
            )
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many users ship
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(spec, map_location="cpu")  # type: ignore[no-untyped-call]
        if weights is not None:
            raise InputError("a TorchScript model carries its own weights; drop --weights")
    elif ":" in spec:
        factory = _import_factory(spec)
        model = _call_factory(spec, factory) if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            raise InputError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
        if weights is not None:
            load_weights(model, weights)
    else:
        raise InputError(
            f"cannot load model {spec!r}: use zoo:NAME, hf:NAME, module:factory, path/file.py:factory, "
            "or a .pt2, .onnx or TorchScript file"
        )
    model = returning_logits(model)
    if mean is not None and std is not None:
        model = Normalized(model, mean, std)
    model = model.to(target).eval()
    return LoadedModel(module=model, spec=spec, fingerprint=fingerprint_model(model), device=target,
                       classes=class_names(model), gradient_free=is_gradient_free(model))


def _load_trained(directory: str) -> nn.Module:
    """Rebuild the model a `bastion train` run wrote: architecture from the card, weights from model.pt.

    The card's `model.spec` rebuilds the architecture and `model.pt` (a state dict) gives the
    weights; the normalization used in training (`model.mean`, `model.std`) is put back in front.
    """
    card = read_card(directory)
    spec = card["model"]["spec"]
    if Path(spec).is_dir():
        raise InputError(f"{directory}: its model spec {spec!r} is itself a directory")
    weights = trained_weights(directory)
    model = load_model(spec, device="cpu").module
    load_weights(model, weights)
    mean, std = card["model"].get("mean"), card["model"].get("std")
    return Normalized(model, mean, std).eval() if mean is not None and std is not None else model.eval()
