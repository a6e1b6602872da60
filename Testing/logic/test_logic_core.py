"""``ModuleLogic`` end to end on a headless scene: curate the scene's volumes, export, train (real engine, tiny),
chart the curves, list the model, segment a volume into a new segmentation node."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
from actionpp_logic_testing import ENGINE_ENV, TINY_TRAINING, requireEngine  # noqa: E402

from ACTIONppLogic import export, jobs, mrml  # noqa: E402
from ACTIONppLogic.core import ModuleLogic  # noqa: E402
from ACTIONppLogic.jobs import TrainingSettings  # noqa: E402
from ACTIONppLogic.plots import TrainingCurvesPlot  # noqa: E402

SHAPE = (4, 32, 32)


def _disc(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    cy, cx = rng.integers(12, 20, 2)
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    ring = np.broadcast_to(r2 < 81, SHAPE).copy()
    core = np.broadcast_to(r2 < 16, SHAPE).copy()
    image = (ring * 1.0 + core * 1.0 + rng.normal(0, 0.2, SHAPE)).astype(np.float32)
    return image, ring & ~core, core


@pytest.fixture
def scene3(ctx, mk):
    """Three volumes; the first two have segmentations made on them (reference geometry set, as the Segment
    Editor does), with their segments in different orders."""
    volumes = []
    for i in range(3):
        image, ring, core = _disc(i)
        volume = mk.volume(ctx.scene, image, f"scan {i}", spacing=(1.0, 1.0, 6.0))
        volumes.append(volume)
        if i == 0:
            mk.segmentation(ctx, volume, [("ring", ring), ("core", core)], f"scan {i} segmentation")
        elif i == 1:
            mk.segmentation(ctx, volume, [("Core", core), ("Ring", ring)], f"scan {i} segmentation")
    mk.volume(ctx.scene, np.zeros(SHAPE, np.uint8), "a labelmap", nodeClass="vtkMRMLLabelMapVolumeNode")
    return volumes


def test_scene_listing_and_segmentation_guess(ctx, scene3, tmp_path):
    logic = ModuleLogic(ctx, tmp_path)
    assert [v.GetName() for v in logic.listVolumes()] == ["scan 0", "scan 1", "scan 2"]
    guesses = [logic.guessSegmentation(v) for v in scene3]
    assert [g.GetName() if g else None for g in guesses] == ["scan 0 segmentation", "scan 1 segmentation", None]
    assert logic.nodeByID(scene3[0].GetID()) is scene3[0] and logic.nodeByID(None) is None
    report = logic.checkCuration(list(zip(scene3, guesses)))
    assert report.canTrain and report.classes == {"ring": 1, "core": 2} and (report.labeled, report.unlabeled) == (2, 1)


def test_the_panels_segment_editor_node_is_its_own_singleton(ctx, tmp_path):
    """One editor parameter node per scene under the tag ACTIONpp, apart from the Segment Editor module's."""
    logic = ModuleLogic(ctx, tmp_path)
    node = logic.segmentEditorNode()
    assert node.IsA("vtkMRMLSegmentEditorNode") and node.GetSingletonTag() == "ACTIONpp"
    assert logic.segmentEditorNode() is node and ctx.scene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode") == 1
    module = ctx.scene.AddNode(ctx.scene.CreateNodeByClass("vtkMRMLSegmentEditorNode"))
    module.SetSingletonTag("SegmentEditor")
    assert logic.segmentEditorNode() is node
    ctx.scene.Clear(0)  # closing the scene keeps singletons: the same node serves the next scene
    assert logic.segmentEditorNode().GetID() == node.GetID()


@pytest.mark.slow
def test_train_then_segment_through_the_logic(ctx, scene3, tmp_path):
    requireEngine()
    logic = ModuleLogic(ctx, tmp_path / "work", python=sys.executable, baseEnv=ENGINE_ENV)
    cases = [(v, logic.guessSegmentation(v)) for v in scene3]
    settings = TrainingSettings(method="mean-teacher", iterations=6, device="cpu", checkpointEvery=3,
                                extraArgs=TINY_TRAINING)

    job = logic.startTraining(cases, settings)
    assert logic.trainingJob is job and job.runDir.parent == tmp_path / "work" / "runs"
    assert job.runDir.name.endswith("-mean-teacher")
    with pytest.raises(jobs.JobBusyError):
        logic.startTraining(cases, settings)
    job.wait(timeout=120)
    status = logic.pollTraining()
    assert status.state == jobs.FINISHED, status.logTail or job.logTail()
    assert status.progress.done and status.progress.iteration == status.progress.total == 6
    assert status.progress.labels == {"background": 0, "ring": 1, "core": 2}
    assert status.progress.method == "mean-teacher" and status.progress.device == "cpu"
    assert job.modelPath.is_file() and not status.resumable
    assert "# " in status.newLog and "exit status 0" in status.newLog
    assert [x for x, _ in logic.curvesPlot.values("loss")] == [1, 2, 3, 4, 5, 6]
    exported = list((tmp_path / "work" / "datasets").iterdir())
    assert len(exported) == 1 and (exported[0] / "dataset.json").is_file()

    models, skipped = logic.listModels()
    assert [m.path for m in models] == [job.runDir] and skipped == []
    assert models[0].classNames == ["ring", "core"] and models[0].method == "mean-teacher"

    nodesBefore = ctx.scene.GetNumberOfNodes()
    segmentation = logic.segment(scene3[2], models[0], device="cpu", waitForCompletion=True)
    assert segmentation.GetName() == f"scan 2 ACTIONpp ({models[0].name})"
    seg = segmentation.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == ["ring", "core"]
    assert seg.ContainsRepresentation("Closed surface")
    assert ctx.scene.GetNumberOfNodes() == nodesBefore + 2  # the new segmentation + its display node


