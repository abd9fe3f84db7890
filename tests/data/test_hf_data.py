"""`hf:` datasets: small sets saved with save_to_disk, read back as the same pixels, labels and classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bastion.cli import main
from bastion.data import load_dataset
from bastion.data.hf import parse_hf_data_spec
from bastion.errors import InputError
from bastion.evaluate.report_schema import class_rows

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist-sample", limit=40)


@pytest.fixture(scope="module")
def saved(mnist, tmp_path_factory):
    """The first 40 mnist-sample:eval digits as a DatasetDict (test: 40, train: 8), with odd column names."""
    images = [Image.fromarray(x[0].numpy()) for x in mnist.images]
    labels = mnist.labels.tolist()
    features = datasets.Features({"digit": datasets.ClassLabel(names=[f"d{k}" for k in range(10)]),
                                  "picture": datasets.Image()})
    test = datasets.Dataset.from_dict({"digit": labels, "picture": images}, features=features)
    folder = tmp_path_factory.mktemp("hf") / "digits"
    datasets.DatasetDict({"train": test.select(range(8)), "test": test}).save_to_disk(str(folder))
    single = folder.with_name("single")
    test.save_to_disk(str(single))
    return folder, single


def test_same_pixels_labels_and_class_names(saved, mnist):
    folder, single = saved
    for spec in (f"hf:{folder}", f"hf:{folder}:test", f"hf:{single}"):
        data = load_dataset(spec)
        assert data.fingerprint == mnist.fingerprint and data.images.dtype == torch.uint8
        assert data.classes == [f"d{k}" for k in range(10)] and data.shape == (1, 28, 28)
    assert load_dataset(f"hf:{folder}").name == f"hf:{folder}:test"
    assert len(load_dataset(f"hf:{folder}:train")) == 8


def test_limit_and_seed_select_like_imageset(saved, mnist):
    folder, _ = saved
    assert load_dataset(f"hf:{folder}", limit=10).fingerprint == mnist.select(10).fingerprint
    assert load_dataset(f"hf:{folder}", limit=10, seed=3).fingerprint == mnist.select(10, 3).fingerprint


def test_size_resizes_and_color_images_stay_rgb(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((20, 30), (24, 24))]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"img": images, "label": [0, 1]}, features=features).save_to_disk(str(tmp_path / "c"))
    with pytest.raises(InputError, match="differ in size .* give one size"):
        load_dataset(f"hf:{tmp_path / 'c'}")
    data = load_dataset(f"hf:{tmp_path / 'c'}:16")
    assert data.shape == (3, 16, 16) and data.classes == ["0", "1"] and data.name.endswith(":16")


def test_errors_are_one_line(saved, tmp_path):
    folder, single = saved
    with pytest.raises(InputError, match="unknown split 'validation' .* splits: train, test"):
        load_dataset(f"hf:{folder}:validation")
    with pytest.raises(InputError, match="without splits; drop :test"):
        load_dataset(f"hf:{single}:test")
    with pytest.raises(InputError, match="cannot load hf:ylecun/mnist"):  # offline: HF_HUB_OFFLINE in conftest
        load_dataset("hf:ylecun/mnist:test")
    datasets.Dataset.from_dict({"a": [1, 2]}).save_to_disk(str(tmp_path / "noimg"))
    with pytest.raises(InputError, match="no Image column .features: a"):
        load_dataset(f"hf:{tmp_path / 'noimg'}")


def test_spec_parsing(saved):
    folder, _ = saved
    assert parse_hf_data_spec("imagenet-1k:validation") == ("imagenet-1k", "validation", None)
    assert parse_hf_data_spec("ylecun/mnist:test:32") == ("ylecun/mnist", "test", 32)
    assert parse_hf_data_spec(f"{folder}:train") == (str(folder), "train", None)
    assert parse_hf_data_spec("cifar10") == ("cifar10", None, None)


def test_evaluate_end_to_end_on_an_hf_dataset(saved, tmp_path):
    folder, _ = saved
    args = ["--model", "zoo:mnist-cnn", "--limit", "16", "--eps", "0.1", "--suite", "pgd", "--steps", "2",
            "--restarts", "1", "--curve-points", "0", "--no-fgsm", "--quiet"]
    assert main(["evaluate", "--data", f"hf:{folder}", *args, "--out", str(tmp_path / "hf")]) == 0
    assert main(["evaluate", "--data", "mnist-sample", *args, "--out", str(tmp_path / "ref")]) == 0
    hf, ref = (json.loads((tmp_path / k / "report.json").read_text()) for k in ("hf", "ref"))
    assert hf["provenance"]["data"]["fingerprint"] == ref["provenance"]["data"]["fingerprint"]
    assert [hf["summary"][k] for k in ("clean_accuracy", "robust_accuracy")] == [
        ref["summary"][k] for k in ("clean_accuracy", "robust_accuracy")]
    assert class_rows(hf)[0]["name"] == "d0"
