"""Smoke test of ACTIONpp.py outside Slicer: the module file imports, describes itself, and its widget wires the .ui
(PySide6) to the REAL logic on a headless slicer-core scene. Only the application pieces slicer-core lacks are
stubbed (ScriptedLoadableModule base classes, loadUI, slicer.modules, startupEnvironment, PythonQt's ``qt``).

What PythonQt does differently from PySide6 (property access, QVariant conversion) is not covered here: that is what
the in-app ``ACTIONppTest`` is for."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed (pip install PySide6-Essentials)")
pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
from actionpp_widget_testing import MODULE_DIR, QtCore, QtWidgets, loadUi, qt  # noqa: E402


def _scriptedModuleStubs():
    stub = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent or SimpleNamespace(isEntered=True)
            self.moduleWidget = QtWidgets.QWidget()
            self.layout = QtWidgets.QVBoxLayout(self.moduleWidget)

        def setup(self):
            pass

        def resourcePath(self, filename):
            return str(MODULE_DIR / "Resources" / filename)

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleTest:
        pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(stub, cls.__name__, cls)
    return stub


@pytest.fixture
def module(qapp, monkeypatch, tmp_path):
    import slicer
    import slicer.util

    from ACTIONppLogic import mrml

    context = mrml.createHeadlessScene()
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(tmp_path / "settings"))
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", _scriptedModuleStubs())
    monkeypatch.setattr(slicer, "mrmlScene", context.scene, raising=False)
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(segmentations=SimpleNamespace(
        logic=lambda: context.segmentationsLogic)), raising=False)
    loaded = {}

    def loadUI(path):
        widget, names = loadUi(qapp)
        widget.setMRMLScene = lambda scene: loaded.setdefault("scene", scene)
        loaded["names"] = names
        return widget

    monkeypatch.setattr(slicer.util, "loadUI", loadUI)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: loaded["names"])
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: {"PATH": "/usr/bin"})
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    sys.modules.pop("ACTIONpp", None)
    mod = importlib.import_module("ACTIONpp")
    yield SimpleNamespace(mod=mod, context=context, loaded=loaded, tmp=tmp_path)
    sys.modules.pop("ACTIONpp", None)
    context.scene.Clear(1)


def test_module_describes_itself(module):
    parent = SimpleNamespace()
    module.mod.ACTIONpp(parent)
    assert parent.title == "ACTIONpp" and parent.categories == ["Segmentation"]
    assert "semi-supervised" in parent.helpText and parent.acknowledgementText and parent.contributors
    assert importlib.util.find_spec("actionpp") is not None  # the engine is importable after the module import


def test_widget_setup_wires_the_ui_to_the_real_logic(module, monkeypatch):
    import slicer

    scene = module.context.scene

    for name in ("first", "second"):
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(volume, np.zeros((2, 8, 8), np.float32))
    monkeypatch.setattr(module.mod, "defaultWorkFolder", lambda: module.tmp / "work")

    widget = module.mod.ACTIONppWidget()
    widget.setup()

    ui = module.loaded["names"]
    assert module.loaded["scene"] is scene
    assert isinstance(widget.logic, module.mod.ACTIONppLogic) and widget.logic.workFolder == module.tmp / "work"
    assert widget.logic.baseEnv == {"PATH": "/usr/bin"} and widget.logic.python
    assert ui.volumesTableWidget.rowCount() == 2
    assert ui.countsLabel.text() == "Labeled: 0 · Unlabeled: 2"
    assert "No labeled volume" in ui.problemsTextEdit.toPlainText() and not ui.trainButton.isEnabled()
    assert ui.modelInfoLabel.text().startswith("No trained model yet")
    ui.workFolderPathLineEdit.setCurrentPath(str(module.tmp / "elsewhere"))
    assert widget.logic.workFolder == module.tmp / "elsewhere"
    widget.cleanup()
