"""The model card's fields (`bastion.train.model_card`), built below the CLI from the run's parts."""

from __future__ import annotations

import torch

from bastion.data import ImageSet
from bastion.models import Normalized
from bastion.models.loading import fingerprint_model
from bastion.threat import ThreatModel
from bastion.train.card import write_card
from bastion.train.config import FitConfig
from bastion.train.loop import FitResult
from bastion.train.model_card import HeldOutCheck, base_spec, model_card
from tests.conftest import TinyCNN


def _set(n: int, seed: int, name: str) -> ImageSet:
    images = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return ImageSet(images=images, labels=torch.arange(n) % 4, classes=["a", "b", "c", "d"], name=name)


def test_card_records_the_model_data_check_and_warnings_in_order(tmp_path):
    torch.manual_seed(0)
    raw = TinyCNN()
    model = Normalized(raw, [0.5], [0.25])
    train, val = _set(16, 1, "toy:train"), _set(8, 2, "toy:eval")
    held_out = val.subset(torch.arange(6))
    result = FitResult(history=[{"epoch": 1.0}], selected_epoch=1, state_dict={}, seconds=3.456,
                       warnings=["from the loop"])
    card = model_card(method="pgd-at", trainer={"steps": 2}, adversarial=True, config=FitConfig(epochs=1),
                      threat=ThreatModel("linf", 0.1), model=model, spec="pkg:factory", initial_weights=None,
                      train=train, val=val, held_out=held_out, check=HeldOutCheck(0.9, 0.05, 7, 1, 1.234),
                      result=result, command="bastion train ...")
    assert card["model"]["mean"] == [0.5] and card["model"]["std"] == [0.25]
    assert card["model"]["architecture"] == "TinyCNN" and card["model"]["fingerprint"] == fingerprint_model(raw)
    assert card["data"]["n"] == 16 and card["data"]["held_out"] == {"name": "toy:eval", "n": 6,
                                                                   "fingerprint": held_out.fingerprint}
    assert card["metrics"]["pgd"] == {"steps": 7, "restarts": 1, "threat": ThreatModel("linf", 0.1).describe()}
    assert card["metrics"]["eval_seconds"] == 1.23 and card["wall_time_s"] == 3.46
    assert card["hyperparameters"]["epochs"] == 1 and card["warnings"][0] == "from the loop"
    assert len(card["warnings"]) > 1  # 5% robust accuracy after adversarial training is flagged

    folder = tmp_path / "trained"
    folder.mkdir()
    write_card(folder / "model_card.json", card)
    assert base_spec(str(folder)) == "pkg:factory" and base_spec("pkg:factory") == "pkg:factory"
