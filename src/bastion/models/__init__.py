"""Models: loading from specs, the normalization wrapper, the bundled zoo."""

from bastion.models.loading import LoadedModel, load_model, load_weights, resolve_device
from bastion.models.normalize import Normalized
from bastion.models.zoo import ZOO, load_zoo_model
from bastion.passes import PassCount, PassCounter, attack_mode, model_device_dtype

__all__ = [
    "ZOO",
    "LoadedModel",
    "Normalized",
    "PassCount",
    "PassCounter",
    "attack_mode",
    "load_model",
    "load_weights",
    "load_zoo_model",
    "model_device_dtype",
    "resolve_device",
]
