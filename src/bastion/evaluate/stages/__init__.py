"""The evaluation's stages, one module each; importing this package registers them all in `STAGES`."""

from bastion.evaluate.stages.agreement import AgreementResult, AgreementSettings, AgreementStage
from bastion.evaluate.stages.attack import AttackSettings, AttackStage, AttackStageResult, attack_stage
from bastion.evaluate.stages.audit import AuditResult, AuditSettings, AuditStage
from bastion.evaluate.stages.certify import CertifyResult, CertifySettings, CertifyStage
from bastion.evaluate.stages.checks import ChecksResult, ChecksSettings, ChecksStage
from bastion.evaluate.stages.clean import CleanResult, CleanStage
from bastion.evaluate.stages.corruption import CorruptionStage
from bastion.evaluate.stages.curve import CurveResult, CurveSettings, CurveStage, curve_points
from bastion.evaluate.stages.detection import DetectionResult, DetectionSettings, DetectionStage
from bastion.evaluate.stages.detector_adaptive import DetectorAdaptiveStage
from bastion.evaluate.stages.detector_rates import DetectorRatesStage
from bastion.evaluate.stages.escalation import EscalationResult, EscalationSettings, EscalationStage
from bastion.evaluate.stages.extended import ExtendedResult, ExtendedSettings, ExtendedStage
from bastion.evaluate.stages.members import MembersResult, MembersSettings, MembersStage, find_ensemble
from bastion.evaluate.stages.min_norm import MinNormResult, MinNormSettings, MinNormStage
from bastion.evaluate.stages.patch_fit import PatchFitStage
from bastion.evaluate.stages.patch_measure import PatchMeasureStage
from bastion.evaluate.stages.per_class import PerClassResult, PerClassSettings, PerClassStage
from bastion.evaluate.stages.probes import ProbesResult, ProbesSettings, ProbesStage
from bastion.evaluate.stages.spatial import SpatialStage
from bastion.evaluate.stages.universal_fit import UniversalFitStage
from bastion.evaluate.stages.universal_score import UniversalScoreStage

__all__ = [
    "AgreementResult",
    "AgreementSettings",
    "AgreementStage",
    "AttackSettings",
    "AttackStage",
    "AttackStageResult",
    "AuditResult",
    "AuditSettings",
    "AuditStage",
    "CertifyResult",
    "CertifySettings",
    "CertifyStage",
    "ChecksResult",
    "ChecksSettings",
    "ChecksStage",
    "CleanResult",
    "CleanStage",
    "CorruptionStage",
    "CurveResult",
    "CurveSettings",
    "CurveStage",
    "DetectionResult",
    "DetectionSettings",
    "DetectionStage",
    "DetectorAdaptiveStage",
    "DetectorRatesStage",
    "EscalationResult",
    "EscalationSettings",
    "EscalationStage",
    "ExtendedResult",
    "ExtendedSettings",
    "ExtendedStage",
    "MembersResult",
    "MembersSettings",
    "MembersStage",
    "MinNormResult",
    "MinNormSettings",
    "MinNormStage",
    "PatchFitStage",
    "PatchMeasureStage",
    "PerClassResult",
    "PerClassSettings",
    "PerClassStage",
    "ProbesResult",
    "ProbesSettings",
    "ProbesStage",
    "SpatialStage",
    "UniversalFitStage",
    "UniversalScoreStage",
    "attack_stage",
    "curve_points",
    "find_ensemble",
]
