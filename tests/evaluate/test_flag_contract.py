"""Every stage flag is one declaration: a `bastion evaluate` flag, a TOML key and a check, owned by one stage.

Parametrized over the flags the registered stages declare, so a stage's new flag is tested by being declared.
"""

from __future__ import annotations

import dataclasses

import pytest

from bastion.cli import main
from bastion.cli.evaluate import build_parser
from bastion.errors import InputError
from bastion.evaluate import STAGES, EvalConfig
from bastion.evaluate.stage_flags import all_flags, flag_owners
from bastion.evaluate.suites import SUITES, plan

FLAGS = all_flags()
#: A value other than the default that each flag's check accepts, as the CLI and as TOML give it.
OTHER = {int: ("7", 7), float: ("0.5", 0.5), str: ("zoo:mnist-cnn", "zoo:mnist-cnn")}


def test_each_flag_has_one_owner_and_a_default_its_own_check_accepts():
    owners = flag_owners()
    assert set(owners) == set(FLAGS) and set(owners.values()) <= set(STAGES.names())
    for flag in FLAGS.values():
        assert flag.default is None or flag.value(flag.default) == flag.default, flag.name


def test_the_config_keeps_at_most_twenty_run_level_fields_and_none_is_a_flag():
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    assert len(fields) <= 20
    assert not fields & set(FLAGS)


@pytest.mark.parametrize("kind", STAGES.names())
def test_a_stages_settings_from_the_default_flags_build_the_stage(kind):
    options = EvalConfig.build(eps=0.3, surrogate="tests.conftest:seeded_tiny_cnn").view()
    settings = {k: v for k, v in STAGES.get(kind).from_flags(options).items() if v is not None}
    if kind == "attack":
        settings = {"attack": "fgsm", **settings}
    assert set(settings) <= {f.name for f in dataclasses.fields(STAGES.get(kind).Settings)}
    STAGES.get(kind)(**settings)


@pytest.mark.parametrize("name", sorted(n for n, f in FLAGS.items() if f.type is not dict))
def test_each_flag_is_a_cli_flag_and_a_toml_key_with_the_same_meaning(name):
    flag = FLAGS[name]
    if flag.type is bool:
        cli, toml = ([f"--no-{name.replace('_', '-')}"] if flag.default else [flag.cli]), not flag.default
    elif flag.options():
        value = next(c for c in flag.options() if c != flag.default)
        cli, toml = [flag.cli, value], value
    else:
        text, toml = OTHER[flag.type]
        cli = [flag.cli, text]
    args = build_parser().parse_args(["--model", "m", "--data", "d", *cli])
    assert getattr(args, name) is not None
    from_cli = EvalConfig.build(model="m", data="d", **{name: getattr(args, name)})
    from_toml = EvalConfig.from_options({"model": "m", "data": "d", name: toml})
    assert from_cli.flag(name) == from_toml.flag(name) == flag.value(toml) != flag.default


def test_a_flag_reaches_the_settings_of_every_stage_that_reads_it():
    stages = {s.name: s.settings_dict() for s in plan(EvalConfig.build(suite="autoattack", steps=7, loss="cw",
                                                                        curve_points=3, certify=True, sigma=0.5))}
    assert stages["pgd"]["params"]["steps"] == stages["checks"]["steps"] == stages["curve"]["steps"] == 7
    assert stages["escalation"]["loss"] == stages["fgsm"]["params"]["loss"] == "cw"
    assert stages["curve"]["grid"] == [0.0, 0.3, 0.6] and stages["certify"]["sigma"] == 0.5


def test_a_bad_flag_value_or_name_is_one_line_naming_it(capsys):
    with pytest.raises(InputError, match=r"sigma must be > 0, got -1"):
        EvalConfig.build(sigma=-1.0)
    with pytest.raises(InputError, match=r"unknown option\(s\) stepz; valid: .*steps"):
        EvalConfig.build(stepz=3)
    assert main(["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--alpha", "2"]) == 2
    assert capsys.readouterr().err.strip() == "bastion: error: alpha must lie in (0, 1), got 2.0"


def test_the_suite_choices_come_from_the_suites():
    suite = next(a for a in build_parser()._actions if "--suite" in a.option_strings)
    assert list(suite.choices) == list(SUITES)


def test_print_config_writes_every_option_at_its_default_and_reads_back(capsys, tmp_path):
    import tomllib

    assert main(["evaluate", "--print-config"]) == 0
    text = capsys.readouterr().out
    table = tomllib.loads(text)["evaluate"]
    for name, flag in FLAGS.items():
        assert (name in table) == (flag.default is not None) and f"# {flag.help}" in text, name
    config = EvalConfig.from_options(table)
    assert config.flag_values() == EvalConfig.build().flag_values() and config.suite == "fast"


def test_a_new_stage_with_a_flag_needs_only_its_module_and_a_suite_entry(monkeypatch, capsys):
    """The CLI, the TOML keys, the config and the plan pick a new stage's flag up from the registry alone."""
    from collections.abc import Mapping
    from dataclasses import dataclass
    from typing import Any

    from bastion.evaluate.flags import Flag
    from bastion.evaluate.stage import Stage, StageResult
    from bastion.evaluate.suites import Entry

    @dataclass(frozen=True)
    class EchoSettings:
        times: int = 1

    class EchoStage(Stage):
        kind = "echo-test"
        Settings = EchoSettings
        Result = StageResult
        flags = (Flag("echo_times", 1, "how often the echo stage echoes", int, minimum=1),)

        @classmethod
        def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
            return {"times": options["echo_times"]}

        def run(self, ctx: Any) -> StageResult:
            return StageResult()

        @classmethod
        def headline(cls, result: Any) -> str:
            return "echo"

    STAGES.register("echo-test", EchoStage)
    try:
        monkeypatch.setitem(SUITES, "pgd", [*SUITES["pgd"], Entry("echo", "echo-test", when="echo_times")])
        args = build_parser().parse_args(["--model", "m", "--data", "d", "--echo-times", "3"])
        assert "--echo-times" in build_parser().format_help()
        from_cli = EvalConfig.build(model="m", data="d", suite="pgd", echo_times=args.echo_times)
        from_toml = EvalConfig.from_options({"model": "m", "data": "d", "suite": "pgd", "echo_times": 3})
        for config in (from_cli, from_toml):
            echo = next(s for s in plan(config) if s.name == "echo")
            assert echo.settings == EchoSettings(times=3)
        with pytest.raises(InputError, match="echo_times must be an integer >= 1, got 0"):
            EvalConfig.build(echo_times=0)
    finally:
        STAGES.unregister("echo-test")
    assert "echo_times" not in all_flags()
