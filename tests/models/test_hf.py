"""`hf:` image classifiers: a tiny ViT built from a config, saved with save_pretrained, never downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bastion.attacks import PGD
from bastion.cli import main
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import class_names, load_model
from bastion.models.hf import Resize, parse_hf_spec
from bastion.threat import ThreatModel

transformers = pytest.importorskip("transformers")

NAMES = [f"digit-{k}" for k in range(10)]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A 3-channel ViT on 14x14 inputs (patch 7), normalization mean 0.5 / std 0.5, random weights."""
    config = transformers.ViTConfig(
        image_size=14, patch_size=7, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=10, initializer_range=0.5, id2label=dict(enumerate(NAMES)),
        label2id={name: k for k, name in enumerate(NAMES)})
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    folder = tmp_path_factory.mktemp("vit")
    model.save_pretrained(folder)
    processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 14, "width": 14},
                 "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


@pytest.fixture(scope="module")
def reference(vit_dir):
    return transformers.ViTForImageClassification.from_pretrained(vit_dir).eval()


@pytest.fixture(scope="module")
def labelled(vit_dir, tmp_path_factory):
    """16 MNIST digits labelled with the random ViT's own predictions, so every point starts correct."""
    model = load_model(f"hf:{vit_dir}", device="cpu").module
    x, _ = load_dataset("mnist-sample", limit=16).batch(slice(None))
    with torch.no_grad():
        y = model(x).argmax(1)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=(x * 255).round().to(torch.uint8).numpy(), y=y.numpy(), classes=np.array(NAMES))
    return f"npz:{path}"


def test_numbers_match_transformers_with_its_preprocessing(vit_dir, reference):
    loaded = load_model(f"hf:{vit_dir}", device="cpu")
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # MNIST-sized grayscale
    pixels = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(14, 14), mode="bilinear",
                                             align_corners=False, antialias=True)
    with torch.no_grad():
        expected = reference(pixel_values=(pixels - 0.5) / 0.5).logits
        assert torch.allclose(loaded.module(x), expected, atol=1e-6)
    assert loaded.classes == NAMES and class_names(loaded.module) == NAMES


def test_numbers_match_the_image_processor_itself(vit_dir, reference):
    from PIL import Image

    pixels = torch.randint(0, 256, (3, 14, 14, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    processor = transformers.AutoImageProcessor.from_pretrained(vit_dir)
    batch = processor(images=[Image.fromarray(p.numpy()) for p in pixels], return_tensors="pt")["pixel_values"]
    loaded = load_model(f"hf:{vit_dir}", device="cpu").module
    with torch.no_grad():
        expected = reference(pixel_values=batch).logits
        assert torch.allclose(loaded(pixels.permute(0, 3, 1, 2) / 255), expected, atol=1e-5)


def test_gradients_flow_in_pixel_space_and_pgd_runs(vit_dir):
    model = load_model(f"hf:{vit_dir}", device="cpu").module
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.shape == x.shape and bool(grad.abs().sum() > 0)
    x = x.detach()
    y = model(x).argmax(1).detach()
    result = PGD(steps=5)(model, x, y, ThreatModel("linf", 0.3), generator=torch.Generator().manual_seed(0))
    assert float(result.norms.max()) <= 0.3 + 1e-5
    with torch.no_grad():  # a random ViT is hard to fool in 5 steps, but the attack must raise its loss
        before, after = (torch.nn.functional.cross_entropy(model(v), y) for v in (x, result.x_adv))
    assert after > before


def test_resize_follows_the_processor_rules():
    assert Resize(shortest_edge=8).target(16, 32) == (8, 16)
    assert Resize(size=(5, 7)).target(16, 32) == (5, 7)
    x = torch.rand(1, 3, 10, 20)
    out = Resize(shortest_edge=8, crop=(8, 8))(x)
    assert out.shape == (1, 3, 8, 8)
    assert torch.equal(Resize(size=(10, 20))(x), x)  # already the model's size: untouched


def test_spec_parsing_and_offline_hub_error(tmp_path):
    assert parse_hf_spec("google/vit-base-patch16-224@a1b2c3") == ("google/vit-base-patch16-224", "a1b2c3")
    assert parse_hf_spec("google/vit-base-patch16-224") == ("google/vit-base-patch16-224", None)
    with pytest.raises(InputError, match=r"cannot load hf:google/vit-base-patch16-224@main as an image classifier"):
        load_model("hf:google/vit-base-patch16-224@main", device="cpu")
    with pytest.raises(InputError, match="drop --weights"):
        load_model(f"hf:{tmp_path}", weights=tmp_path / "w.pt", device="cpu")


def test_evaluate_end_to_end(vit_dir, labelled, tmp_path):
    out = tmp_path / "run"
    assert main(["evaluate", "--model", f"hf:{vit_dir}", "--data", labelled, "--eps", "0.1",
                 "--suite", "pgd", "--steps", "2", "--restarts", "1", "--curve-points", "0", "--no-fgsm",
                 "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "clean" in json.dumps(report) and (out / "report.html").is_file()


def test_attack_cli_on_the_vit(vit_dir, labelled, capsys):
    assert main(["attack", "pgd", "--model", f"hf:{vit_dir}", "--data", labelled, "--eps", "0.3", "--steps", "10",
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 16 and summary["clean_accuracy"] == 1.0
    assert summary["robust_accuracy"] < 1.0 and summary["passes"]["backward"] > 0


def test_hub_names_resolve_through_the_cache_with_revision_pinning(vit_dir, tmp_path):
    """The hub code path, offline: a repo laid out as huggingface_hub caches it, by name and by pinned commit."""
    from bastion.models.hf import load_hf_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--bastion--tiny-vit"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in vit_dir.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    x = torch.rand(2, 3, 14, 14)
    local = load_model(f"hf:{vit_dir}", device="cpu").module
    for name in ("bastion/tiny-vit", f"bastion/tiny-vit@{commit}"):
        model = load_hf_model(name, cache_dir=str(tmp_path))
        with torch.no_grad():
            assert torch.equal(model(x), local(x)) and model.class_names == NAMES
    with pytest.raises(InputError, match="cannot load hf:bastion/tiny-vit@v2"):
        load_hf_model("bastion/tiny-vit@v2", cache_dir=str(tmp_path))
