"""A surrogate distilled from the model's own predictions, for a transfer attack when the user names none.

When the model's input gradients are cut (a codec, a `no_grad` block, a deployed runtime) and no
surrogate is given, escalation trains one: a small CNN fitted to the model's output probabilities
on the evaluated images and on random points of the eps-ball around them (knowledge distillation,
Hinton, Vinyals & Dean 2015, arXiv:1503.02531, with the queries placed where the attack will look,
as in Papernot et al.'s black-box substitute training, AsiaCCS 2017, arXiv:1602.02697). Transfer
attacks from it (Dong et al., CVPR 2018) then search where the model's own gradients cannot lead.
It costs one forward pass of the model per image and epoch, and a few seconds of training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.evaluate.context import EvalContext
from bastion.passes import attack_mode

__all__ = ["DistilledCNN", "distill_surrogate"]


class DistilledCNN(nn.Module):
    """A small CNN for any image shape: three 3x3 convolutions (two strided), pooled to 4x4, one linear layer."""

    def __init__(self, channels: int, classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(2 * width * 16, classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        out: Tensor = self.head(self.features(x))
        return out


def distill_surrogate(ctx: EvalContext, *, epochs: int = 12, batch_size: int = 64, lr: float = 2e-3,
                      max_images: int = 512) -> DistilledCNN:
    """Fit a `DistilledCNN` to `ctx.model`'s probabilities on the data and on random points of its eps-balls.

    Each epoch queries the model on the clean images (a seeded sample of at most `max_images`) and
    on one uniform draw of the threat model's ball around each (clipped to the input box); the
    surrogate minimizes the KL divergence to those probabilities. Seeded by the stage's stream
    "distill"; on the model's device and dtype.
    """
    generator = ctx.generator("distill")
    chosen = torch.sort(torch.randperm(len(ctx.data), generator=generator)[:max_images]).values
    x_all, _ = ctx.data.batch(chosen, device=ctx.device, dtype=ctx.dtype)
    with torch.random.fork_rng(devices=[]):  # the layers' initial weights, seeded without touching the caller's
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        surrogate = DistilledCNN(x_all.shape[1], ctx.data.num_classes).to(device=ctx.device, dtype=ctx.dtype)
    optimizer = torch.optim.Adam(surrogate.parameters(), lr=lr)
    low, high = ctx.threat.bounds
    for _ in range(epochs):
        noise = ctx.threat.norm.random_init(x_all, ctx.threat.eps, generator=generator)
        inputs = torch.cat([x_all, (x_all + noise.to(x_all)).clamp(low, high)])
        with attack_mode(ctx.model), torch.no_grad():
            chunks = torch.split(inputs, ctx.batch_size)
            teacher = torch.cat([F.softmax(ctx.model(chunk).float(), 1) for chunk in chunks])
        order = torch.randperm(len(inputs), generator=generator).to(ctx.device)
        surrogate.train()
        for rows in torch.split(order, batch_size):
            loss = F.kl_div(F.log_softmax(surrogate(inputs[rows]).float(), 1), teacher[rows], reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return surrogate.eval()
