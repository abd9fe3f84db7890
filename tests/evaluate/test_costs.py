"""A part of a stage counts its passes by the stage's own count, so the parts add up to the whole."""

from __future__ import annotations

import torch
from torch import nn

from bastion.passes import PassCount, counting_passes, measuring


def test_a_measured_block_counts_by_the_open_count_of_the_classifier():
    classifier = nn.Linear(4, 2)
    view = nn.Sequential(classifier, nn.Identity())  # what an attack sees: one view pass is one classifier pass
    x = torch.rand(3, 4, requires_grad=True)
    with counting_passes(classifier) as stage:
        classifier(x)
        with measuring(view) as part:
            view(x).sum().backward()
            view(x[:2])
        classifier(x)
    assert part.passes == PassCount(2, 1, 5, 3)  # the two view passes, counted on the classifier
    assert stage.count == PassCount(4, 1, 11, 3)
    assert part.seconds > 0


def test_with_no_count_open_a_measured_block_counts_the_model_it_is_given():
    model = nn.Linear(4, 2)
    with measuring(model) as cost:
        model(torch.rand(5, 4))
    model(torch.rand(5, 4))  # after the block: not counted
    assert cost.passes == PassCount(1, 0, 5, 0)
