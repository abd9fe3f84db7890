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
from bastion.losses import LOSSES
from bastion.threat import get_norm, parse_eps
from bastion.tomlfile import read_toml_document

__all__ = ["EvalConfig", "read_toml"]


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation; recorded verbatim in the report.

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
        fgsm: Run the FGSM sanity check.
        suite: "fast" (the default: probes, FGSM, then `apgd-fast` instead of PGD and AutoAttack,
            escalating by itself on evidence and audited by AutoAttack on a sample: AutoAttack's
            strength for about a tenth of its passes), "autoattack" (FGSM, PGD, then the AutoAttack
            members: the standard protocol, for numbers comparable with published AutoAttack
            results), "pgd" (FGSM and PGD only: quick, and not enough for a robustness claim),
            "extended" (the standard protocol plus threat models beyond the Lp ball:
            `bastion.evaluate.extended`) or "deployed" (no gradients: Square, HopSkipJump and, with a
            surrogate, transfer; chosen by itself for a model without gradients, such as an ONNX file).
        aa_version: AutoAttack version: "standard", "plus" or "rand".
        aa_steps: Iterations of AutoAttack's gradient attacks; None keeps the version's (100).
        aa_queries: Square's query budget; None keeps the version's (5,000). Smaller budgets are
            quicker and weaker: the report records them, and they are not the standard protocol.
        min_norm: A minimal-norm attack ("fab", "cw") run without a radius bound on the correctly
            classified points: the distribution of the norms it finds, and the accuracy at every
            radius read off them, go into the report. None skips it.
        steps: Steps of the main PGD attack.
        restarts: Random restarts of the main PGD attack (only points still robust are restarted).
        rel_step: PGD step size as a fraction of eps; None gives 2.5 / steps.
        loss: Attack loss, "ce" or "cw".
        curve_points: Points of the accuracy-vs-eps curve, from 0 to `curve_max`; 0 skips the curve.
        curve_max: Largest eps of the curve; None gives twice `eps`.
        curve_restarts: PGD restarts at each curve point.
        class_floor: Per-class robust accuracy under which a class is flagged; None gives half the
            overall robust accuracy.
        gallery: Number of adversarial examples shown in the HTML report.
        batch_size: Points per forward pass.
        seed: Seed of every attack's randomness.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        out: Directory that receives report.json and report.html.
        resume: Continue an interrupted run from the stages saved in `out`.
        certify: Also certify every point by randomized smoothing (Cohen et al., ICML 2019) and attack
            the smoothed classifier with SmoothAdv, for the "certified <= empirical" section.
        sigma: Noise standard deviation of the smoothing (pixel scale).
        n0: Selection samples per point of CERTIFY (None: 100, or 16 when `sequential`).
        n: Estimation samples per point of CERTIFY (None: 10,000), or a point's budget when
            `sequential` (None: 30,000).
        alpha: CERTIFY's error probability: each certificate holds with probability >= 1 - alpha.
        sequential: Certify by sequential decisions (Voracek & Hein, NeurIPS 2024) at the table's
            radii and the threat model's, each point drawing only the samples it needs.
        defense: Defense specs (`jpeg:quality=75`, `median:size=3`, ...) applied to the model's input
            (or output) in the order given; see `bastion.defenses.DEFENSES`.
        ensemble: Model specs combined into one ensemble model (instead of `model`); each member's
            accuracy is reported next to the ensemble's.
        ensemble_mode: How the members combine: "logits" (mean), "probs" (mean probabilities,
            returned as log-probabilities) or "vote" (majority).
        adaptive: Run the adaptive attacks (BPDA, EOT, transfer, Square) even when no
            gradient-masking check fires; they always run when one does.
        surrogate: Model spec of a surrogate for transfer attacks (MI-FGSM with input diversity);
            without one, a defended model's undefended network is the surrogate.
        surrogate_weights: State dict of a factory-built surrogate.
        eot_samples: Draws per EOT gradient estimate for randomized models.
        blackbox_queries: Query budget of the Square attack of the black-box check (escalation: 5 times it).
        probe_points: Most correctly classified points used by the gradient and large-eps checks.
        extended_train_data: Data spec the extended suite trains its patch and universal perturbation
            on; None trains on the first half of the evaluated points and measures on the second.
        extended_budget: The extended suite's budgets by name (`bastion.evaluate.extended.DEFAULTS`).
        detect: Also calibrate the run-time detectors (feature squeezing, confidence, entropy,
            margin) to `detect_fpr` false positives on clean data and report each one's detection rate
            of FGSM and PGD examples, and of an adaptive attack that must also evade it.
        detect_fpr: Target false-positive rate of the detectors on clean inputs.
        detect_calibration: Clean data spec the thresholds are calibrated on; None calibrates on a
            seeded half of the evaluated points and measures on the other half.
        detect_adaptive_limit: Most points the adaptive attack on each detector runs on.
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
    fgsm: bool = True
    suite: str = "fast"
    aa_version: str = "standard"
    aa_steps: int | None = None
    aa_queries: int | None = None
    min_norm: str | None = None
    steps: int = 20
    restarts: int = 5
    rel_step: float | None = None
    loss: str = "ce"
    curve_points: int = 9
    curve_max: float | None = None
    curve_restarts: int = 1
    class_floor: float | None = None
    gallery: int = 8
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    resume: bool = False
    certify: bool = False
    sigma: float = 0.25
    n0: int | None = None
    n: int | None = None
    alpha: float = 0.001
    sequential: bool = False
    defense: tuple[str, ...] = ()
    ensemble: tuple[str, ...] = ()
    ensemble_mode: str = "logits"
    adaptive: bool = False
    surrogate: str | None = None
    surrogate_weights: str | None = None
    eot_samples: int = 10
    blackbox_queries: int = 200
    probe_points: int = 256
    extended_train_data: str | None = None
    extended_budget: dict[str, Any] = field(default_factory=dict)
    detect: bool = False
    detect_fpr: float = 0.05
    detect_calibration: str | None = None
    detect_adaptive_limit: int = 500
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "norm", get_norm(self.norm).name)
        set_(self, "eps", parse_eps(self.eps))
        if self.curve_max is not None:
            set_(self, "curve_max", parse_eps(self.curve_max))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = parse_floats(value, name)
            if value is not None:
                set_(self, name, tuple(float(v) for v in value))
        for name, low in (("steps", 1), ("restarts", 1), ("curve_restarts", 1), ("batch_size", 1),
                          ("curve_points", 0), ("gallery", 0)):
            _check_int(name, getattr(self, name), low)
        for name in ("n0", "n"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        for name in ("aa_steps", "aa_queries"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.limit is not None:
            _check_int("limit", self.limit, 1)
        if self.suite not in ("autoattack", "pgd", "extended", "deployed", "fast"):
            raise InputError(f"unknown suite {self.suite!r}; choose autoattack, pgd, extended, deployed or fast")
        if self.aa_version not in ("standard", "plus", "rand"):
            raise InputError(f"unknown AutoAttack version {self.aa_version!r}; choose standard, plus or rand")
        if not math.isfinite(self.eps):
            raise InputError("eps must be finite")
        check_eps(self.norm, self.eps, flag="eps")  # 0, or a Linf ball over the whole box; L2: check_input_shape
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.class_floor is not None and not 0 <= self.class_floor <= 1:
            raise InputError(f"class_floor must lie in [0, 1], got {self.class_floor}")
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be > 0, got {self.sigma!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise InputError(f"alpha must lie in (0, 1), got {self.alpha!r}")
        if self.rel_step is not None and not (math.isfinite(self.rel_step) and self.rel_step > 0):
            raise InputError(f"rel_step must be > 0, got {self.rel_step}")
        if not (isinstance(self.detect_fpr, (int, float)) and 0 < self.detect_fpr < 1):
            raise InputError(f"detect_fpr must lie in (0, 1), got {self.detect_fpr!r}")
        _check_int("detect_adaptive_limit", self.detect_adaptive_limit, 0)
        self._check_defenses()

    def _check_defenses(self) -> None:
        for name in ("defense", "ensemble"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value or ())
            if not all(isinstance(v, str) and v for v in value):
                raise InputError(f"{name} takes a list of specs, got {value!r}")
            object.__setattr__(self, name, value)
        for spec in self.defense:
            build_defense(spec)
        if self.ensemble_mode not in MODES:
            raise InputError(f"unknown ensemble mode {self.ensemble_mode!r}; choose one of: {', '.join(MODES)}")
        if self.ensemble and self.model:
            raise InputError("give either --model or --ensemble (the ensemble's members), not both")
        if self.ensemble and self.weights:
            raise InputError("--weights loads one model; give ensemble members as specs that carry their weights")
        for name in ("eot_samples", "blackbox_queries", "probe_points"):
            _check_int(name, getattr(self, name), 1)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse a radius whose ball holds every input of this shape (L2 eps >= sqrt(d) on [0, 1] images).

        Call it once the data is loaded, before any stage runs.
        """
        check_eps(self.norm, self.eps, shape=shape, flag="eps")

    @classmethod
    def option_names(cls) -> list[str]:
        """Names a TOML file or the CLI may set."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EvalConfig:
        """Build from a flat mapping of option names (hyphens or underscores); unknown names are errors."""
        normalized = {key.replace("-", "_"): value for key, value in options.items()}
        unknown = sorted(set(normalized) - set(cls.option_names()))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(cls.option_names())}")
        for required in ("model", "data"):
            if required == "model" and normalized.get("ensemble"):
                continue
            if normalized.get(required) in (None, ""):
                raise InputError(f"no {required} given: pass --{required} or set {required} in the config file")
        try:
            return cls(**normalized)
        except TypeError as error:
            raise InputError(f"bad option value: {error}") from None

    def model_id(self, fallback: str) -> str:
        """The model's name in reports: its spec (or the ensemble's members), then its defenses."""
        base = self.model or (f"ensemble[{self.ensemble_mode}]({', '.join(self.ensemble)})" if self.ensemble
                              else fallback)
        return base + (f" + {' + '.join(self.defense)}" if self.defense else "")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        data = dataclasses.asdict(self)
        for key in ("mean", "std", "defense", "ensemble"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


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
