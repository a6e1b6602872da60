"""Where the ``actionpp`` engine lives, and the command line / environment that launches it.

Two layouts are supported:

- **installed extension**: the build copies ``src/actionpp`` next to ``ACTIONpp.py`` (the module's folder in
  ``lib/Slicer-X.Y/qt-scripted-modules``), so the package folder is the module folder itself;
- **clone** ("Add module path" pointing at ``<repo>/ACTIONpp``): the engine is ``<repo>/src/actionpp``.

An ``actionpp`` that is already importable (e.g. ``pip install -e .`` in the Python that runs the module) wins.
Nothing is ever installed here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent.parent
"""The folder that holds ``ACTIONpp.py``."""


def candidateEngineRoots(moduleDir: Path = MODULE_DIR) -> list[Path]:
    """Folders that may contain the ``actionpp`` package, most specific first."""
    return [moduleDir, moduleDir.parent / "src"]


def findEngineRoot(moduleDir: Path = MODULE_DIR) -> Path | None:
    """The folder to put on ``sys.path`` / ``PYTHONPATH`` so that ``import actionpp`` works, or None.

    An importable ``actionpp`` is found without importing it (``importlib.util.find_spec``), so the Slicer process
    never imports torch just to locate the engine.
    """
    spec = importlib.util.find_spec("actionpp")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).resolve().parent
    for root in candidateEngineRoots(moduleDir):
        if (root / "actionpp" / "__init__.py").is_file():
            return root
    return None


def ensureEngineOnPath(moduleDir: Path = MODULE_DIR) -> Path | None:
    """Add the engine's folder to ``sys.path`` if ``actionpp`` is not importable yet; return that folder (or None)."""
    if importlib.util.find_spec("actionpp") is not None:
        return findEngineRoot(moduleDir)
    for root in candidateEngineRoots(moduleDir):
        if (root / "actionpp" / "__init__.py").is_file():
            if str(root) not in sys.path:
                sys.path.append(str(root))
            importlib.invalidate_caches()
            return root
    return None


def engineEnvironment(baseEnv: dict[str, str] | None = None, device: str = "auto",
                      moduleDir: Path = MODULE_DIR) -> dict[str, str]:
    """Environment for an engine subprocess: ``PYTHONPATH`` starts with the engine's folder; CPU hides every GPU.

    ``baseEnv`` defaults to ``os.environ``; in Slicer pass ``slicer.util.startupEnvironment()`` so the child does not
    inherit the application's own settings.
    """
    env = dict(os.environ if baseEnv is None else baseEnv)
    root = findEngineRoot(moduleDir)
    if root is not None:
        parts = [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(root)]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def engineCommand(python: str, subcommand: str, *args: str) -> list[str]:
    """``[python, "-m", "actionpp", subcommand, *args]``."""
    return [python, "-m", "actionpp", subcommand, *args]


def defaultPython() -> str:
    """The interpreter for engine subprocesses: ``PythonSlicer`` inside the Slicer application, else this Python.

    ``PythonSlicer`` is Slicer's launcher for its own Python (it sets the library paths); ``sys.executable`` in the
    application is not a plain interpreter.
    """
    import shutil

    slicerModule = sys.modules.get("slicer")
    if slicerModule is not None and getattr(slicerModule, "app", None) is not None:
        exe = Path(sys.executable).parent
        for name in ("PythonSlicer", "PythonSlicer.exe"):
            if (exe / name).is_file():
                return str(exe / name)
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable
