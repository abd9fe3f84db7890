"""What two evaluation results must share when the same run is repeated or resumed: all but clocks and ids."""

from __future__ import annotations

from typing import Any

#: Wall-clock keys, which differ between runs of the same evaluation.
CLOCKS = ("seconds", "seconds_per_image")


def without_clocks(value: Any) -> Any:
    """`value` with every wall-clock key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_clocks(v) for k, v in value.items() if k not in CLOCKS}
    if isinstance(value, list):
        return [without_clocks(v) for v in value]
    return value


def comparable(result: Any) -> Any:
    """An `EvalResult` as a dict without its run id, date, provenance, config and clocks."""
    data = result.to_dict()
    for key in ("run_id", "created_at", "provenance", "config"):
        data.pop(key)
    return without_clocks(data)
