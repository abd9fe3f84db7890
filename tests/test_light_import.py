"""`import bastion` is light (issue 23 part 5), and every top-level and package name still resolves on access."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"


def _loaded_after(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; which bastion modules it loaded and whether torch was among them."""
    script = (f"import sys, json\n{code}\n"
              "print(json.dumps({'bastion': sorted(m for m in sys.modules if m.split('.')[0] == 'bastion'),"
              " 'torch': 'torch' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1])


def test_import_bastion_loads_at_most_20_bastion_modules():
    loaded = _loaded_after("import bastion")
    assert len(loaded["bastion"]) <= 20, loaded["bastion"]
    assert not loaded["torch"]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["certify", "--help"], ["no-such-command"]])
def test_help_and_usage_errors_load_no_library(argv):
    """`bastion --help` builds every subcommand's parser; the library loads in each command's `run`.

    `bastion attack NAME` and `bastion evaluate` build their parsers when run, from a registry (an
    attack's constructor, the stages' flags), so their `--help` loads the library.
    """
    loaded = _loaded_after(f"from bastion.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert not loaded["torch"]
    library = [m for m in loaded["bastion"] if not m.startswith("bastion.cli")]
    assert len(library) <= 20, library


def test_a_name_loads_its_module_on_first_access():
    loaded = _loaded_after("import bastion\nbastion.ThreatModel")
    assert "bastion.threat" in loaded["bastion"] and "bastion.attacks" not in loaded["bastion"]


def test_every_registered_attack_class_is_a_top_level_name():
    import bastion
    from bastion.attacks import ATTACKS

    classes = {ATTACKS.get(name) for name in ATTACKS.names()}
    assert "FastAPGD" in {cls.__name__ for cls in classes}
    for cls in classes:
        assert getattr(bastion, cls.__name__) is cls
        assert cls.__name__ in bastion.__all__ and cls.__name__ in dir(bastion)
    assert len(bastion.__all__) == len(set(bastion.__all__))


def test_the_static_all_matches_the_runtime_all():
    """Type checkers read `__all__` in the `if TYPE_CHECKING:` block; at run time it is derived."""
    import bastion

    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    declared = next(
        ast.literal_eval(node.value)
        for block in tree.body if isinstance(block, ast.If)
        for node in block.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__"
    )
    assert sorted(declared) == bastion.__all__


def test_star_import_and_from_import_give_the_same_objects():
    namespace: dict[str, object] = {}
    exec("from bastion import *", namespace)
    import bastion
    from bastion import PGD, FastAPGD, Smooth, evaluate, load_model

    assert namespace["FastAPGD"] is FastAPGD and namespace["PGD"] is PGD and namespace["Smooth"] is Smooth
    assert namespace["load_model"] is load_model and evaluate is importlib.import_module("bastion.evaluate")
    assert set(bastion.__all__) <= set(namespace)


def test_submodules_resolve_as_attributes():
    import bastion

    assert bastion.attacks is importlib.import_module("bastion.attacks")
    assert bastion.registry.Registry is importlib.import_module("bastion.registry").Registry


def test_an_unknown_name_is_an_attribute_error():
    import bastion

    with pytest.raises(AttributeError, match="no attribute 'NoSuchAttack'"):
        bastion.NoSuchAttack  # noqa: B018
    assert not hasattr(bastion, "__no_such_dunder__")


@pytest.mark.parametrize("package", ["bastion", "bastion.attacks", "bastion.certify", "bastion.data",
                                     "bastion.defenses", "bastion.detect", "bastion.evaluate",
                                     "bastion.evaluate.stages", "bastion.history", "bastion.models",
                                     "bastion.render", "bastion.report", "bastion.train",
                                     "bastion.attacks.universal"])
def test_every_public_name_of_a_package_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module), f"{package}.{name} missing from dir()"


@pytest.mark.parametrize(("package", "registry", "first"), [("bastion.attacks", "ATTACKS", "bastion.attacks.pgd"),
                                                            ("bastion.train", "TRAINERS", "bastion.train.standard"),
                                                            ("bastion.models", "FORMATS", "bastion.models.formats")])
def test_a_registry_read_through_its_package_is_complete(package, registry, first):
    """Read after one registering module was imported, a lazy package's registry already holds every entry."""
    code = (f"import importlib, pkgutil, {first}, {package}\n"
            f"seen = {package}.{registry}.names()\n"
            f"for info in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
            "    importlib.import_module(info.name)\n"
            f"print(json.dumps([seen, {package}.{registry}.names()]))")
    script = f"import json\n{code}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    seen, everything = json.loads(done.stdout.splitlines()[-1])
    assert len(everything) > 5 and seen == everything


@pytest.mark.parametrize(("home", "registry"), [("bastion.attacks.base", "ATTACKS"),
                                                ("bastion.train.base", "TRAINERS"),
                                                ("bastion.models.formats", "FORMATS")])
def test_a_lazy_registry_is_read_only_through_its_package(home, registry):
    """Outside its package a registry is imported from the package, whose `__getattr__` fills it first."""
    package = home.rsplit(".", 1)[0]
    inside = SRC.parent / Path(*package.split("."))
    readers = []
    for path in [*SRC.rglob("*.py"), *Path(__file__).parent.rglob("*.py")]:
        if path.is_relative_to(inside):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == home and registry in {a.name for a in node.names}:
                readers.append(f"{path.name}:{node.lineno}")
    assert not readers, f"import {registry} from {package}, not {home}: {readers}"


def test_a_function_named_like_its_module_stays_the_package_attribute():
    """`bastion.detect.calibrate` is the function whether the package or its submodule is imported first."""
    code = ("import importlib, json, types\nmodule = importlib.import_module('bastion.detect.calibrate')\n"
            "import bastion.detect\nfrom bastion.detect import calibrate\n"
            "print(json.dumps([isinstance(module, types.ModuleType), calibrate is module.calibrate,"
            " bastion.detect.calibrate is calibrate, callable(calibrate)]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == [True, True, True, True]


def test_a_shadowed_name_can_be_monkeypatched(monkeypatch):
    import bastion.detect

    monkeypatch.setattr(bastion.detect, "calibrate", len)
    assert bastion.detect.calibrate is len
    monkeypatch.undo()
    assert bastion.detect.calibrate.__module__ == "bastion.detect.calibrate"
