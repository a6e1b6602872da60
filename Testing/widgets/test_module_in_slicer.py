"""The module as Slicer runs it: ``ACTIONpp.py`` opened through the application stand-in (``slicer_app_double``,
written from Slicer's own source) on a real MRML scene (slicer-core), the real .ui (PySide6 offscreen), the real
logic and real engine processes. No fake logic here."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed (pip install PySide6-Essentials)")
pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
pytest.importorskip("actionpp.cli", reason="the actionpp engine is not importable")
from PySide6 import QtCore  # noqa: E402
from slicer_app_double import SlicerApplication  # noqa: E402

TINY = "--patch 32 32 --batch-labeled 2 --batch-unlabeled 1 --channels 8 16 --checkpoint-every 3 --val-every 0"


@pytest.fixture
def slicerApp(qapp, monkeypatch, tmp_path):
    from ACTIONppLogic import mrml

    context = mrml.createHeadlessScene()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # engine processes: tiny nets, a busy 2-core machine
    app = SlicerApplication(qapp, context, tmp_path / "settings").install(monkeypatch)
    QtCore.QSettings().setValue("ACTIONpp/WorkFolder", str(tmp_path / "work"))
    yield app
    app.close()
    context.scene.Clear(1)


def _scene(labeled=2, unlabeled=1):
    """The self-test's synthetic volumes and Segment Editor-made segmentations, named "scan <i>" (and
    "scan <i> segmentation"); segment order differs between the two labeled volumes."""
    from ACTIONppTesting.selftest import syntheticScene

    return syntheticScene(labeled, unlabeled, prefix="scan")


def _waitFor(qapp, condition, timeout=120.0):
    """Run the Qt event loop (timers fire as in Slicer) until ``condition()`` or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        qapp.processEvents(QtCore.QEventLoop.AllEvents, 50)
        time.sleep(0.02)


def test_slicer_builds_the_logic_and_its_parameter_node(slicerApp):
    mod = slicerApp.openModule()
    logic = mod.ACTIONppLogic()  # as the module template and slicer.util.getModuleLogic do: no arguments
    assert logic.moduleName == "ACTIONpp" and logic.isSingletonParameterNode
    assert logic.workFolder == slicerApp.settingsDir.parent / "work"
    params = logic.getParameterNode()
    assert (params.method, params.dims, params.iterations, params.device) == ("actionpp", 2, 2000, "auto")
    assert params.parameterNode is logic.getParameterNode().parameterNode  # one per scene
    assert params.parameterNode.GetAttribute("ModuleName") == "ACTIONpp"
    assert callable(logic.listVolumes) and logic.listVolumes() == []  # the core's methods, on the Slicer logic


