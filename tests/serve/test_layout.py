"""The served model switches to channels-last only where it answers the same; otherwise it is left as it was."""

from __future__ import annotations

import torch
from torch import nn

from bastion.models import load_model
from bastion.serve.layout import adopt_channels_last


class ViewNet(nn.Module):
    """Reshapes with `.view`, which a channels-last activation refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        return self.head(z.view(len(z), -1))


def test_a_convolutional_model_switches_and_answers_the_same(eval_images) -> None:
    model = load_model("zoo:mnist-cnn", device="cpu").module.eval()
    x = eval_images[0][:32]
    with torch.no_grad():
        before = model(x)
        assert adopt_channels_last(model, x)
        after = model(x)
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]  # 16 -> 32 channels
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_a_model_that_refuses_the_layout_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    model, x = ViewNet().eval(), torch.rand(6, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
        assert not adopt_channels_last(model, x)
        assert model.conv.weight.is_contiguous() and torch.equal(model(x), before)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    assert not adopt_channels_last(linear, torch.rand(2, 1, 8, 8))  # no convolution: nothing to gain
