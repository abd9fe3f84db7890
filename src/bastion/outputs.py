"""The one adapter from what a model returns to the logits every part of bastion works on.

Models in the wild return a tensor, a Hugging Face `ModelOutput` (a dict with `logits`), a plain
dict with `logits`, or a tuple whose first element is the logits (torchattacks #201). `logits_of`
accepts exactly those and refuses anything else with a one-line error; `returning_logits` makes a
model apply it to its own output, so attacks, evaluation, certification, training and the
run-time detectors all call `model(x)` and get a tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["logits_of", "returning_logits"]

M = TypeVar("M", bound=nn.Module)

_HOOKED = "_bastion_returns_logits"


def logits_of(output: Any) -> Tensor:
    """The logits in a model's output.

    Args:
        output: A tensor; a `ModelOutput` or other mapping with a `logits` entry; or a tuple or
            list whose first element is a tensor (the logits, as many research models return them).

    Returns:
        The logits tensor itself (not a copy: gradients flow through it).

    Raises:
        InputError: For any other output, naming what came back.

    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        logits = output.get("logits")
        if isinstance(logits, Tensor):
            return logits
        keys = ", ".join(str(k) for k in output.keys()) or "none"
        raise InputError(f"the model returned a {type(output).__name__} without a 'logits' tensor (keys: {keys})")
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise InputError(
        f"the model returned {type(output).__name__}; bastion needs logits: a tensor, a ModelOutput or "
        "dict with 'logits', or a tuple whose first element is the logits"
    )


def _to_logits(module: nn.Module, args: Any, output: Any) -> Tensor:
    return logits_of(output)


def returning_logits(model: M) -> M:
    """Make `model(x)` return `logits_of(model's output)`; idempotent; returns the same model.

    A forward hook rather than a wrapper module: the model keeps its class, its state-dict keys
    (so fingerprints, `bastion train`'s saved weights and `--weights` files are unchanged) and
    its attributes. A model that already returns a tensor pays one `isinstance` per call.

    Args:
        model: Any `nn.Module` (TorchScript modules, which take no Python hooks, are returned as
            they are: scripting already fixes their output type).

    """
    if getattr(model, _HOOKED, False) or _is_scripted(model):
        return model
    model.register_forward_hook(_to_logits)
    object.__setattr__(model, _HOOKED, True)
    return model


def _is_scripted(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torch.jit")
