"""A name -> factory registry (timm's idea as one small object), so the CLI builds anything by name.

A factory is a class or function, or the string `"package.module:attribute"` naming one: such an
entry is imported when it is first read, so a registry can list its names (for `--help` and error
messages) without importing what it builds, torch included.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

from bastion.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Maps lowercase names to factories (classes or functions) that build a `T`.

    Args:
        kind: What is registered ("attack", "model"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T] | str] = {}
        self._aliases: dict[str, str] = {}

    @overload
    def register(self, name: str, factory: None = None, *, aliases: Iterable[str] = ()) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: Callable[..., T] | str, *, aliases: Iterable[str] = ()) -> Any: ...

    def register(self, name: str, factory: Callable[..., T] | str | None = None, *, aliases: Iterable[str] = ()) -> Any:
        """Register `factory` under `name` (and `aliases`); used bare as a decorator when `factory` is None.

        Args:
            name: The name `names()` lists.
            factory: A class or function, or `"package.module:attribute"` imported on first use.
            aliases: Other names `get` and `create` accept for it; `names()` does not list them.
        """
        others = tuple(aliases)

        def add(obj: Callable[..., T] | str) -> Callable[..., T] | str:
            for key in (name, *others):
                if key in self._factories or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is already registered")
            self._factories[name] = obj
            self._aliases.update(dict.fromkeys(others, name))
            return obj

        return add(factory) if factory is not None else add

    def unregister(self, name: str) -> None:
        """Remove `name` and its aliases (a plugin withdrawn, a test's temporary entry)."""
        if name not in self._factories:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        del self._factories[name]
        self._aliases = {alias: target for alias, target in self._aliases.items() if target != name}

    def canonical(self, name: str) -> str:
        """The registered name `name` stands for (itself, or the name it is an alias of)."""
        key = self._aliases.get(name, name)
        if key not in self._factories:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under `name` (or an alias of it), imported first if given as a string."""
        key = self.canonical(name)
        factory = self._factories[key]
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = self._factories[key] = getattr(importlib.import_module(module), attribute)
        return factory

    def create(self, name: str, **kwargs: Any) -> T:
        """Build `name`, dropping options left at None so the factory's own defaults apply."""
        factory = self.get(name)
        options = {key: value for key, value in kwargs.items() if value is not None}
        accepted = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                valid = ", ".join(p for p in accepted if p != "self") or "none"
                raise InputError(f"{self.kind} {name!r} has no option {', '.join(unknown)}; its options: {valid}")
        return factory(**options)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted (aliases are not listed)."""
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted: `", ".join(registry)` and `list(registry)` read like `names()`."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
