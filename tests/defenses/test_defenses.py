"""Every registered defense keeps shapes and bounds and declares how to attack it; specs parse with one-line errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bastion.defenses import DEFENSES, JPEG, BitDepth, Defended, Ensemble, Median, ResizePad, Round, build_defense
from bastion.defenses.preprocessing import gaussian_blur
from bastion.errors import InputError
from tests.conftest import TinyCNN


def _images(n: int = 4, channels: int = 1, side: int = 8) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_keeps_shape_and_declares_its_attack(name):
    defense = DEFENSES.create(name)
    x = _images()
    out = defense(x if defense.stage == "input" else torch.randn(4, 10))
    assert out.shape == (x.shape if defense.stage == "input" else (4, 10)) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    if defense.stage == "input":
        assert out.min() >= 0 and out.max() <= 1 + 1e-6
    assert defense.bpda and isinstance(defense.random, bool) and isinstance(defense.differentiable, bool)
    description = defense.describe()
    assert description["name"] == name and set(description) >= {"settings", "bpda", "random", "differentiable"}


def test_jpeg_is_the_real_codec():
    x = _images(2, 3, 16)
    out = JPEG(quality=30)(x)
    pixels = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=30)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
    torch.testing.assert_close(out[0].permute(1, 2, 0), torch.from_numpy(expected))
    assert (out - x).abs().max() > 0.01  # quality 30 changes the image visibly
    # Stronger compression removes more: quality 95 stays closer to the input than quality 10.
    assert (JPEG(quality=95)(x) - x).abs().mean() < (JPEG(quality=10)(x) - x).abs().mean()


@pytest.mark.parametrize("defense", [JPEG(), BitDepth(bits=3), Round(levels=16)])
def test_non_differentiable_defenses_give_zero_gradients(defense):
    x = _images().requires_grad_(True)
    (grad,) = torch.autograd.grad(defense(x).sum(), x)
    assert not defense.differentiable and torch.count_nonzero(grad) == 0


def test_round_and_bit_depth_quantize():
    x = _images()
    assert torch.allclose(Round(levels=4)(x) * 4, (Round(levels=4)(x) * 4).round())
    assert BitDepth(bits=1)(x).unique().tolist() == [0.0, 1.0]


def test_median_removes_salt_and_its_approximation_is_a_blur():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    assert Median(size=3)(x).abs().max() == 0  # an isolated pixel is removed
    blurred = Median(size=3).approx(x)
    torch.testing.assert_close(blurred, gaussian_blur(x, 0.8, 3))
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5) and blurred.max() < 1


def test_resize_pad_is_random_and_seeded():
    x = _images()
    a, b = ResizePad(seed=3), ResizePad(seed=3)
    first = a(x)
    assert torch.equal(first, b(x))  # same seed, same draws
    assert not torch.equal(first, a(x))  # a second call draws again
    assert a.random and a.differentiable


def test_defended_applies_defenses_in_order_around_the_model():
    model = TinyCNN().eval()
    x = _images()
    defended = Defended([build_defense("round:levels=2"), build_defense("median:size=3"),
                         build_defense("saturate:scale=2")], model)
    expected = torch.softmax(2 * model(Median(3)(Round(2)(x))), dim=1)
    torch.testing.assert_close(defended(x), expected)


def test_ensemble_modes():
    members = [TinyCNN().eval() for _ in range(3)]
    x = _images()
    logits = torch.stack([m(x) for m in members])
    torch.testing.assert_close(Ensemble(members, "logits")(x), logits.mean(0))
    torch.testing.assert_close(Ensemble(members, "probs")(x).exp(), logits.softmax(2).mean(0))
    votes = Ensemble(members, "vote")(x)
    counts = torch.nn.functional.one_hot(logits.argmax(2), 4).sum(0)
    assert torch.equal(votes.argmax(1), (counts + 1e-3 * logits.softmax(2).mean(0)).argmax(1))
    assert not Ensemble(members, "vote").differentiable and Ensemble(members, "logits").differentiable


@pytest.mark.parametrize(("spec", "message"), [
    ("jpg", "unknown defense 'jpg'; choose one of: bit-depth"),
    ("jpeg:qualty=75", "has no option qualty; its options: quality"),
    ("jpeg:quality=abc", "quality must be an integer in [1, 95]"),
    ("median:size=4", "size must be odd"),
    ("jpeg:quality", "write name:key=value"),
])
def test_bad_specs_are_one_line_input_errors(spec, message):
    with pytest.raises(InputError, match=None) as error:
        build_defense(spec)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_specs_convert_values():
    assert build_defense("jpeg:quality=40").quality == 40
    assert build_defense("gaussian:sigma=0.5").sigma == 0.5
    assert build_defense("resize-pad:scale=1.2,seed=4").settings() == {"scale": 1.2, "seed": 4}
