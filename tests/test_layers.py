"""The import graph shows the real structure: layers import downward, private names stay in their package.

Outside `cli/` (where lazy imports keep start-up fast) bastion modules import each other at module
level, so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[ast.stmt, str, list[str], bool]]:
    """(node, imported module, imported names, at module level) for every import of a bastion module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    for node in tree.body:  # a lazy package's `if TYPE_CHECKING:` imports name what its `__getattr__` imports
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            top.update(map(id, node.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bastion"):
            found.append((node, node.module, [a.name for a in node.names], id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bastion"):
                    found.append((node, alias.name, [], id(node) in top))
    return found


FILES = sorted(SRC.rglob("*.py"))


def _owner(module: str) -> str:
    """The package that owns a private module (`bastion.a._b` -> `bastion.a`)."""
    parts = module.split(".")
    private = next((i for i, p in enumerate(parts) if p.startswith("_") and i > 0), None)
    return ".".join(parts[:private]) if private is not None else module


def test_there_are_files_to_check():
    assert len(FILES) > 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_respect_the_layers(path):
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node, imported, names, top_level in _imports(path):
        where = f"{path.relative_to(SRC)}:{node.lineno} imports {imported}"
        if module.startswith("bastion.attacks"):
            assert not imported.startswith(("bastion.report", "bastion.evaluate")), where
        if module.startswith("bastion.models"):
            assert not imported.startswith("bastion.train"), where
        owner = _owner(imported)
        assert owner == imported or package.startswith(owner), f"{where}: a private module of {owner}"
        if imported.rsplit(".", 1)[0] != package and imported != package:
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{where}: private name(s) {private} of another package"
        if not module.startswith("bastion.cli"):
            assert top_level, f"{where} inside a function or block: import at module level"
