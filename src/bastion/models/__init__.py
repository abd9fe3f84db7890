"""Models: loading from specs (each kind a format registered in `FORMATS`), the normalization wrapper, the zoo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.models.agreement import Agreement, prediction_agreement
    from bastion.models.formats import FORMATS, ModelFormat
    from bastion.models.loading import MODELS_HELP, LoadedModel, load_model, load_weights, resolve_device
    from bastion.models.normalize import Normalized
    from bastion.models.traits import class_names, is_gradient_free
    from bastion.models.zoo import ZOO, load_zoo_model
    from bastion.passes import PassCount, PassCounter, attack_mode, model_device_dtype

__all__ = [
    "FORMATS",
    "MODELS_HELP",
    "ZOO",
    "Agreement",
    "LoadedModel",
    "ModelFormat",
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

_HOMES = {
    "Agreement": "bastion.models.agreement",
    "FORMATS": "bastion.models.formats",
    "LoadedModel": "bastion.models.loading",
    "MODELS_HELP": "bastion.models.loading",
    "ModelFormat": "bastion.models.formats",
    "Normalized": "bastion.models.normalize",
    "PassCount": "bastion.passes",
    "PassCounter": "bastion.passes",
    "ZOO": "bastion.models.zoo",
    "attack_mode": "bastion.passes",
    "class_names": "bastion.models.traits",
    "is_gradient_free": "bastion.models.traits",
    "load_model": "bastion.models.loading",
    "load_weights": "bastion.models.loading",
    "load_zoo_model": "bastion.models.zoo",
    "model_device_dtype": "bastion.passes",
    "prediction_agreement": "bastion.models.agreement",
    "resolve_device": "bastion.models.loading",
}

# Reading `FORMATS` first imports every module above, `loading` among them, which registers the built-in formats.
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, complete=("FORMATS",))
