"""ONNX models as deployed: run by onnxruntime, with no gradients (`gradient_free = True`).

An evaluation of such a model can only query it: Square and HopSkipJump work from its outputs,
and a transfer attack crafts examples on a surrogate (usually the PyTorch model it was exported
from). `bastion.models.agreement` compares the two models' predictions, which shows a quantized
or mis-exported deployment. onnxruntime is an optional extra (`pip install 'bastion[onnx]'`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["OnnxModel", "load_onnx"]

logger = logging.getLogger(__name__)


class OnnxModel(nn.Module):
    """An nn.Module whose forward runs an onnxruntime session: same calls, no autograd.

    Calling it on an input that requires grad with grad mode on raises a one-line error instead
    of returning logits that silently carry no gradient. A model exported with a fixed batch size
    is run in chunks of that size (the last one padded), so any batch works.

    Args:
        session: An `onnxruntime.InferenceSession` with one image input and logits as its first output.
        digest: SHA-256 of the model file (and its external `.data` weights), kept as a buffer so the
            model's fingerprint tells files apart.
        source: Where the model came from, for messages.
    """

    #: Read by `bastion.models.traits.is_gradient_free`: only query-based and transfer attacks apply.
    gradient_free: ClassVar[bool] = True

    def __init__(self, session: Any, digest: bytes, source: str = "the ONNX model") -> None:
        super().__init__()
        self.session, self.source = session, source
        first = session.get_inputs()[0]
        self.input_name: str = first.name
        self.fixed_batch = first.shape[0] if first.shape and isinstance(first.shape[0], int) else None
        self._warned = False
        self.register_buffer("onnx_sha256", torch.frombuffer(bytearray(digest), dtype=torch.uint8))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, K) for `x` (B, C, H, W), computed by onnxruntime in float32 on the CPU."""
        if x.requires_grad and torch.is_grad_enabled():
            raise InputError(
                f"{self.source} runs under onnxruntime without gradients; use a query-based attack (square, "
                "hopskipjump) or a transfer attack from the PyTorch model it was exported from (--surrogate)"
            )
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.fixed_batch is None or self.fixed_batch == len(array):
            out = self._run(array)
        else:
            if not self._warned:
                self._warned = True
                logger.warning("%s was exported for a fixed batch of %d: running it in chunks of %d, the last one "
                               "padded", self.source, self.fixed_batch, self.fixed_batch)
            out = np.concatenate([self._run(chunk) for chunk in _chunks(array, self.fixed_batch)])[: len(array)]
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=x.dtype)

    def _run(self, array: np.ndarray) -> np.ndarray:
        try:
            outputs = self.session.run(None, {self.input_name: array})
        except Exception as error:  # onnxruntime raises its own (unexported) exception classes
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"{self.source} rejected input of shape {array.shape}: {first}") from None
        return np.asarray(outputs[0])


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    """Split along the batch into chunks of exactly `size`, padding the last by repeating its final row."""
    chunks = [array[i : i + size] for i in range(0, len(array), size)]
    short = size - len(chunks[-1])
    if short:
        chunks[-1] = np.concatenate([chunks[-1], np.repeat(chunks[-1][-1:], short, axis=0)])
    return chunks


def load_onnx(path: str | Path, *, providers: list[str] | None = None) -> OnnxModel:
    """Open an `.onnx` file in an onnxruntime session (CPU by default).

    Args:
        path: The model file.
        providers: onnxruntime execution providers, e.g. ["CUDAExecutionProvider",
            "CPUExecutionProvider"]; None runs on the CPU, the same everywhere.

    Raises:
        InputError: Without onnxruntime, or for a file onnxruntime cannot load.

    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    try:  # an optional extra, imported only when an ONNX model is asked for
        import onnxruntime
    except ImportError:
        raise InputError(f"{path} needs onnxruntime: pip install 'bastion[onnx]'") from None
    digest = hashlib.sha256(path.read_bytes())
    external = path.with_name(path.name + ".data")  # where torch.onnx.export puts the weights of larger models
    if external.is_file():
        digest.update(external.read_bytes())
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's business
    try:  # from the path, not bytes: external weight files are found next to it
        session = onnxruntime.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's exception classes are not part of its public API
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load {path} with onnxruntime: {first}") from None
    if len(session.get_inputs()) != 1:
        names = ", ".join(i.name for i in session.get_inputs())
        raise InputError(f"{path} takes {len(session.get_inputs())} inputs ({names}); bastion feeds one image batch")
    return OnnxModel(session, digest.digest(), str(path))
