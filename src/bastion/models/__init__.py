"""Models: loading from specs, the normalization wrapper, the bundled zoo."""

from bastion.models.agreement import Agreement, prediction_agreement
from bastion.models.loading import MODELS_HELP, LoadedModel, load_model, load_weights, resolve_device
from bastion.models.normalize import Normalized
from bastion.models.traits import class_names, is_gradient_free
from bastion.models.zoo import ZOO, load_zoo_model
from bastion.passes import PassCount, PassCounter, attack_mode, model_device_dtype

__all__ = [
    "MODELS_HELP",
    "ZOO",
    "Agreement",
    "LoadedModel",
    "Normalized",
    "PassCount",
    "PassCounter",
    "attack_mode",
    "class_names",
    "is_gradient_free",
    "load_model",
    "load_weights",
    "load_zoo_model",
    "model_device_dtype",
    "prediction_agreement",
    "resolve_device",
]
