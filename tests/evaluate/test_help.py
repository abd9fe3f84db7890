"""`bastion evaluate --help` describes what the default suite runs."""

from __future__ import annotations

import pytest

from bastion.cli import main


def test_the_help_names_the_default_suites_main_attack(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    description = text.split("options:")[0]
    assert "apgd-fast" in description and "fast suite" in description
    assert "PGD with restarts in the pgd and autoattack suites" in description
    assert "--steps STEPS PGD steps, in the suites that run PGD" in text
