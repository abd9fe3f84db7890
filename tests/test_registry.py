import pytest

from bastion.attacks import ATTACKS, PGD
from bastion.errors import InputError
from bastion.registry import Registry


def test_create_drops_none_so_defaults_apply():
    attack = ATTACKS.create("pgd", steps=7, rel_step=None)
    assert isinstance(attack, PGD) and attack.steps == 7 and attack.rel_step is None


def test_unknown_name_lists_choices():
    with pytest.raises(InputError, match="fgsm.*pgd"):
        ATTACKS.create("pgdd")


def test_unknown_option_lists_valid_options():
    with pytest.raises(InputError, match="steps"):
        ATTACKS.create("pgd", stepz=3)


def test_duplicate_registration_refused():
    registry: Registry[object] = Registry("thing")
    registry.register("a", object)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", object)
    assert registry.names("a*") == ["a"] and "a" in registry


def _thing(size: int = 1) -> list[int]:
    return [0] * size


def test_an_alias_builds_its_entry_and_is_not_listed():
    registry: Registry[object] = Registry("thing")
    registry.register("long-name", _thing, aliases=("ln",))
    assert registry.names() == ["long-name"] and list(registry) == ["long-name"] and len(registry) == 1
    assert "ln" in registry and registry.canonical("ln") == "long-name" and registry.create("ln", size=2) == [0, 0]
    with pytest.raises(ValueError, match="'ln' is already registered"):
        registry.register("other", list, aliases=("ln",))
    with pytest.raises(InputError, match="unknown thing 'lnn'; choose one of: long-name"):
        registry.get("lnn")


def test_unregister_removes_the_name_and_its_aliases():
    registry: Registry[object] = Registry("thing")
    registry.register("a", dict, aliases=("alpha",))
    registry.register("b", list)
    registry.unregister("a")
    assert registry.names() == ["b"] and "alpha" not in registry
    registry.register("alpha", set)  # both names are free again
    assert registry.names() == ["alpha", "b"]
    with pytest.raises(KeyError, match="'a' is not registered"):
        registry.unregister("a")


def test_a_string_entry_is_listed_without_being_imported():
    registry: Registry[object] = Registry("thing")
    registry.register("absent", "no_such_module_for_bastion_tests:thing")
    registry.register("real", "bastion.registry:Registry")
    assert registry.names() == ["absent", "real"]
    assert registry.get("real") is Registry and registry.create("real", kind="x").kind == "x"
    with pytest.raises(ModuleNotFoundError):
        registry.get("absent")
