"""How well a deployed model (ONNX, quantized, exported) agrees with the PyTorch model it came from.

A transfer attack from a surrogate is only as strong as the surrogate is close to the deployed
model; a quantized or mis-exported deployment shows up here first: as disagreeing predictions,
and as a logit difference larger than an export's float32 tolerance (about 1e-5 of the logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bastion.data import ImageSet
from bastion.outputs import logits_of
from bastion.passes import model_device_dtype

__all__ = ["Agreement", "prediction_agreement"]


@dataclass(frozen=True)
class Agreement:
    """Predictions of a deployed model and its surrogate on the same clean images.

    Attributes:
        n: Images compared.
        agree: Images on which both predict the same class.
        deployed_accuracy: Clean accuracy of the deployed model.
        surrogate_accuracy: Clean accuracy of the surrogate.
        max_logit_diff: Largest absolute difference of any logit (the export's numerical error
            when the two are the same network; large for a quantized or different model).
        disagreements: Indices (in the data) where the predictions differ, at most 100.
    """

    n: int
    agree: int
    deployed_accuracy: float
    surrogate_accuracy: float
    max_logit_diff: float
    disagreements: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Share of images with the same prediction (1.0 for a faithful export)."""
        return self.agree / self.n if self.n else 1.0

    def to_dict(self) -> dict[str, float | int | list[int]]:
        """Plain values for a JSON report."""
        return {"n": self.n, "agree": self.agree, "rate": self.rate, "deployed_accuracy": self.deployed_accuracy,
                "surrogate_accuracy": self.surrogate_accuracy, "max_logit_diff": self.max_logit_diff,
                "disagreements": list(self.disagreements)}


@torch.no_grad()
def prediction_agreement(
    deployed: nn.Module, surrogate: nn.Module, data: ImageSet, *, batch_size: int = 256
) -> Agreement:
    """Run both models on every image of `data` and compare their predictions and logits.

    Args:
        deployed: The model as deployed (e.g. `OnnxModel`); run on the surrogate's device.
        surrogate: The model attacks are crafted on (e.g. the PyTorch model it was exported from).
        data: Clean images in [0, 1] with labels.
        batch_size: Images per forward pass.

    Returns:
        An `Agreement`; `max_logit_diff` is NaN when the two output different numbers of classes.

    """
    device, dtype = model_device_dtype(surrogate)
    agree = deployed_right = surrogate_right = 0
    max_diff = 0.0
    disagreements: list[int] = []
    was = (deployed.training, surrogate.training)
    deployed.eval(), surrogate.eval()
    try:
        for index, x, y in data.batches(batch_size, device=device, dtype=dtype):
            a, b = logits_of(deployed(x)), logits_of(surrogate(x))
            pred_a, pred_b = a.argmax(1), b.argmax(1)
            same = pred_a == pred_b
            agree += int(same.sum())
            deployed_right += int((pred_a == y).sum())
            surrogate_right += int((pred_b == y).sum())
            if a.shape == b.shape:
                max_diff = max(max_diff, float((a.float() - b.float().to(a.device)).abs().max()))
            else:
                max_diff = float("nan")
            room = 100 - len(disagreements)
            if room > 0:
                disagreements += index[~same.cpu()][:room].tolist()
    finally:
        deployed.train(was[0]), surrogate.train(was[1])
    n = len(data)
    return Agreement(n, agree, deployed_right / n, surrogate_right / n, max_diff, disagreements)
