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
