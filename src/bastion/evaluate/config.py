"""The settings of one evaluation, from keyword arguments, a TOML file, or the command line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.defenses import build_defense
from bastion.defenses.ensemble import MODES
from bastion.epsrange import check_eps
from bastion.errors import InputError
from bastion.evaluate.stage_flags import all_flags, check_flag_values, flag_defaults
from bastion.evaluate.suites import SUITES
from bastion.threat import get_norm, parse_eps
from bastion.tomlfile import read_toml_document

__all__ = ["EvalConfig", "read_toml"]


@dataclass(frozen=True)
class EvalConfig:
    """What defines an evaluation at the run level, plus the flags its stages own; recorded in the report.

    The run-level fields are below. Every other option (`steps`, `certify`, `curve_points`, ...) is a
    flag owned by a stage (`bastion.evaluate.flags`; `bastion evaluate --help` lists them by stage):
    `options` holds the ones given, and `flag(name)` reads any one, given or default. `build` and
    `from_options` take everything as one flat mapping, as the CLI and a TOML file give it.

    Args:
        model: Model spec: `zoo:NAME`, `module:factory`, `path/file.py:factory` or a TorchScript file
            (optional when the model is passed in memory to `evaluate_model`).
        data: Data spec (optional with in-memory data): `mnist-sample`, `npz:PATH`, `pt:PATH`,
            `imagefolder:PATH`, `cifar10:test`, ...
        norm: Threat model norm, "linf" or "l2".
        eps: Threat model radius, a number or a fraction string ("8/255").
        weights: State dict for a factory-built model.
        mean: Per-channel normalization mean (normalization becomes the model's first layer).
        std: Per-channel normalization std.
        data_root: Where torchvision datasets are stored and downloaded.
        limit: Evaluate this many points (the first ones, or a seeded random subset with `subset_seed`).
        subset_seed: Seed of the random subset; None takes the first `limit` points.
        suite: A suite of `bastion.evaluate.suites.SUITES`: "fast" (the default: probes, FGSM, then
            `apgd-fast` instead of PGD and AutoAttack, escalating by itself on evidence and audited by
            AutoAttack on a sample: AutoAttack's strength for about a tenth of its passes),
            "autoattack" (FGSM, PGD, then the AutoAttack members: the standard protocol, for numbers
            comparable with published AutoAttack results), "pgd" (FGSM and PGD only: quick, and not
            enough for a robustness claim), "extended" (the standard protocol plus threat models
            beyond the Lp ball) or "deployed" (no gradients: Square, HopSkipJump and, with a
            surrogate, transfer; chosen by itself for a model without gradients, such as an ONNX file).
        batch_size: Points per forward pass.
        seed: Seed of every stage's randomness.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        out: Directory that receives report.json and report.html.
        defense: Defense specs (`jpeg:quality=75`, `median:size=3`, ...) applied to the model's input
            (or output) in the order given; see `bastion.defenses.DEFENSES`.
        ensemble: Model specs combined into one ensemble model (instead of `model`); each member's
            accuracy is reported next to the ensemble's.
        ensemble_mode: How the members combine: "logits" (mean), "probs" (mean probabilities,
            returned as log-probabilities) or "vote" (majority).
        options: The stages' flags given, by name (the rest keep their defaults).
        stages: Settings by stage name, over everything above (the TOML file's `[stages.NAME]` tables,
            e.g. `[stages.pgd] steps = 40`; `bastion.evaluate.suites` lists each suite's stages).
    """

    model: str = ""
    data: str = ""
    norm: str = "linf"
    eps: float = 0.3
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data_root: str | None = None
    limit: int | None = None
    subset_seed: int | None = None
    suite: str = "fast"
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    defense: tuple[str, ...] = ()
    ensemble: tuple[str, ...] = ()
    ensemble_mode: str = "logits"
    options: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "norm", get_norm(self.norm).name)
        set_(self, "eps", parse_eps(self.eps))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = parse_floats(value, name)
            if value is not None:
                set_(self, name, tuple(float(v) for v in value))
        _check_int("batch_size", self.batch_size, 1)
        if self.limit is not None:
            _check_int("limit", self.limit, 1)
        if self.suite not in SUITES:
            raise InputError(f"unknown suite {self.suite!r}; choose one of: {', '.join(SUITES)}")
        if not math.isfinite(self.eps):
            raise InputError("eps must be finite")
        check_eps(self.norm, self.eps, flag="eps")  # 0, or a Linf ball over the whole box; L2: check_input_shape
        set_(self, "options", check_flag_values(self.options or {}, reserved=(*_RUN_FIELDS, "stages")))
        if not isinstance(self.stages, dict) or not all(isinstance(v, dict) for v in self.stages.values()):
            raise InputError("stages must hold one table of settings per stage name, e.g. {\"pgd\": {\"steps\": 40}}")
        self._check_model()

    def _check_model(self) -> None:
        for name in ("defense", "ensemble"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value or ())
            if not all(isinstance(v, str) and v for v in value):
                raise InputError(f"{name} takes a list of specs, got {value!r}")
            object.__setattr__(self, name, value)
        for spec in self.defense:
            build_defense(spec)
        MODES.canonical(self.ensemble_mode)  # an unknown mode is refused, naming the registered ones
        if self.ensemble and self.model:
            raise InputError("give either --model or --ensemble (the ensemble's members), not both")
        if self.ensemble and self.weights:
            raise InputError("--weights loads one model; give ensemble members as specs that carry their weights")

    def flag(self, name: str) -> Any:
        """The value of the stage flag `name`: the one given, else its default."""
        if name in self.options:
            return self.options[name]
        flags = all_flags()
        if name not in flags:
            raise KeyError(f"no stage declares the flag {name!r}")
        return flags[name].default

    def flag_values(self) -> dict[str, Any]:
        """Every stage flag's value, given or default."""
        return {**flag_defaults(), **self.options}

    def view(self) -> dict[str, Any]:
        """What `Stage.from_flags` reads: the run-level fields and every flag's value, by name."""
        run = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("options", "stages")}
        return {**run, **self.flag_values()}

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse a radius whose ball holds every input of this shape (L2 eps >= sqrt(d) on [0, 1] images).

        Call it once the data is loaded, before any stage runs.
        """
        check_eps(self.norm, self.eps, shape=shape, flag="eps")

    @classmethod
    def option_names(cls) -> list[str]:
        """Names a TOML file or the CLI may set: the run-level fields, `stages`, and every stage's flags."""
        return [*_RUN_FIELDS, "stages", *all_flags()]

    @classmethod
    def build(cls, **options: Any) -> EvalConfig:
        """Build from flat options: run-level fields, `stages`, and stage flags by name (`steps=40`)."""
        run = {k: v for k, v in options.items() if k in _RUN_FIELDS or k == "stages"}
        flags = {k: v for k, v in options.items() if k not in run}
        try:
            return cls(**run, options=flags)
        except TypeError as error:
            raise InputError(f"bad option value: {error}") from None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EvalConfig:
        """Build from a flat mapping of option names (hyphens or underscores); unknown names are errors."""
        normalized = {key.replace("-", "_"): value for key, value in options.items()}
        for required in ("model", "data"):
            if required == "model" and normalized.get("ensemble"):
                continue
            if normalized.get(required) in (None, ""):
                raise InputError(f"no {required} given: pass --{required} or set {required} in the config file")
        return cls.build(**normalized)

    def model_id(self, fallback: str) -> str:
        """The model's name in reports: its spec (or the ensemble's members), then its defenses."""
        base = self.model or (f"ensemble[{self.ensemble_mode}]({', '.join(self.ensemble)})" if self.ensemble
                              else fallback)
        return base + (f" + {' + '.join(self.defense)}" if self.defense else "")

    def to_dict(self) -> dict[str, Any]:
        """The settings as one flat mapping of JSON-ready values (every flag's value included)."""
        data = self.view()
        for key in ("mean", "std", "defense", "ensemble"):
            if data[key] is not None:
                data[key] = list(data[key])
        data["stages"] = self.stages
        return data


#: The run-level options: EvalConfig's own fields other than the stages' flags and tables.
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name not in ("options", "stages"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read evaluation options from a TOML file: top-level keys, or the keys of an `[evaluate]` table.

    `[stages.NAME]` tables set the settings of the stage called NAME (`[stages.pgd] steps = 40`).
    """
    document = read_toml_document(path)
    table = document.get("evaluate", document)
    if not isinstance(table, dict):
        raise InputError(f"{path}: [evaluate] must be a table")
    options = dict(table)
    if table is not document and isinstance(document.get("stages"), dict):  # [evaluate] beside [stages.NAME]
        options["stages"] = {**document["stages"], **options.get("stages", {})}
    if not isinstance(options.get("stages", {}), dict) or not all(
            isinstance(v, dict) for v in options.get("stages", {}).values()):
        raise InputError(f"{path}: [stages] must hold one table per stage, e.g. [stages.pgd]")
    return options


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--{name} takes comma-separated numbers such as 0.49,0.48,0.45, got {text!r}") from None


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
