"""The engine imports neither Slicer nor Qt and never calls .cuda(): the device follows the config."""

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "actionpp"

PROBE = """
import sys, importlib, pkgutil
for name in ("slicer", "qt", "ctk", "vtk", "PySide6", "PyQt5"):
    sys.modules[name] = None  # any import of these now raises ImportError
import actionpp
mods = [m.name for m in pkgutil.walk_packages(actionpp.__path__, "actionpp.") if m.name != "actionpp.__main__"]
for m in mods:
    importlib.import_module(m)
print(len(mods))
"""


def test_every_engine_module_imports_without_slicer_or_qt():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 20


def test_no_cuda_calls_in_the_engine():
    hits = [f"{p.name}:{i}" for p in SRC.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"\.cuda\(\)", line)]
    assert not hits
