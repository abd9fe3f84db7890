"""Lazy package exports (PEP 562): a package says where each public name lives and imports it on first access.

`import bastion` then costs a handful of modules, and `bastion.PGD` imports the attacks the first time
it is read. A package keeps its `if TYPE_CHECKING:` imports of the same names, so type checkers and
the layering test still see them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    homes: Mapping[str, str],
    fallback: Callable[[str], Any] | None = None,
    complete: Collection[str] = (),
    shadows: Collection[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module-level `__getattr__` and `__dir__` for `package`.

    Args:
        package: The package's name (its `__name__`).
        homes: Public name -> the module it is imported from; a name whose home is `package.name` is
            that submodule itself, as is any other name of a submodule.
        fallback: Called with a name that `homes` lacks; returns its value or raises `AttributeError`.
        complete: Registries among the names: reading one first imports every module in `homes`, whose
            imports register their entries, so a registry is never read half filled.
        shadows: Submodules that define an attribute of their own name (`calibrate` in `calibrate.py`):
            the package's attribute is that attribute, as an eager `from .calibrate import calibrate`
            made it, even after the import system binds the submodule over it (`_keep_attributes`).

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
        return sorted(set(vars(sys.modules[package])) | set(homes) | set(shadows))

    if shadows:
        _keep_attributes(package, shadows)
    return __getattr__, __dir__


def _keep_attributes(package: str, names: Collection[str]) -> None:
    """Make each of `names` on `package` read `package.name.name`, whoever imports the submodule first.

    Importing a submodule sets it as an attribute of its package, over a same-named function
    there; a property on the package's module class (a supported customization since Python 3.5)
    outranks that binding. A value other than the submodule (a test's monkeypatch) is kept.
    """

    def attribute(name: str) -> property:
        home = f"{package}.{name}"

        def read(module: types.ModuleType) -> Any:
            own = vars(module).get(name)
            if own is not None and own is not sys.modules.get(home):
                return own
            return getattr(importlib.import_module(home), name)

        def write(module: types.ModuleType, value: Any) -> None:
            vars(module)[name] = value

        def delete(module: types.ModuleType) -> None:
            vars(module).pop(name, None)

        return property(read, write, delete)

    module = sys.modules[package]
    module.__class__ = type("LazyPackage", (types.ModuleType,), {name: attribute(name) for name in names})
