"""Adversarial patch: printable export size, pixels only under the mask, [0, 1], training that helps."""

import pytest
import torch
from PIL import Image

from bastion.attacks.patch import EOT, AdversarialPatch, Patch, evaluate_patch, patch_gallery, sample_placements
from bastion.errors import InputError


@pytest.fixture(scope="module")
def mnist():
    from bastion.data import load_dataset
    from bastion.models import load_model

    torch.set_num_threads(1)
    model = load_model("zoo:mnist-cnn", device="cpu").module.eval()
    x, y = load_dataset("mnist-sample", limit=160).batch(slice(None))
    return model, x, y


@pytest.mark.parametrize(("shape", "size", "mode"), [("square", 300, "L"), ("circle", 37, "LA")])
def test_png_export_has_the_requested_pixel_size(tmp_path, shape, size, mode):
    patch = Patch.blank(1, 9, shape, torch.zeros(1), torch.Generator().manual_seed(0))
    path = patch.save_png(tmp_path / "p.png", size=size)
    with Image.open(path) as image:
        assert image.size == (size, size) and image.mode == mode
        if shape == "circle":
            assert image.getpixel((0, 0))[1] == 0 and image.getpixel((size // 2, size // 2))[1] == 255


def test_rgb_export(tmp_path):
    patch = Patch.blank(3, 5, "square", torch.zeros(1), torch.Generator().manual_seed(0))
    with Image.open(patch.save_png(tmp_path / "p.png", size=64)) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    with pytest.raises(InputError):
        patch.save_png(tmp_path / "q.png", size=0)


@pytest.mark.parametrize("shape", ["square", "circle"])
def test_only_pixels_under_the_patch_change_and_stay_in_the_box(shape):
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(32, 3, 20, 24, generator=generator)
    patch = Patch.blank(3, 8, shape, x, generator)
    placement = sample_placements(32, patch.side, 20, 24, EOT(brightness=(0.5, 1.5)), generator, x)
    out = patch.paste(x, placement)
    covered = patch.footprint(placement, 20, 24) > 0
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[~covered.expand_as(x)], x[~covered.expand_as(x)])
    assert covered.flatten(1).any(dim=1).all()  # every image got the patch
    assert not torch.equal(out, x)


def test_identity_placement_pastes_the_patch_pixels_exactly():
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    patch = Patch.blank(1, 4, "square", x, torch.Generator().manual_seed(1))
    identity = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]]).expand(2, 5)
    out = patch.paste(x, identity)
    assert torch.equal(out[:, :, 4:8, 4:8], patch.pixels.expand(2, 1, 4, 4))
    outside = torch.ones(12, 12, dtype=torch.bool)
    outside[4:8, 4:8] = False
    assert torch.equal(out[:, :, outside], x[:, :, outside])


@pytest.mark.parametrize(("shape", "size"), [("square", 0.1), ("circle", 0.2)])
def test_patch_covers_the_requested_share_of_the_image(shape, size):
    trainer = AdversarialPatch(size=size, shape=shape)
    side = trainer.side(28, 28)
    mask = Patch.blank(1, side, shape, torch.zeros(1)).mask
    assert abs(float(mask.sum()) / 28**2 - size) < 0.03


def test_training_beats_a_random_patch_on_held_out_images(mnist):
    model, x, y = mnist
    trainer = AdversarialPatch(size=0.15, steps=40, batch_size=32, lr=0.1)
    fit = trainer.fit(model, x[:80], y[:80], generator=torch.Generator().manual_seed(0))
    assert fit.patch.pixels.min() >= 0 and fit.patch.pixels.max() <= 1
    trained = evaluate_patch(model, fit.patch, x[80:], y[80:], generator=torch.Generator().manual_seed(1))
    noise = Patch.blank(1, fit.patch.side, "square", x, torch.Generator().manual_seed(0))
    random = evaluate_patch(model, noise, x[80:], y[80:], generator=torch.Generator().manual_seed(1))
    assert trained.success_rate > random.success_rate
    assert trained.attacked == int((model(x[80:]).argmax(1) == y[80:]).sum())
    assert all(p.requires_grad for p in model.parameters())


def test_targeted_patch_counts_only_other_classes_and_is_reproducible(mnist):
    model, x, y = mnist
    trainer = AdversarialPatch(size=0.1, steps=3, batch_size=8)
    a = trainer.fit(model, x[:40], y[:40], target=2, generator=torch.Generator().manual_seed(5))
    b = trainer.fit(model, x[:40], y[:40], target=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.patch.pixels, b.patch.pixels) and a.patch.target == 2
    result = evaluate_patch(model, a.patch, x[40:], y[40:], placements=2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ok = model(x[40:]).argmax(1) == y[40:]
    assert result.attacked == int((ok & (y[40:] != 2)).sum())
    assert result.success.shape == (2, result.attacked)


def test_gallery_returns_png_data_uris(mnist):
    model, x, y = mnist
    patch = Patch.blank(1, 8, "circle", x, torch.Generator().manual_seed(0))
    items = patch_gallery(model, patch, x, y, n=3, generator=torch.Generator().manual_seed(0))
    assert len(items) == 3
    assert all(i["patched_png"].startswith("data:image/png;base64,") for i in items)
    assert {"label", "clean_prediction", "patched_prediction", "clean_png"} <= set(items[0])


def test_bad_settings_raise_input_error():
    for kwargs in ({"size": 0}, {"size": 1.5}, {"shape": "star"}, {"steps": 0}, {"lr": 0}):
        with pytest.raises(InputError):
            AdversarialPatch(**kwargs)
    with pytest.raises(InputError):
        EOT(scale=(2.0, 1.0))
