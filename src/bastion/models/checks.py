"""A model's first contact with the data: one-line errors for models that reject it or return junk."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.outputs import logits_of

__all__ = ["checked_logits"]


def checked_logits(model: nn.Module, x: Tensor, num_classes: int | None = None) -> Tensor:
    """`model(x)`, refused unless it is a finite (batch, classes) tensor with at least `num_classes` columns.

    Raises:
        InputError: the model rejects the input shape, returns something other than logits, fewer
            classes than the data has, or NaN/infinite values.
    """
    try:
        output = model(x)
    except InputError:  # already one line, e.g. from a loaded model's output adapter
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"the model rejected data of shape {tuple(x.shape[1:])}: {first}") from None
    logits = logits_of(output)
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise InputError(f"the model must return logits of shape (batch, classes), got {tuple(logits.shape)}")
    if num_classes is not None and logits.shape[1] < num_classes:
        raise InputError(f"the model outputs {logits.shape[1]} classes but the data has {num_classes}")
    if not bool(torch.isfinite(logits).all()):
        raise InputError("the model returned NaN or infinite logits")
    return logits
