"""A name -> factory registry (timm's idea as one small object), so the CLI builds anything by name."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bastion.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to factories (classes or functions) that build a `T`.

    Args:
        kind: What is registered ("attack", "model"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None) -> Any:
        """Register `factory` under `name`; used bare as a decorator when `factory` is None."""

        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = obj
            return obj

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under `name`."""
        if name not in self._factories:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._factories[name]

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
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._factories if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
