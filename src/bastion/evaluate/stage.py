"""A stage of the evaluation: its own settings, its own typed result, its own report section and randomness.

A stage is to the evaluation what an attack is to the attack layer. Its constructor takes a name and
keyword settings, which build the stage's frozen `Settings` dataclass (defaults and validation there,
as in an attack's constructor); `run(ctx)` reads what earlier stages found from the context and
returns a frozen `StageResult` that round-trips through JSON. The runner (`bastion.evaluate.runner`)
does the rest for every stage alike: saving, resuming, timing, counting passes, and seeding the
stage's random stream from the run seed and the stage's name.

A stage renders itself: `headline` is its row in the terminal's stage table (the line a user reads
first), `html_section` its section of report.html (empty when the report's common sections already
show it). Adding a stage is one module and one `@STAGES.register`; `tests/evaluate/test_stage_contract.py`
then runs it through the contract every stage must keep.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, is_dataclass
from enum import Enum
from typing import Any, ClassVar, TypeVar, Union

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.records import AttackRecord, Finding
from bastion.registry import Registry

__all__ = ["STAGES", "NoSettings", "Stage", "StageResult", "from_json", "json_ready"]

R = TypeVar("R", bound="StageResult")


@dataclass(frozen=True)
class StageResult:
    """Base of every stage's result: a frozen dataclass of JSON values and nested results.

    The report and the verdict read every result through the same two methods, so that neither
    names a result type to find what it needs: `attack_records` (its rows of the attack table, each
    typed by its `AttackKind`) and `verdict_findings` (the gradient-masking findings it weighs in
    the verdict). Both are empty unless the result overrides them.
    """

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (enums as their values)."""
        return json_ready(self)

    def attack_records(self) -> list[AttackRecord]:
        """This stage's rows of the attack table, in the order they ran (none by default)."""
        return []

    def verdict_findings(self) -> list[Finding]:
        """The findings this stage reports to the verdict (none by default).

        A finding is reported once, by the stage that reports it: the probes' findings, which the
        checks stage takes over, are the checks stage's to report.
        """
        return []

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Rebuild from `to_dict()` output (nested dataclasses included)."""
        return typing.cast(R, from_json(cls, data))


@dataclass(frozen=True)
class NoSettings:
    """The settings of a stage that has none."""


class Stage(ABC):
    """One step of an evaluation, registered in `STAGES` under its `kind`.

    Args:
        name: The stage's name in a suite (unique there; it names the random stream and the saved
            state); None takes the kind.
        **settings: The fields of the stage's `Settings` dataclass.
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[Any]] = NoSettings
    Result: ClassVar[type[StageResult]]
    #: The `bastion evaluate` flags (and TOML keys) this stage owns: `bastion.evaluate.flags`.
    flags: ClassVar[tuple[Flag, ...]] = ()

    def __init__(self, name: str | None = None, **settings: Any) -> None:
        self.name = name or self.kind
        try:
            self.settings = self.Settings(**settings)
        except TypeError as error:
            valid = ", ".join(f.name for f in dataclasses.fields(self.Settings)) or "none"
            raise InputError(f"stage {self.name!r}: {error}; its settings: {valid}") from None

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """This kind's settings from a run's options: the run-level ones (`eps`, ...) and every flag's value.

        A suite entry's own settings lie under these, and the TOML's `[stages.NAME]` table over them;
        an empty mapping leaves the suite's settings as they are.
        """
        return {}

    def settings_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (recorded in the report, and compared on resume)."""
        return json_ready(self.settings)

    @abstractmethod
    def run(self, ctx: EvalContext) -> StageResult:
        """Run the stage on `ctx` and return its result; may mark points broken in `ctx.robust`."""

    @classmethod
    @abstractmethod
    def headline(cls, result: Any) -> str:
        """One line for the terminal's stage table: what this stage found."""

    @classmethod
    def html_section(cls, result: Any) -> str:
        """The stage's own section of report.html; empty when the common sections already show it."""
        return ""

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings_dict().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if settings else ''}{settings})"


STAGES: Registry[Stage] = Registry("stage")


def json_ready(instance: Any) -> dict[str, Any]:
    """`dataclasses.asdict`, with enums as their values: what JSON and a weights-only `torch.load` read back."""
    return asdict(instance, dict_factory=lambda items: {k: v.value if isinstance(v, Enum) else v for k, v in items})


def from_json(kind: Any, value: Any) -> Any:
    """Rebuild a value of type `kind` (a dataclass, enum, list, dict, union or plain type) from its JSON form."""
    origin = typing.get_origin(kind)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict):
            raise InputError(f"expected an object for {kind.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: from_json(hints[k], v) for k, v in value.items() if k in names})
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        (item, *_) = typing.get_args(kind) or (Any,)
        return [from_json(item, v) for v in value]
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(kind) or (Any, Any)
        return {k: from_json(item, v) for k, v in value.items()}
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_json(options[0], value) if len(options) == 1 else value
    return value
