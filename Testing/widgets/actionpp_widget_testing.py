"""Helpers of the widget tests: the module's .ui loaded with PySide6 (offscreen) and the stand-ins for Slicer's
designer widgets (``slicer_widget_doubles``, written from Slicer's source), a ``qt`` namespace like Slicer's, a fake
logic that records calls (the module's own interface, not a Slicer class), recording hooks and a fake timer. (A
module with a unique name: ``from conftest import`` is ambiguous when several test folders run.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed (pip install PySide6-Essentials)")
from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "ACTIONpp"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "ACTIONpp.ui"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


class _Qt:
    """Slicer's ``qt`` module has every Qt class in one namespace; PySide6 splits them."""

    def __getattr__(self, name):
        for module in (QtWidgets, QtCore, QtGui):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)


qt = _Qt()


def qapplication():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def loadUi(qapp, fakes=True):
    """The .ui as Slicer loads it (``fakes``: with the designer-widget stand-ins) or with Slicer's classes falling back
    to their base Qt classes."""
    loader = QtUiTools.QUiLoader()
    if fakes:
        from slicer_widget_doubles import SLICER_DESIGNER_WIDGETS

        for cls in SLICER_DESIGNER_WIDGETS:
            loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(UI_FILE))
    assert file.open(QtCore.QFile.ReadOnly)
    try:
        widget = loader.load(file)
    finally:
        file.close()
    assert widget is not None, loader.errorString()
    names = {w.objectName(): w for w in widget.findChildren(QtCore.QObject) if w.objectName()}
    return widget, SimpleNamespace(**names)


# ---- a fake logic ---------------------------------------------------------------------------------------------------
class Node:
    def __init__(self, nodeId, name, segments=()):
        self.id, self.name, self.segments = nodeId, name, list(segments)

    def GetID(self):
        return self.id

    def GetName(self):
        return self.name