def test_the_module_walks_from_data_to_training_to_segmentation(slicerApp, qapp):
    volumes, segmentations = _scene()
    mod = slicerApp.openModule()
    widget, ui = slicerApp.widget, slicerApp.widget.ui

    table = ui.volumesTableWidget
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == ["scan 0", "scan 1", "scan 2"]
    assert [table.cellWidget(r, 1).currentText() for r in range(3)] == [
        "scan 0 segmentation", "scan 1 segmentation", "unlabeled"]
    assert ui.countsLabel.text() == "Labeled: 2 · Unlabeled: 1" and ui.trainButton.isEnabled()

    ui.iterationsSpinBox.setValue(6)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    ui.extraArgsLineEdit.setText(TINY)
    params = widget.logic.getParameterNode()
    assert (params.iterations, params.device) == (6, "cpu")  # the GUI writes the scene's settings

    ui.trainButton.click()
    assert ui.cancelButton.isEnabled() and widget.trainingTimer.isActive()
    assert slicerApp.shownCharts == [widget.logic.curvesPlot.chart]
    seen = []
    _waitFor(qapp, lambda: seen.append(ui.trainingProgressBar.value()) or widget.training.state != "running")
    assert widget.training.state == "finished", ui.logTextEdit.toPlainText()
    runDir = widget.training.logic.trainingJob.runDir
    # actionpp runs its pre-training stage first: the bar spans those steps and the 6 iterations
    steps = 6 + json.loads((runDir / "config.json").read_text())["pretrain_iterations"]
    assert steps > 6 and ui.trainingProgressBar.maximum() == ui.trainingProgressBar.value() == max(seen) == steps
    assert seen == sorted(seen)  # the bar never went back when the second stage started
    lossTable = widget.logic.curvesPlot.tables["loss"].GetTable()
    assert lossTable.GetNumberOfRows() >= 1 and lossTable.GetValue(lossTable.GetNumberOfRows() - 1, 0) == 6
    assert "Finished" in ui.progressLabel.text() and not widget.trainingTimer.isActive()
    assert ui.modelComboBox.currentData() == str(runDir)
    assert params.model == str(runDir)

    ui.inputVolumeSelector.setCurrentNode(volumes[2])
    ui.segmentButton.click()
    _waitFor(qapp, lambda: not widget.segment.running)
    result = widget.segment.lastResult
    assert result is not None, ui.segmentStatusLabel.text()
    seg = result.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == ["ring", "core"]
    role = result.GetReferenceImageGeometryReferenceRole()
    assert result.GetNodeReferenceID(role) == volumes[2].GetID()
    from ACTIONppLogic import prediction

    label = prediction.labelArray(result, volumes[2], slicerApp.context.segmentationsLogic)
    assert label.shape == (4, 32, 32)  # on the volume's grid
    assert seg.ContainsRepresentation("Closed surface")
    # the result opens in the panel's own Segment Editor for review (Slicer's editor logic on the scene)
    editorNode = widget.logic.segmentEditorNode()
    assert widget.review.editing() == (volumes[2], result) and editorNode.GetSegmentationNode() is result
    assert not ui.reviewCollapsibleButton.collapsed and "Accept as labels" in ui.reviewLabel.text()
    assert editorNode.GetSingletonTag() == "ACTIONpp" and ui.segmentEditorWidget.shortcutsInstalled
    widget.exit()  # leaving the module releases the editor's shortcuts and view observations
    assert not ui.segmentEditorWidget.shortcutsInstalled and not ui.segmentEditorWidget.observingViews
    widget.enter()

    # The result is not proposed as labels for its volume; once accepted, a copy is.
    ui.refreshVolumesButton.click()
    assert table.cellWidget(2, 1).currentText() == "unlabeled"
    ui.acceptButton.click()
    assert table.cellWidget(2, 1).currentText().endswith("(reviewed)")
    assert ui.countsLabel.text() == "Labeled: 3 · Unlabeled: 0"


def test_settings_are_saved_with_the_scene_and_restored_on_load(slicerApp, tmp_path):
    import slicer

    slicerApp.openModule()
    ui, widget = slicerApp.widget.ui, slicerApp.widget
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("mean-teacher"))
    ui.dimsComboBox.setCurrentIndex(ui.dimsComboBox.findData("3"))
    ui.iterationsSpinBox.setValue(750)
    elsewhere = tmp_path / "other work"
    ui.workFolderPathLineEdit.setCurrentPath(str(elsewhere))
    assert widget.logic.workFolder == elsewhere

    scene = slicer.mrmlScene
    scene.SetURL(str(tmp_path / "saved.mrml"))
    assert scene.Commit()

    scene.Clear(0)  # closing the scene resets the panel to a new scene's defaults
    assert ui.methodComboBox.currentData() == "actionpp" and ui.iterationsSpinBox.value() == 2000

    scene.SetURL(str(tmp_path / "saved.mrml"))
    assert scene.Import()
    assert ui.methodComboBox.currentData() == "mean-teacher" and ui.dimsComboBox.currentData() == "3"
    assert ui.iterationsSpinBox.value() == 750 and ui.workFolderPathLineEdit.currentPath == str(elsewhere)


def test_the_in_app_self_test_runs_unchanged_and_leaves_no_folder(slicerApp):
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("ACTIONppTest-*"))
    slicerApp.openModule()
    slicerApp.moduleObject.runTest(msec=0)  # ACTIONppTest: export, curation, import, tiny training, segmentation
    assert set(Path(tempfile.gettempdir()).glob("ACTIONppTest-*")) == before


def test_module_describes_itself_and_opens_with_the_engine_importable(slicerApp):
    import importlib.util

    import slicer

    slicerApp.openModule()
    parent = slicerApp.moduleObject.parent
    assert parent.title == "ACTIONpp" and parent.categories == ["Segmentation"]
    assert "semi-supervised" in parent.helpText and parent.acknowledgementText and parent.contributors
    assert parent.icon is not None and "ACTIONpp" in slicer.selfTests  # icon found, self-test registered
    assert importlib.util.find_spec("actionpp") is not None


