"""AutoAttack versions are a registry (issue 23 part 4): listed without torch, built in order, named in errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bastion.attacks import ATTACKS, VERSIONS, AutoAttack
from bastion.attacks import versions as versions_module
from bastion.attacks.autoattack import member_specs
from bastion.errors import InputError


@pytest.fixture
def tiny() -> Iterator[str]:
    VERSIONS.register("tiny", lambda: [("apgd-ce", {"steps": 2}), ("square", {"n_queries": 7})])
    try:
        yield "tiny"
    finally:
        VERSIONS.unregister("tiny")
    assert "tiny" not in VERSIONS.names()


def test_the_public_name_is_the_registry_and_reads_like_the_old_table():
    assert VERSIONS is versions_module.VERSIONS and list(VERSIONS) == VERSIONS.names()
    assert {"standard", "plus", "rand"} <= set(VERSIONS) and "standard" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS.names())
def test_every_version_builds_its_members_in_order(version):
    specs = VERSIONS.create(version)
    assert specs and all(name in ATTACKS for name, _ in specs)
    members = AutoAttack(version=version, steps=3).members()
    assert [m.name for m in members] == [ATTACKS.get(name).name for name, _ in specs]
    assert VERSIONS.create(version) is not specs  # each call a fresh list: no caller edits the table


def test_an_unknown_version_lists_every_registered_one():
    for build in (lambda: AutoAttack(version="nope"), lambda: member_specs("nope")):
        with pytest.raises(InputError, match="unknown AutoAttack version 'nope'") as caught:
            build()
        assert str(caught.value).endswith(", ".join(VERSIONS.names()))


def test_a_new_version_is_listed_built_and_named_in_errors(tiny):
    assert tiny in VERSIONS.names()
    members = AutoAttack(version=tiny, n_queries=11).members()
    assert [m.name for m in members] == ["apgd-ce", "square"] and members[0].steps == 2 and members[1].n_queries == 11
    with pytest.raises(InputError, match="tiny"):
        AutoAttack(version="nope")


def test_the_names_are_listed_without_importing_torch():
    code = ("import json, sys\nfrom bastion.attacks.versions import VERSIONS\n"
            "print(json.dumps([VERSIONS.names(), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == [VERSIONS.names(), False]