@pytest.mark.slow
def test_segment_failure_is_reported_not_imported(ctx, scene3, tmp_path):
    requireEngine()
    logic = ModuleLogic(ctx, tmp_path, python=sys.executable, baseEnv=ENGINE_ENV)
    run = tmp_path / "runs" / "fake"
    run.mkdir(parents=True)
    (run / "model.json").write_text('{"labels": {"background": 0, "a": 1}}')
    (run / "model.pt").write_bytes(b"not a model")
    job = logic.segment(scene3[0], run, device="cpu")
    assert isinstance(job, jobs.PredictionJob)
    job.wait(timeout=120)
    status = logic.pollSegmentation()
    assert status.state == jobs.FAILED and status.segmentation is None
    assert status.errorMessage and status.logTail


def test_curves_plot_nodes(ctx):
    plot = TrainingCurvesPlot(ctx.scene)
    curves = jobs.Curves()
    for i in range(1, 4):
        curves.add("loss", i, 1.0 / i)
    curves.add("val_dice", 3, 0.7)
    plot.update(curves)
    assert plot.values("loss") == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert plot.values("val_dice") == [(3, pytest.approx(0.7))]
    assert plot.chart.GetNumberOfPlotSeriesNodes() == 2
    plot.remove()
    assert ctx.scene.GetNodeByID(plot.chart.GetID()) is None


def test_a_model_result_is_never_proposed_as_labels_until_accepted(ctx, scene3, tmp_path):
    from ACTIONppLogic import mrml

    logic = ModuleLogic(ctx, tmp_path / "work")
    unlabeled = scene3[2]
    result = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scan 2 ACTIONpp (run)")
    result.SetReferenceImageGeometryParameterFromVolumeNode(unlabeled)
    result.GetSegmentation().AddEmptySegment("", "ring")
    result.SetAttribute(mrml.RESULT_ATTRIBUTE, "/runs/run")
    assert logic.guessSegmentation(unlabeled) is None

    report = logic.checkCuration([(scene3[0], logic.guessSegmentation(scene3[0])), (unlabeled, result)])
    assert not report.canTrain
    assert any("model's result nobody has reviewed" in p.message and p.subject == result.GetName()
               for p in report.errors)

    accepted = logic.acceptAsLabels(result)
    assert accepted is not result and accepted.GetName() == "scan 2 (run) (reviewed)"
    assert not mrml.isModelResult(accepted) and mrml.isModelResult(result)  # the original is left as it was
    assert logic.guessSegmentation(unlabeled) is accepted
    assert accepted.GetSegmentation().GetNumberOfSegments() == 1


def test_models_from_anywhere_and_unfinished_runs(ctx, tmp_path):
    import json

    logic = ModuleLogic(ctx, tmp_path / "work")
    elsewhere = tmp_path / "shared drive" / "run 7"
    elsewhere.mkdir(parents=True)
    (elsewhere / "model.json").write_text(json.dumps({"labels": {"background": 0, "LV": 1}, "method": "actionpp"}))
    (elsewhere / "model.pt").write_bytes(b"weights")
    info = logic.loadModel(elsewhere / "model.pt")
    assert info.path == elsewhere and [m.path for m in logic.listModels()[0]] == [elsewhere]
    with pytest.raises(ValueError, match=r"^.*nothing here: no such folder$"):
        logic.loadModel(tmp_path / "nothing here")
    stopped = tmp_path / "work" / "runs" / "20260101-000000-actionpp"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "config.json").write_text("{}")
    (stopped / "checkpoints" / "last.pt").write_bytes(b"x")
    (tmp_path / "work" / "runs" / "empty").mkdir()
    assert [run.path for run in logic.listUnfinishedRuns()] == [stopped]


def test_label_next_makes_an_empty_segmentation_that_labels_the_volume(ctx, scene3, tmp_path):
    logic = ModuleLogic(ctx, tmp_path / "work")
    node = logic.createLabelsFor(scene3[2])
    assert node.GetName() == "scan 2 segmentation"
    assert node.GetSegmentation().GetNumberOfSegments() == 0 and logic.guessSegmentation(scene3[2]) is node
    assert logic.createLabelsFor(scene3[2]).GetName() == "scan 2 segmentation_1"  # never a name already in use


def test_new_labels_like_another_case_have_its_classes_empty(ctx, scene3, tmp_path):
    logic = ModuleLogic(ctx, tmp_path / "work")
    model = logic.guessSegmentation(scene3[0])
    node = logic.createLabelsFor(scene3[2], like=model)
    assert logic.segmentNames(node) == ["ring", "core"] and logic.guessSegmentation(scene3[2]) is node
    for segmentId, _ in mrml.segmentNames(model):
        assert node.GetSegmentation().GetSegment(segmentId).GetColor() == \
            model.GetSegmentation().GetSegment(segmentId).GetColor()
    assert export.segmentVoxelCount(node, node.GetSegmentation().GetNthSegmentID(0)) == 0
    assert logic.segmentNames(model) == ["ring", "core"]  # the model is left as it was
    report = logic.checkCuration([(scene3[0], model), (scene3[2], node)])
    assert not report.canTrain and "scan 2 segmentation" in " ".join(p.message for p in report.errors)  # unpainted
