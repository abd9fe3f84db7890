"""Models built by the user's own code: `package.module:factory` and `path/to/file.py:factory`.

Importing the module and calling the factory run the user's code; any failure of it is reported
as one line (`InputError`), never as a traceback into bastion.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from bastion.errors import InputError

__all__ = ["call_factory", "import_factory", "one_line"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(error: BaseException) -> str:
    """`TypeName: first line of the message`, without terminal escape codes."""
    text = _ANSI.sub("", str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def import_factory(spec: str) -> Any:
    """The attribute `spec` (`package.module:name` or `path/file.py:name`) names, its module imported."""
    target, _, attr = spec.rpartition(":")
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    if not hasattr(module, attr):
        raise InputError(f"unknown factory {attr!r} in {target}")
    return getattr(module, attr)


def _import_file(target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise InputError(f"model file not found: {target}")
    module_name = f"_bastion_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"cannot import {target}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(module_name, None)
        raise InputError(f"cannot import {target}: syntax error at line {error.lineno}: {error.msg}") from None
    except Exception as error:  # the user's module failed while importing: say so in one line
        sys.modules.pop(module_name, None)
        raise InputError(f"cannot import {target}: {one_line(error)}") from None
    return module


def _import_module(target: str) -> Any:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory can be named
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise InputError(f"cannot import model module {target!r}: {error}") from None
    except SyntaxError as error:
        raise InputError(f"cannot import model module {target!r}: syntax error in {error.filename} at line "
                         f"{error.lineno}: {error.msg}") from None
    except Exception as error:  # the user's module failed while importing
        raise InputError(f"cannot import model module {target!r}: {one_line(error)}") from None


def call_factory(spec: str, factory: Any) -> Any:
    """Call a model factory with no arguments; its failure is the user's, reported in one line."""
    try:
        return factory()
    except TypeError as error:
        if "required" in str(error) and "argument" in str(error):
            raise InputError(f"the factory {spec} must build the model without arguments ({error}); wrap it in a "
                             "function that passes them, e.g. def build(): return Net(width=64)") from None
        raise InputError(f"the factory {spec} failed: {one_line(error)}") from None
    except Exception as error:  # the user's code raised: one line, no traceback
        raise InputError(f"the factory {spec} failed: {one_line(error)}") from None
