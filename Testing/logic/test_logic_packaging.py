"""Packaging of the extension: every script is listed for installation, resources exist, and the layers import
only what they may (no Qt in ACTIONppWidgets at import; no VTK/Slicer in the job, registry and dependency code)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys

from actionpp_logic_testing import MODULE_DIR, REPO

CMAKE = MODULE_DIR / "CMakeLists.txt"


def _cmakeList(name):
    text = CMAKE.read_text()
    block = re.search(rf"set\({name}\n(.*?)\n\s*\)", text, re.S).group(1)
    return [line.strip().replace("${MODULE_NAME}", "ACTIONpp") for line in block.splitlines() if line.strip()]


def test_every_module_script_is_listed_and_every_resource_exists():
    listed = set(_cmakeList("MODULE_PYTHON_SCRIPTS")) | {r for r in _cmakeList("MODULE_PYTHON_RESOURCES")
                                                          if r.endswith(".py")}
    onDisk = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == onDisk, f"not listed: {sorted(onDisk - listed)}; listed but missing: {sorted(listed - onDisk)}"
    for resource in _cmakeList("MODULE_PYTHON_RESOURCES"):
        assert (MODULE_DIR / resource).is_file(), resource
    assert "ctkMacroCompilePythonScript" in CMAKE.read_text() and "actionpp/*.py" in CMAKE.read_text()
    root = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY \"Segmentation\"", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                "EXTENSION_DEPENDS \"PyTorch\"",
                "find_package(Slicer REQUIRED)", "add_subdirectory(ACTIONpp)", "Slicer_EXTENSION_CPACK"):
        assert key in root, key


def test_only_the_module_script_sits_at_the_top_of_the_module_folder():
    # Slicer's scripted-module factory instantiates every top-level .py of a module folder as a module and logs
    # "class ... was not found" for a helper script at each start-up: helpers belong in a subfolder.
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["ACTIONpp.py"]
    scripts = [r for r in _cmakeList("MODULE_PYTHON_SCRIPTS") if "/" not in r]
    assert scripts == ["ACTIONpp.py"], scripts


def test_icon_is_a_128_pixel_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "ACTIONpp.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def _importWithout(blocked, modules):
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None\n"
            f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
            f"for name in {modules!r}: __import__(name)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_gui_controllers_import_without_qt_and_jobs_without_vtk_or_slicer():
    noQt = _importWithout(["qt", "PySide6", "PyQt5", "PyQt6"], ["ACTIONppWidgets"])
    assert noQt.returncode == 0, noQt.stderr
    noVtk = _importWithout(["slicer", "vtk", "qt"], ["ACTIONppLogic.jobs", "ACTIONppLogic.registry",
                                                     "ACTIONppLogic.dependencies", "ACTIONppLogic.engine"])
    assert noVtk.returncode == 0, noVtk.stderr
