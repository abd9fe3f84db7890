"""Datasets as in-memory `ImageSet`s, loaded from a spec string such as "mnist-sample" or "npz:PATH".

The package ships the MNIST test split (LeCun, Cortes and Burges, CC BY-SA 3.0; see
`files/LICENSE-MNIST.md`) so that demos and tests run offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.data.imageset import ImageSet
    from bastion.data.sources import DATASETS_HELP, default_root, load_dataset

__all__ = ["DATASETS_HELP", "ImageSet", "default_root", "load_dataset"]

_HOMES = {
    "DATASETS_HELP": "bastion.data.sources",
    "ImageSet": "bastion.data.imageset",
    "default_root": "bastion.data.sources",
    "load_dataset": "bastion.data.sources",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
