"""The served model's memory layout: channels-last when it runs the guard's batches faster and answers the same.

The guard runs the model on a batch and its squeezed copies at once (four images per input with
the default squeezers), and on a CPU PyTorch's convolution and max-pooling kernels run such batches
about twice as fast in channels-last layout (NHWC) as in the default NCHW (measured on
zoo:mnist-cnn-at, batch 128: 6.8 against 14.5 ms of CPU). The switch is in place on the served
model, only on the CPU, only for models with 2-d convolutions, and only when the model still gives
the same logits on the calibration images (a model that reshapes with `.view` may refuse the
layout, or answer differently: then it stays as it is).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

__all__ = ["adopt_channels_last"]

_log = logging.getLogger(__name__)


def _relayout(model: nn.Module, layout: torch.memory_format) -> None:
    """What `model.to(memory_format=layout)` does: every 4-d parameter and buffer in that layout, in place."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.to(memory_format=layout)


def adopt_channels_last(model: nn.Module, sample: Tensor, *, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Put `model` (in eval mode) in channels-last layout when that is safe; True when it did.

    Args:
        model: The served model, on the CPU for the switch to apply.
        sample: Images (B, C, H, W) it must answer the same on, in its input range.
        atol: Absolute tolerance on the logits.
        rtol: Relative tolerance on the logits.
    """
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or sample.dim() != 4:
        return False
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    x = sample.to(parameter.device, parameter.dtype)
    with torch.no_grad():
        before = model(x)
        _relayout(model, torch.channels_last)
        try:
            after = model(x.contiguous(memory_format=torch.channels_last))
            same = after.shape == before.shape and bool(torch.allclose(after, before, atol=atol, rtol=rtol))
        except RuntimeError:
            same = False
    if not same:
        _relayout(model, torch.contiguous_format)
        _log.info("the model keeps its NCHW layout: channels-last changes or refuses its answers")
        return False
    _log.info("serving the model in channels-last layout (faster on the CPU for the guard's batches)")
    return True
