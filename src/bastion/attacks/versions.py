"""AutoAttack's versions as data: VERSIONS, a registry of each version's ordered members.

Croce & Hein, ICML 2020, arXiv:2003.01690, section 5 and the authors' release. A version is a
function returning its members, (registered attack name, hyperparameters) in cascade order, so
each call gives a fresh list. This module imports no torch, so the CLI lists the versions.
"""

from __future__ import annotations

from typing import Any

from bastion.registry import Registry

__all__ = ["VERSIONS", "Member"]

#: One member of a version: a name in `bastion.attacks.ATTACKS` and its hyperparameters.
Member = tuple[str, dict[str, Any]]

VERSIONS: Registry[list[Member]] = Registry("AutoAttack version")


@VERSIONS.register("standard")
def standard() -> list[Member]:
    """APGD-CE, APGD-T, FAB-T and Square, one restart each: the reference for robustness claims."""
    return [
        ("apgd-ce", {"steps": 100, "n_restarts": 1}),
        ("apgd-t", {"steps": 100, "n_restarts": 1, "n_targets": 9}),
        ("fab-t", {"steps": 100, "n_restarts": 1, "n_targets": 9}),
        ("square", {"n_queries": 5000, "n_restarts": 1}),
    ]


@VERSIONS.register("plus")
def plus() -> list[Member]:
    """The standard members plus untargeted APGD-DLR and FAB, with five restarts for the untargeted ones."""
    return [
        ("apgd-ce", {"steps": 100, "n_restarts": 5}),
        ("apgd-dlr", {"steps": 100, "n_restarts": 5}),
        ("fab", {"steps": 100, "n_restarts": 5}),
        ("square", {"n_queries": 5000, "n_restarts": 1}),
        ("apgd-t", {"steps": 100, "n_restarts": 1, "n_targets": 9}),
        ("fab-t", {"steps": 100, "n_restarts": 1, "n_targets": 9}),
    ]


@VERSIONS.register("rand")
def rand() -> list[Member]:
    """APGD-CE and APGD-DLR with EOT over 20 gradient samples, for randomized defenses."""
    return [
        ("apgd-ce", {"steps": 100, "n_restarts": 1, "eot_iter": 20}),
        ("apgd-dlr", {"steps": 100, "n_restarts": 1, "eot_iter": 20}),
    ]
