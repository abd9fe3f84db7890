"""Without the optional extras the core still imports, and a spec that needs one says which to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = '''
import sys
for name in ("transformers", "datasets", "onnxruntime", "onnx", "onnxscript"):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import bastion, bastion.cli, bastion.data, bastion.models
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import load_model
for load, spec in ((load_model, "hf:some/model"), (load_model, sys.argv[1]), (load_dataset, "hf:some/data")):
    try:
        load(spec)
    except InputError as error:
        print(error)
'''


def test_core_imports_without_the_extras_and_names_the_pip_command(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(onnx)], capture_output=True, text=True, check=True,
                         env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""}).stdout.splitlines()
    assert out == ["hf: models need transformers: pip install 'bastion[hf]'",
                   f"{onnx} needs onnxruntime: pip install 'bastion[onnx]'",
                   "hf: datasets need the datasets library: pip install 'bastion[hf]'"]
