"""Lazy package exports (PEP 562): a package says where each public name lives and imports it on first access.

`import bastion` then costs a handful of modules, and `bastion.PGD` imports the attacks the first time
it is read. A package keeps its `if TYPE_CHECKING:` imports of the same names, so type checkers and
the layering test still see them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    homes: Mapping[str, str],
    fallback: Callable[[str], Any] | None = None,
    complete: Collection[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module-level `__getattr__` and `__dir__` for `package`.

    Args:
        package: The package's name (its `__name__`).
        homes: Public name -> the module it is imported from; a name whose home is `package.name` is
            that submodule itself, as is any other name of a submodule.
        fallback: Called with a name that `homes` lacks; returns its value or raises `AttributeError`.
        complete: Registries among the names: reading one first imports every module in `homes`, whose
            imports register their entries, so a registry is never read half filled.

    Returns:
        `(__getattr__, __dir__)`; `__getattr__` caches what it imports in the package's namespace.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None and not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            home = f"{package}.{name}"  # a submodule, which the eager imports used to load as a side effect
        if home is None:
            if fallback is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = fallback(name)
        else:
            if name in complete:
                for other in sorted(set(homes.values())):
                    importlib.import_module(other)
            module = importlib.import_module(home)
            value = module if home == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
