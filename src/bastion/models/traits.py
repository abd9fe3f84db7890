"""What a loaded model says about itself: class names it carries, and whether it has gradients.

Both are read off the modules (through any wrappers: normalization, defenses, pass counters), so
they survive whatever bastion puts around the model.
"""

from __future__ import annotations

from torch import nn

__all__ = ["class_names", "is_gradient_free"]


def class_names(model: nn.Module) -> list[str] | None:
    """The class names the model carries (e.g. a Hugging Face config's `id2label`), or None.

    Any submodule with a `class_names` attribute (a list of strings, label `k` named `[k]`)
    provides them; the outermost one wins.
    """
    for module in model.modules():
        names = getattr(module, "class_names", None)
        if isinstance(names, (list, tuple)) and names:
            return [str(name) for name in names]
    return None


def is_gradient_free(model: nn.Module) -> bool:
    """Whether any part of the model runs without autograd (it sets `gradient_free = True`).

    Gradient attacks cannot run on such a model: an evaluation uses query-based attacks (Square,
    HopSkipJump) and transfer from a surrogate instead.
    """
    return any(bool(getattr(module, "gradient_free", False)) for module in model.modules())
