"""Typed stage results that are sections of report.json: built from their JSON form, optional keys left out.

A stage whose work is a function returning a JSON-ready section (certification, detection, the
extended suite, ...) keeps that function, and its typed result is built from the section with
`from_section`: the section goes through JSON first (tuples become lists), so the result equals its
own round trip, as the stage contract asks. A field made with `optional()` is a key the section
writes only sometimes (the adaptive attack's row, fixed-n savings): it is left out of `to_dict()`
while None, so report.json keeps the section's content key for key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from bastion.evaluate.stage import StageResult

__all__ = ["SparseResult", "json_ready", "optional", "plain"]

S = TypeVar("S", bound="SparseResult")

_ABSENT_WHEN_NONE = "absent_when_none"


def optional() -> Any:
    """A field defaulting to None that `to_dict()` leaves out while it is None."""
    return dataclasses.field(default=None, metadata={_ABSENT_WHEN_NONE: True})


def json_ready(value: Any) -> Any:
    """`value` as JSON would give it back: tuples as lists, unknown objects as their `str`."""
    return json.loads(json.dumps(value, default=str))


def plain(value: Any) -> Any:
    """Dataclasses (nested ones too) as dicts, without the `optional()` fields that are None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get(_ABSENT_WHEN_NONE) and getattr(value, f.name) is None)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class SparseResult(StageResult):
    """Base of the typed results built from a JSON section."""

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON-ready values, unset optional keys left out."""
        data: dict[str, Any] = plain(self)
        return data

    @classmethod
    def from_section(cls: type[S], section: dict[str, Any]) -> S:
        """The typed result of a JSON-ready section (normalized through JSON, so it equals its round trip)."""
        return cls.from_dict(json_ready(section))
