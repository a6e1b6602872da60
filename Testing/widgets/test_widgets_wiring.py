"""Button -> logic wiring of the three panels, on the real .ui (PySide6, offscreen) against a fake logic."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("PySide6.QtUiTools", reason="PySide6 is not installed (pip install PySide6-Essentials)")
from actionpp_widget_testing import FakeTimer, Node, qt  # noqa: E402

from ACTIONppLogic.progress import Progress  # noqa: E402
from ACTIONppWidgets import CurationPanel, SegmentPanel, TrainingPanel  # noqa: E402


def _settings(**fields):
    return SimpleNamespace(**fields)


def _panels(ui, logic, recorder, **hookExtra):
    hooks = recorder.hooks(**hookExtra)
    timer = FakeTimer()
    training = None
    curation = CurationPanel(ui, logic, qt, hooks, onChanged=lambda: training and training.updateButtons())
    training = TrainingPanel(ui, logic, _settings, curation.cases, curation.canTrain, curation.blockingMessage,
                             timer=timer, hooks=hooks)
    curation.refresh()
    return curation, training, timer


def _status(state="running", iteration=0, total=10, newLog="", resumable=False, error="", tail="", pretrain=None):
    """A logic status with the logic's real :class:`Progress`; ``pretrain=(step, steps)``: during pre-training."""
    if pretrain is None:
        progress = Progress(iteration=iteration, total=total, trainTotal=total)
    else:
        progress = Progress(iteration=pretrain[0], total=pretrain[1], phase="pretrain", pretrainTotal=pretrain[1],
                            trainTotal=total)
    return SimpleNamespace(state=state, progress=progress, curves={"loss": [(iteration, 0.5)]}, newLog=newLog,
                           runDir=Path("/runs/r1"), errorMessage=error, logTail=tail, resumable=resumable)


def _combo(ui, row):
    return ui.volumesTableWidget.cellWidget(row, 1)


# ---- curation ----------------------------------------------------------------------------------------------------
def test_curation_table_guesses_segmentations_and_shows_the_verdict(ui, logic, recorder):
    curation, training, _ = _panels(ui, logic, recorder)
    table = ui.volumesTableWidget
    assert table.rowCount() == 3 and [table.item(r, 0).text() for r in range(3)] == ["scan 1", "scan 2", "scan 3"]
    assert [_combo(ui, r).currentData() for r in range(3)] == ["s1", "unlabeled", "unlabeled"]
    assert table.item(0, 2).text() == "LV, RV"
    assert ui.countsLabel.text() == "Labeled: 1 · Unlabeled: 2"
    assert ui.classesLabel.text() == "Classes: LV (1), RV (2)"
    assert ui.problemsTextEdit.toPlainText() == "✔ Ready to train."
    assert ui.trainButton.isEnabled() and not ui.cancelButton.isEnabled() and not ui.resumeButton.isEnabled()

    _combo(ui, 1).setCurrentIndex(_combo(ui, 1).findData("s2"))  # names disagree -> blocked, with the reason
    assert "✖ Segment names disagree." in ui.problemsTextEdit.toPlainText()
    assert not ui.trainButton.isEnabled() and ui.trainButton.toolTip() == "Segment names disagree."

    _combo(ui, 1).setCurrentIndex(_combo(ui, 1).findData("skip"))
    assert [(v.GetID(), s.GetID() if s else None) for v, s in curation.cases()] == [("v1", "s1"), ("v3", None)]
    assert ui.trainButton.isEnabled()

    logic.volumes.append(Node("v4", "scan 4"))  # a refresh keeps the user's choices
    ui.refreshVolumesButton.click()
    assert table.rowCount() == 4 and _combo(ui, 1).currentData() == "skip"


# ---- training ----------------------------------------------------------------------------------------------------
def test_train_click_calls_start_training_with_the_gui_settings(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("mean-teacher"))
    ui.dimsComboBox.setCurrentIndex(ui.dimsComboBox.findData("3"))
    ui.iterationsSpinBox.setValue(750)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    ui.extraArgsLineEdit.setText("--patch 16 64 64 --val-fraction 0.25")

    ui.trainButton.click()

    (call,) = logic.called("startTraining")
    assert call[1] == [("v1", "s1"), ("v2", None), ("v3", None)]
    assert vars(call[2]) == {"method": "mean-teacher", "dims": 3, "iterations": 750, "device": "cpu",
                             "extraArgs": ["--patch", "16", "64", "64", "--val-fraction", "0.25"]}
    assert logic.called("checkDevice") == [("checkDevice", "cpu")] and call[3] is None  # short run: no estimate
    assert not logic.called("estimateTraining")
    assert timer.active and timer.interval == TrainingPanel.POLL_MS and recorder.named("showCurves")
    assert not ui.trainButton.isEnabled() and ui.cancelButton.isEnabled()


