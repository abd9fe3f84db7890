"""No baseless default: never calibrate on the training data; --calibration required when held-out data is unknown."""

from __future__ import annotations

import pytest
import torch
from starlette.testclient import TestClient

from bastion.cli import main
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models.zoo import ZOO
from bastion.serve import build_server, create_app, load_config
from bastion.serve.check import run_check
from bastion.serve.provenance import image_keys, refuse_training_overlap, resolve_calibration
from bastion.serve.security import ApiKey
from tests.serve.conftest import load_model_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def images(spec: str) -> torch.Tensor:
    return load_dataset(spec).images.float() / 255.0


def test_every_zoo_model_was_trained_on_the_split_the_table_names() -> None:
    for name, entry in ZOO.items():
        assert "mnist-sample:train" in entry.recipe or "images 0-7999 of mnist-sample" in entry.recipe, name
        assert resolve_calibration(f"zoo:{name}", None, None) == ("mnist-sample:eval", 1000)
    assert resolve_calibration("zoo:mnist-cnn", "npz:mine.npz", 300) == ("npz:mine.npz", 300)
    with pytest.raises(InputError, match="--calibration is required for pkg.mod:Net"):
        resolve_calibration("pkg.mod:Net", None, None)


def test_a_calibration_set_sharing_training_images_is_refused() -> None:
    train, held_out = images("mnist-sample:train"), images("mnist-sample:eval")
    refuse_training_overlap("zoo:mnist-cnn-at", held_out)
    refuse_training_overlap("pkg.mod:Net", train[:10])  # training data unknown: nothing to compare with
    mixed = torch.cat([held_out[:300], train[100:105]])
    with pytest.raises(InputError, match=r"shares 5 of its 305 images .* --calibration mnist-sample:eval"):
        refuse_training_overlap("zoo:mnist-cnn-at", mixed)
    # The check is on pixels: a copy of training images under another name is refused too.
    assert image_keys(train[:3]) == image_keys(train[:3].clone()) != image_keys(held_out[:3])


def test_cli_refuses_the_training_split_in_one_line(capsys) -> None:
    code = main(["serve", "--model", "zoo:mnist-cnn-at", "--device", "cpu", "--calibration", "mnist-sample:train",
                 "--calibration-limit", "400", "--check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "training split of zoo:mnist-cnn-at" in err[0], err


def test_default_calibration_is_the_held_out_split_and_check_leaves_it_out() -> None:
    server = build_server(load_config(None, {"model": {"device": "cpu"}, "guard": {"fpr": 0.05}}),
                          model=load_model_module(), fingerprint="f")
    assert server.config.guard.calibration == "mnist-sample:eval (1000 seeded)"
    assert server.guard.conformal[0].n == 1000 and len(server.calibration_keys) == 1000
    assert server.calibration_keys <= frozenset(image_keys(images("mnist-sample:eval")))
    with pytest.raises(InputError, match="1000 images the guard was not calibrated on, fewer than --check-limit 1001"):
        run_check(server, create_app, data="mnist-sample:eval", limit=1001)
    server.admin_key = ApiKey("admin-key-0123456789")
    with TestClient(create_app(server)) as client:
        refused = client.post("/admin/recalibrate", json={"calibration": "mnist-sample:train", "limit": 500},
                              headers={"x-api-key": "admin-key-0123456789"})
    assert refused.status_code == 422 and "training split" in refused.json()["error"]