@pytest.mark.parametrize("answer", ["yes", "no"])
def test_closing_during_a_training_asks_to_stop_it_or_leave_it_running(slicerApp, qapp, monkeypatch, caplog,
                                                                         answer):
    import logging

    import slicer

    _scene()
    slicerApp.openModule()
    widget, ui = slicerApp.widget, slicerApp.widget.ui
    ui.iterationsSpinBox.setValue(TrainingPanelLimit() - 1)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    ui.extraArgsLineEdit.setText(TINY)
    ui.trainButton.click()
    job = widget.logic.trainingJob
    _waitFor(qapp, lambda: job.progress.iteration >= 1)
    if answer == "yes":  # the user answers Yes. (In testing mode Slicer's own confirmYesNoDisplay, used for "no",
        # returns False: its preset True is compared with QMessageBox.Yes.)
        monkeypatch.setattr(slicer.util, "confirmYesNoDisplay",
                            lambda text, **kwargs: logging.getLogger().info(text) or True)
    with caplog.at_level(logging.INFO):
        qapp.aboutToQuit.emit() if answer == "yes" else slicer.mrmlScene.Clear(0)
    assert any(str(job.runDir) in record.getMessage() and "training is running" in record.getMessage()
               for record in caplog.records)
    try:
        assert job.poll() == ("cancelled" if answer == "yes" else "running")
    finally:
        job.cancel()


def TrainingPanelLimit():
    from ACTIONppWidgets import TrainingPanel

    return TrainingPanel.ESTIMATE_FROM


def test_the_labeling_loop_end_to_end(slicerApp, qapp):
    """Train, segment (with the uncertainty overlay), review and accept, continue training from the model with the
    new labels, rank what is still unlabeled: the loop of docs/slicer.md, through the panel's buttons."""
    import json

    volumes, _ = _scene(labeled=2, unlabeled=2)
    slicerApp.openModule()
    widget, ui = slicerApp.widget, slicerApp.widget.ui
    ui.iterationsSpinBox.setValue(6)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    ui.extraArgsLineEdit.setText(TINY)
    ui.trainButton.click()
    _waitFor(qapp, lambda: widget.training.state != "running")
    firstRun = widget.logic.trainingJob.runDir
    assert widget.training.state == "finished", ui.logTextEdit.toPlainText()

    ui.inputVolumeSelector.setCurrentNode(volumes[2])
    ui.uncertaintyCheckBox.setChecked(True)
    ui.segmentButton.click()
    _waitFor(qapp, lambda: not widget.segment.running)
    status = widget.logic.pollSegmentation()
    assert status.uncertainty is not None, ui.segmentStatusLabel.text()
    from slicer.util import arrayFromVolume

    unsure = arrayFromVolume(status.uncertainty)
    assert unsure.shape == (4, 32, 32) and 0 <= unsure.min() and unsure.max() <= 1
    assert status.uncertainty not in widget.logic.listVolumes()  # an overlay, not a volume to train on
    ui.acceptButton.click()
    assert ui.countsLabel.text() == "Labeled: 3 · Unlabeled: 1"

    ui.continueCheckBox.setChecked(True)  # from the model selected under Segment: the first run's
    ui.trainButton.click()
    _waitFor(qapp, lambda: widget.training.state != "running")
    assert widget.training.state == "finished", ui.logTextEdit.toPlainText()
    secondRun = widget.logic.trainingJob.runDir
    assert json.loads((secondRun / "model.json").read_text())["parent"] == str(firstRun.resolve())

    ui.rankButton.click()
    table = ui.volumesTableWidget
    scores = {table.item(r, 0).text(): table.item(r, 3).text() for r in range(table.rowCount())}
    assert scores["scan 3"] != "" and 0 <= float(scores["scan 3"]) <= 1
    assert scores["scan 0"] == scores["scan 2"] == ""  # labeled volumes are not ranked

    ui.labelNextButton.click()  # the only unlabeled volume opens, with new empty labels, in the embedded editor
    volume, labels = widget.review.editing()
    assert volume is volumes[3] and labels is not None and labels is not status.segmentation
    assert labels.GetNodeReferenceID(labels.GetReferenceImageGeometryReferenceRole()) == volumes[3].GetID()
    assert "scan 3" in ui.reviewLabel.text()