class FakeLogic:
    """Records what the GUI asks for; answers with canned scene contents and statuses."""

    def __init__(self):
        self.calls = []
        self.volumes = [Node("v1", "scan 1"), Node("v2", "scan 2"), Node("v3", "scan 3")]
        self.segmentations = [Node("s1", "scan 1 segmentation", ["LV", "RV"]), Node("s2", "other", ["LV"])]
        self.guesses = {"v1": "s1"}
        self.plan = SimpleNamespace(empty=True, describe=lambda: "Missing: monai")
        self.trainingStatuses = []
        self.segmentationStatuses = []
        self.models = []
        self.resumeError = None
        self.deviceError = None
        self.loadError = None
        self.unfinished = []
        self.scores = {}

    def nodeByID(self, nodeId):
        return next((n for n in self.volumes + self.segmentations if n.GetID() == nodeId), None)

    def listVolumes(self):
        return list(self.volumes)

    def listSegmentations(self):
        return list(self.segmentations)

    def guessSegmentation(self, volume):
        return self.nodeByID(self.guesses.get(volume.GetID()))

    def segmentNames(self, segmentation):
        return segmentation.segments

    def checkCuration(self, cases):
        self.calls.append(("checkCuration", [(v.GetID(), s.GetID() if s else None) for v, s in cases]))
        labeled = [s for _, s in cases if s is not None]
        problems = []
        if not labeled:
            problems.append(SimpleNamespace(severity="error", message="No labeled volume: choose a segmentation."))
        elif len({tuple(s.segments) for s in labeled}) > 1:
            problems.append(SimpleNamespace(severity="error", message="Segment names disagree."))
        if len(labeled) == len(cases) and cases:
            problems.append(SimpleNamespace(severity="warning", message="No unlabeled volume."))
        classes = {name: i + 1 for i, name in enumerate(labeled[0].segments)} if labeled else {}
        return SimpleNamespace(problems=problems, classes=classes, labeled=len(labeled),
                               unlabeled=len(cases) - len(labeled),
                               canTrain=not any(p.severity == "error" for p in problems))

    def dependencyPlan(self):
        self.calls.append(("dependencyPlan",))
        return self.plan

    def startTraining(self, cases, settings, dataset=None):
        self.calls.append(("startTraining", [(v.GetID(), s.GetID() if s else None) for v, s in cases], settings,
                           dataset))

    def checkDevice(self, device):
        self.calls.append(("checkDevice", device))
        if self.deviceError:
            raise self.deviceError

    def exportDataset(self, cases):
        self.calls.append(("exportDataset", [v.GetID() for v, _ in cases]))
        return SimpleNamespace(folder=Path("/work/datasets/1"))

    def estimateTraining(self, dataset, settings):
        self.calls.append(("estimateTraining", dataset, settings.iterations))
        return SimpleNamespace(describe=lambda: f"about 5 min for {settings.iterations} iterations on CPU")

    def listUnfinishedRuns(self):
        return list(self.unfinished)

    def adoptRun(self, runDir):
        self.calls.append(("adoptRun", runDir))

    def loadModel(self, path):
        self.calls.append(("loadModel", path))
        if self.loadError:
            raise self.loadError
        model = SimpleNamespace(name=Path(path).name, method="actionpp", classNames=["LV"], path=Path(path),
                                describe=lambda: f"{Path(path).name}: loaded")
        self.models.append(model)
        return model

    def acceptAsLabels(self, segmentation):
        self.calls.append(("acceptAsLabels", segmentation.GetID()))
        return Node("accepted", f"{segmentation.GetName()} (reviewed)")

    def pollTraining(self):
        self.calls.append(("pollTraining",))
        return self.trainingStatuses.pop(0) if self.trainingStatuses else None

    def cancelTraining(self):
        self.calls.append(("cancelTraining",))

    def resumeTraining(self):
        self.calls.append(("resumeTraining",))
        if self.resumeError:
            raise self.resumeError

    def listModels(self):
        return list(self.models), []

    def segment(self, volume, model, device="auto", createSurface=True, uncertainty=False):
        self.calls.append(("segment", volume.GetName(), model.name, device, createSurface) +
                          (("uncertainty",) if uncertainty else ()))

    def rankVolumes(self, volumes, model, device="auto"):
        self.calls.append(("rankVolumes", [v.GetID() for v in volumes], model.name, device))
        return sorted(((v, self.scores.get(v.GetID(), 0.0)) for v in volumes), key=lambda vs: -vs[1])

    def createLabelsFor(self, volume):
        self.calls.append(("createLabelsFor", volume.GetID()))
        node = Node(f"new-{volume.GetID()}", f"{volume.GetName()} segmentation")
        self.segmentations.append(node)
        return node

    def pollSegmentation(self):
        return self.segmentationStatuses.pop(0) if self.segmentationStatuses else None

    def called(self, name):
        return [c for c in self.calls if c[0] == name]


class Recorder:
    """Hooks that record their calls (``confirm`` answers ``answer``)."""

    def __init__(self, answer=True):
        self.events = []
        self.answer = answer

    def hooks(self, **extra):
        from ACTIONppWidgets import Hooks

        record = lambda name: (lambda *args: self.events.append((name, *args)))  # noqa: E731

        def confirm(question):
            self.events.append(("confirm", question))
            return self.answer

        return Hooks(showError=record("showError"), confirm=confirm, installDependencies=record("install"),
                     showCurves=record("showCurves"), onCurves=record("onCurves"),
                     onTrainingFinished=record("finished"), onSegmentation=record("segmentation"),
                     onLabelsAccepted=record("labelsAccepted"), **extra)

    def named(self, name):
        return [e for e in self.events if e[0] == name]


class FakeTimer:
    def __init__(self):
        self.active, self.interval = False, None
        self.timeout = SimpleNamespace(connect=lambda fn: setattr(self, "callback", fn))

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False