def test_progress_updates_the_bar_the_label_and_the_log(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.trainButton.click()
    logic.trainingStatuses = [_status(iteration=3, total=10, newLog="# started\niter 3\n"),
                              _status("finished", iteration=10, total=10, newLog="done\n")]
    timer.callback()
    assert ui.trainingProgressBar.maximum() == 10 and ui.trainingProgressBar.value() == 3
    assert ui.progressLabel.text() == "Iteration 3/10"
    assert ui.logTextEdit.toPlainText() == "# started\niter 3"
    assert recorder.named("onCurves")[-1][1] == {"loss": [(3, 0.5)]}
    timer.callback()
    assert ui.trainingProgressBar.value() == 10 and not timer.active
    assert ui.logTextEdit.toPlainText().endswith("done")
    assert recorder.named("finished") == [("finished", Path("/runs/r1"))]
    assert ui.trainButton.isEnabled() and not ui.cancelButton.isEnabled()


def test_the_bar_spans_the_pretraining_stage_and_the_iterations(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.trainButton.click()
    logic.trainingStatuses = [_status(total=10, pretrain=(2, 5)), _status(iteration=3, total=10, pretrain=None)]
    timer.callback()
    assert ui.trainingProgressBar.maximum() == 15 and ui.trainingProgressBar.value() == 2
    assert ui.progressLabel.text() == "Pre-training 2/5, then 10 iterations"
    logic.trainingStatuses[-1].progress.pretrainTotal = 5  # fine-tuning after the 5 pre-training steps
    timer.callback()
    assert ui.trainingProgressBar.maximum() == 15 and ui.trainingProgressBar.value() == 8
    logic.trainingStatuses = [_status("cancelled", total=10, pretrain=(2, 5))]
    ui.cancelButton.click()
    assert "Cancelled at pre-training step 2." in ui.progressLabel.text()


def test_cancel_then_resume(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.trainButton.click()
    logic.trainingStatuses = [_status("cancelled", iteration=4, resumable=True)]
    ui.cancelButton.click()
    assert logic.called("cancelTraining") and not timer.active
    assert "Cancelled at iteration 4" in ui.progressLabel.text()
    assert ui.resumeButton.isEnabled() and ui.trainButton.isEnabled() and not ui.cancelButton.isEnabled()
    ui.resumeButton.click()
    assert logic.called("resumeTraining") and timer.active and not ui.resumeButton.isEnabled()
    logic.resumeError = RuntimeError("no checkpoint")
    training.state, training.resumable = "cancelled", True
    ui.resumeButton.setEnabled(True)
    ui.resumeButton.click()
    assert recorder.named("showError")[-1][1] == "Could not resume training: no checkpoint"


def test_a_failure_opens_the_error_dialog_with_the_log_tail(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.trainButton.click()
    logic.trainingStatuses = [_status("failed", iteration=2, error="actionpp: error: out of memory",
                                      tail="line 1\nactionpp: error: out of memory")]
    timer.callback()
    assert recorder.named("showError") == [("showError", "Training failed: actionpp: error: out of memory",
                                            "line 1\nactionpp: error: out of memory")]
    assert ui.progressLabel.text() == "Failed: actionpp: error: out of memory"


def test_dependencies_are_installed_only_after_asking(ui, logic, recorder):
    logic.plan = SimpleNamespace(empty=False, describe=lambda: "Missing: monai")
    _, training, _ = _panels(ui, logic, recorder)
    recorder.answer = False
    ui.trainButton.click()
    assert recorder.named("confirm") and not recorder.named("install") and not logic.called("startTraining")

    recorder.answer = True
    installed = SimpleNamespace(empty=True, describe=lambda: "")
    original = logic.dependencyPlan
    logic.dependencyPlan = lambda: logic.plan if not recorder.named("install") else installed
    ui.trainButton.click()
    assert recorder.named("install")[0][1] is logic.plan and logic.called("startTraining")
    logic.dependencyPlan = original


def test_start_errors_are_shown(ui, logic, recorder):
    def refuse(cases, settings, dataset=None):
        raise RuntimeError("a training job is already running for this scene")

    logic.startTraining = refuse
    _, training, timer = _panels(ui, logic, recorder)
    ui.trainButton.click()
    assert recorder.named("showError") == [
        ("showError", "Could not start training: a training job is already running for this scene", "")]
    assert not timer.active and ui.trainButton.isEnabled()


# ---- segment -----------------------------------------------------------------------------------------------------
def _model(name):
    return SimpleNamespace(name=name, method="actionpp", classNames=["LV", "RV"], path=Path(f"/runs/{name}"),
                           describe=lambda: f"{name}: actionpp · val Dice 0.9")


def _sceneWithVolumes(names):
    """A real headless MRML scene (slicer-core) holding scalar volumes with these names, and a labelmap."""
    pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
    from ACTIONppLogic import mrml

    context = mrml.createHeadlessScene()
    for name in names:
        context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "a labelmap")
    return context


def test_segment_panel_lists_models_and_segments_the_chosen_volume(ui, logic, recorder):
    logic.models = [_model("new"), _model("old")]
    context = _sceneWithVolumes(["scan 1", "scan 2", "scan 3"])
    ui.inputVolumeSelector.setMRMLScene(context.scene)
    assert ui.inputVolumeSelector.count() == 3  # scalar volumes only (showChildNodeTypes is false)
    timer = FakeTimer()
    panel = SegmentPanel(ui, logic, deviceProvider=lambda: "cpu", timer=timer,
                         hooks=recorder.hooks(currentVolume=lambda: logic.volumes[2]))
    assert ui.modelComboBox.count() == 2 and ui.modelComboBox.currentText() == "new · actionpp · LV, RV"
    assert ui.modelInfoLabel.text() == "new: actionpp · val Dice 0.9"
    ui.modelComboBox.setCurrentIndex(1)
    ui.inputVolumeSelector.setCurrentNode(context.scene.GetFirstNodeByName("scan 2"))
    ui.show3DCheckBox.setChecked(False)

    ui.segmentButton.click()

    assert logic.called("segment") == [("segment", "scan 2", "old", "cpu", False)]
    assert timer.active and not ui.segmentButton.isEnabled() and "Segmenting 'scan 2'" in ui.segmentStatusLabel.text()
    created = Node("seg9", "scan 2 ACTIONpp (old)")
    logic.segmentationStatuses = [SimpleNamespace(state="running"),
                                  SimpleNamespace(state="finished", segmentation=created)]
    timer.callback()
    assert timer.active
    timer.callback()
    assert not timer.active and ui.segmentStatusLabel.text().startswith("Created 'scan 2 ACTIONpp (old)'.")
    assert recorder.named("segmentation") == [("segmentation", created)] and ui.segmentButton.isEnabled()
    assert ui.acceptButton.isEnabled()
    ui.acceptButton.click()  # the reviewed result becomes labels through the logic (a copy)
    assert logic.called("acceptAsLabels") == [("acceptAsLabels", "seg9")]
    assert recorder.named("labelsAccepted")[0][1].GetName() == "scan 2 ACTIONpp (old) (reviewed)"

    ui.rerunButton.click()  # one click: same model, the volume in view
    assert logic.called("segment")[-1] == ("segment", "scan 3", "old", "cpu", False)
    logic.segmentationStatuses = [SimpleNamespace(state="failed", errorMessage="bad model", logTail="tail")]
    timer.callback()
    assert recorder.named("showError")[-1] == ("showError", "Segmentation failed: bad model", "tail")


def test_segment_panel_without_models_disables_segmenting(ui, logic, recorder):
    ui.inputVolumeSelector.setMRMLScene(_sceneWithVolumes(["scan 1"]).scene)
    SegmentPanel(ui, logic, hooks=recorder.hooks())
    assert ui.modelComboBox.count() == 0 and not ui.segmentButton.isEnabled() and not ui.rerunButton.isEnabled()
    assert ui.modelInfoLabel.text().startswith("No trained model yet")
    logic.models = [_model("fresh")]
    ui.refreshModelsButton.click()
    assert ui.segmentButton.isEnabled()


@pytest.mark.parametrize("text,expected", [("", []), ("--seed 3", ["--seed", "3"]), ("--config 'my file.json'",
                                                                                   ["--config", "my file.json"])])
def test_extra_flags_are_split_like_a_shell(ui, logic, recorder, text, expected):
    _, training, _ = _panels(ui, logic, recorder)
    ui.extraArgsLineEdit.setText(text)
    assert training.settings().extraArgs == expected


def test_load_model_from_anywhere_and_errors_are_shown(ui, logic, recorder):
    chosen = []
    panel = SegmentPanel(ui, logic, hooks=recorder.hooks(chooseModelPath=lambda: chosen.pop(0) if chosen else ""))
    ui.loadModelButton.click()  # dialog cancelled: nothing happens
    assert not logic.called("loadModel")
    chosen.append("/elsewhere/run7/model.pt")
    ui.loadModelButton.click()
    assert logic.called("loadModel") == [("loadModel", "/elsewhere/run7/model.pt")]
    assert panel.selectedModel().path == Path("/elsewhere/run7/model.pt")
    logic.loadError = ValueError("/x: not a training run (no model.json)")
    chosen.append("/x")
    ui.loadModelButton.click()
    assert recorder.named("showError")[-1][1] == "Could not load the model: /x: not a training run (no model.json)"


def test_long_runs_are_timed_first_and_start_only_when_confirmed(ui, logic, recorder):
    _, training, timer = _panels(ui, logic, recorder)
    ui.iterationsSpinBox.setValue(TrainingPanel.ESTIMATE_FROM)
    recorder.answer = False
    ui.trainButton.click()
    assert logic.called("estimateTraining") == [("estimateTraining", Path("/work/datasets/1"),
                                                 TrainingPanel.ESTIMATE_FROM)]
    question = recorder.named("confirm")[-1][1]
    assert f"about 5 min for {TrainingPanel.ESTIMATE_FROM} iterations" in question
    assert not logic.called("startTraining") and not timer.active
    recorder.answer = True
    ui.trainButton.click()
    (call,) = logic.called("startTraining")
    assert call[3] == Path("/work/datasets/1")  # the dataset exported for the estimate is the one trained on


def test_an_unusable_device_is_reported_before_anything_starts(ui, logic, recorder):
    logic.deviceError = RuntimeError("No GPU for training: PyTorch 2.13.0+cpu in this Slicer is a CPU-only build.")
    _, training, timer = _panels(ui, logic, recorder)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cuda"))
    ui.iterationsSpinBox.setValue(5000)
    ui.trainButton.click()
    assert recorder.named("showError")[-1][1].startswith("Could not start training: No GPU for training")
    assert not logic.called("exportDataset") and not logic.called("startTraining") and not timer.active


def test_unfinished_runs_from_an_earlier_session_can_be_resumed(ui, logic, recorder):
    logic.unfinished = [SimpleNamespace(path=Path("/work/runs/r2"), reason="training not finished", resumable=True)]
    _, training, timer = _panels(ui, logic, recorder)
    assert ui.unfinishedRunComboBox.count() == 1 and ui.resumeButton.isEnabled()
    ui.resumeButton.click()
    assert logic.called("adoptRun") == [("adoptRun", "/work/runs/r2")] and logic.called("resumeTraining")
    assert timer.active


def test_rank_fills_the_uncertainty_column_and_label_next_opens_the_top_volume(ui, logic, recorder):
    model = _model("m1")
    opened = []
    hooks = recorder.hooks(openForLabeling=lambda volume, seg: opened.append((volume.GetID(), seg.GetID())))
    curation = CurationPanel(ui, logic, qt, hooks, modelProvider=lambda: model, deviceProvider=lambda: "cpu")
    curation.refresh()
    ui.labelNextButton.click()  # nothing ranked yet
    assert recorder.named("showError")[-1][1].startswith("Rank the unlabeled volumes first")
    logic.scores = {"v2": 0.31, "v3": 0.47}
    ui.rankButton.click()
    assert logic.called("rankVolumes") == [("rankVolumes", ["v2", "v3"], "m1", "cpu")]  # unlabeled ones only
    table = ui.volumesTableWidget
    assert table.horizontalHeaderItem(3).text() == "Uncertainty"
    assert [table.item(r, 3).text() for r in range(3)] == ["", "0.310", "0.470"]
    ui.labelNextButton.click()
    assert logic.called("createLabelsFor") == [("createLabelsFor", "v3")] and opened == [("v3", "new-v3")]
    assert table.cellWidget(2, 1).currentData() == "new-v3"  # the new segmentation labels that volume


def test_continue_from_the_selected_model_and_uncertainty_are_passed_on(ui, logic, recorder):
    model = _model("parent")
    curation = CurationPanel(ui, logic, qt, recorder.hooks())
    curation.refresh()
    training = TrainingPanel(ui, logic, _settings, curation.cases, curation.canTrain, hooks=recorder.hooks(),
                             timer=FakeTimer(), modelProvider=lambda: model)
    ui.iterationsSpinBox.setValue(20)
    ui.continueCheckBox.setChecked(True)
    ui.trainButton.click()
    assert logic.called("startTraining")[-1][2].initFrom == str(model.path)
    training.modelProvider = lambda: None
    training.state = "finished"
    training.updateButtons()
    ui.trainButton.click()
    assert recorder.named("showError")[-1][1].startswith("Could not start training: 'Continue from the selected "
                                                         "model' needs a model")

    logic.models = [model]
    ui.inputVolumeSelector.setMRMLScene(_sceneWithVolumes(["scan 1"]).scene)
    SegmentPanel(ui, logic, hooks=recorder.hooks())
    ui.uncertaintyCheckBox.setChecked(True)
    ui.segmentButton.click()
    assert logic.called("segment")[-1][-1] == "uncertainty"
