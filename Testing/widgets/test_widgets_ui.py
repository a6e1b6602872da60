"""The module's .ui: loads with PySide6 (Slicer classes fall back to base widgets), declares what Slicer needs, and
holds every widget name the code uses."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed (pip install PySide6-Essentials)")
from actionpp_widget_testing import MODULE_DIR, UI_FILE, loadUi  # noqa: E402
from PySide6 import QtWidgets  # noqa: E402

from ACTIONppWidgets import CurationPanel, ReviewPanel, SegmentPanel, TrainingPanel  # noqa: E402

QT_CLASSES = {"QWidget", "QLabel", "QPushButton", "QComboBox", "QSpinBox", "QCheckBox", "QLineEdit", "QTableWidget",
              "QPlainTextEdit", "QProgressBar"}


def _uiNames():
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}, root


def test_ui_loads_with_slicer_classes_falling_back_to_base_widgets(qapp):
    # PySide6 keeps custom widgets registered by earlier tests (the Slicer stand-ins) for the whole process, so the
    # classes are either those stand-ins or the base Qt classes the .ui declares: both are QWidgets.
    widget, ui = loadUi(qapp, fakes=False)
    assert widget.objectName() == "ACTIONpp" and isinstance(widget, QtWidgets.QWidget)
    assert type(widget).__name__ in ("QWidget", "qMRMLWidget")
    assert isinstance(ui.trainButton, QtWidgets.QPushButton)
    assert isinstance(ui.volumesTableWidget, QtWidgets.QTableWidget)
    assert type(ui.dataCollapsibleButton).__name__ in ("QWidget", "ctkCollapsibleButton")  # children kept
    assert ui.volumesTableWidget.parent() is ui.dataCollapsibleButton
    assert ui.inputVolumeSelector.property("nodeTypes") == ["vtkMRMLScalarVolumeNode"]  # kept as a dynamic property
    assert ui.iterationsSpinBox.value() == 2000 and ui.show3DCheckBox.isChecked()
    widget.deleteLater()


def test_ui_follows_slicer_conventions():
    names, root = _uiNames()
    assert root.find("widget").get("class") == "qMRMLWidget"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = set(names.values()) - QT_CLASSES
    assert used <= declared, f"undeclared custom widgets: {used - declared}"
    connections = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")]
    mrmlWidgets = [n for n, cls in names.items() if cls.startswith("qMRML") and n != "ACTIONpp"]
    for name in mrmlWidgets:
        assert ("ACTIONpp", "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") in connections


def test_every_widget_name_the_code_uses_exists():
    names, _ = _uiNames()
    declared = set(CurationPanel.WIDGETS + TrainingPanel.WIDGETS + SegmentPanel.WIDGETS + ReviewPanel.WIDGETS)
    assert declared <= set(names), f"missing from the .ui: {declared - set(names)}"
    sources = [MODULE_DIR / "ACTIONpp.py", *sorted((MODULE_DIR / "ACTIONppWidgets").glob("*.py"))]
    used = set()
    for source in sources:
        used |= set(re.findall(r"\bui\.([A-Za-z_]\w*)", source.read_text()))
    assert used, "no ui.<name> found: the scan is broken"
    assert used <= set(names), f"the code uses widgets the .ui lacks: {sorted(used - set(names))}"
