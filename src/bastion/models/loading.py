"""Load a model from a spec: `zoo:NAME`, `hf:NAME`, `module:factory`, `file.py:factory`, `.pt2`, `.onnx`, TorchScript.

Weights are read with `torch.load(weights_only=True)` or from safetensors: a checkpoint holds
tensors, and loading one must never run code. Every loaded model returns logits
(`bastion.outputs.returning_logits`), whatever its own output type. Each kind of spec is a format
registered in `bastion.models.formats.FORMATS`, tried in its declared order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import bastion.models.builtin_formats  # noqa: F401  (registers bastion's own formats in FORMATS)
from bastion.errors import InputError
from bastion.models.formats import find_format, formats_help
from bastion.models.normalize import Normalized
from bastion.models.statedict import load_weights
from bastion.models.traits import class_names, is_gradient_free
from bastion.outputs import returning_logits

__all__ = ["MODELS_HELP", "LoadedModel", "fingerprint_model", "load_model", "load_weights", "resolve_device"]

#: One line per registered model format, in the order they are tried (`bastion list models`).
MODELS_HELP: list[str] = formats_help()


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
            `bastion train`: whichever registered format (`bastion.models.formats.FORMATS`)
            claims it first.
        weights: State dict (`.safetensors` or a torch checkpoint) for a factory-built model.
        mean: Per-channel normalization mean, if the model expects standardized inputs.
        std: Per-channel normalization std, given together with `mean`.
        device: Where to run it; None or "auto" picks the best available.
    """
    if (mean is None) != (std is None):
        raise InputError("give --mean and --std together")
    target = resolve_device(device if not isinstance(device, torch.device) else str(device))
    model = find_format(spec).load(spec, weights)
    model = returning_logits(model)
    if mean is not None and std is not None:
        model = Normalized(model, mean, std)
    model = model.to(target).eval()
    return LoadedModel(module=model, spec=spec, fingerprint=fingerprint_model(model), device=target,
                       classes=class_names(model), gradient_free=is_gradient_free(model))

