"""Import of a predicted label map as a new, named, coloured segmentation with a closed surface."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
from actionpp_logic_testing import boxes  # noqa: E402

from ACTIONppLogic import mrml  # noqa: E402
from ACTIONppLogic.prediction import classColour, importPrediction, labelArray  # noqa: E402

SHAPE = (6, 24, 28)
LABELS = {"background": 0, "LV": 1, "Myo": 2, "RV": 3, "PAP": 4}


def _prediction(ctx, mk, tmp_path):
    """A volume with oblique geometry and a label map on its grid holding classes 1-3 (no 4), written to NRRD."""
    volume = mk.volume(ctx.scene, np.random.default_rng(0).normal(0, 1, SHAPE).astype(np.float32), "patient 7",
                       spacing=(1.2, 1.1, 4.0), origin=(-30.0, 12.0, 5.0), direction=[[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    lv, myo, rv = boxes(SHAPE, np.s_[1:5, 4:10, 4:10], np.s_[1:5, 12:18, 4:12], np.s_[2:4, 5:15, 16:25])
    label = np.zeros(SHAPE, np.uint8)
    label[lv], label[myo], label[rv] = 1, 2, 3
    labelNode = mk.volume(ctx.scene, label, "written prediction", nodeClass="vtkMRMLLabelMapVolumeNode")
    labelNode.CopyOrientation(volume)
    path = tmp_path / "pred.nrrd"
    mrml.writeVolume(labelNode, path)
    ctx.scene.RemoveNode(labelNode)
    return volume, label, path


def test_prediction_becomes_a_new_named_coloured_segmentation(ctx, mk, tmp_path):
    volume, label, path = _prediction(ctx, mk, tmp_path)
    existing = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "patient 7 ACTIONpp")  # the user's own
    nodesBefore = ctx.scene.GetNumberOfNodes()

    seg = importPrediction(path, LABELS, volume, ctx.segmentationsLogic)

    assert seg is not existing and seg.GetName() == "patient 7 ACTIONpp_1"
    assert existing.GetSegmentation().GetNumberOfSegments() == 0
    assert ctx.scene.GetNumberOfNodes() == nodesBefore + 2  # the segmentation and its display node, nothing else
    segmentation = seg.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["LV", "Myo", "RV", "PAP"]  # every class, in label order; PAP is present but empty
    for i, name in enumerate(names):
        np.testing.assert_allclose(segmentation.GetNthSegment(i).GetColor(), classColour(name, i))
    assert len({segmentation.GetNthSegment(i).GetColor() for i in range(4)}) == 4
    # Voxel for voxel on the volume's grid (segment index + 1 == class value here).
    np.testing.assert_array_equal(labelArray(seg, volume, ctx.segmentationsLogic), label)
    # Reference geometry is the input volume, and a closed surface exists for the 3D view.
    role = seg.GetReferenceImageGeometryReferenceRole()
    assert seg.GetNodeReferenceID(role) == volume.GetID()
    assert segmentation.ContainsRepresentation("Closed surface")
    surface = segmentation.GetNthSegment(0).GetRepresentation("Closed surface")
    assert surface is not None and surface.GetNumberOfPoints() > 0


def test_surface_is_optional_and_transform_follows_the_volume(ctx, mk, tmp_path):
    volume, _, path = _prediction(ctx, mk, tmp_path)
    transform = ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    seg = importPrediction(path, LABELS, volume, ctx.segmentationsLogic, name="custom", createSurface=False)
    assert seg.GetName() == "custom"
    assert seg.GetTransformNodeID() == transform.GetID()
    assert not seg.GetSegmentation().ContainsRepresentation("Closed surface")


def test_known_anatomy_gets_terminology_like_colours():
    assert classColour("Left ventricle", 5) == classColour("lv", 0)
    assert classColour("LV", 0) != classColour("RV", 0)
    assert classColour("something new", 0) != classColour("something else", 1)
    assert all(0.0 <= c <= 1.0 for c in classColour("x", 99))


def test_converter_rules_registered_once():
    import slicer

    mrml.registerSegmentationConverterRules()
    mrml.registerSegmentationConverterRules()
    names = [r.GetClassName() for r in slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules()]
    assert names.count("vtkBinaryLabelmapToClosedSurfaceConversionRule") == 1


@pytest.mark.parametrize("shift,shape", [((0.6, 0.0, 0.0), SHAPE), ((0.0, 0.0, 0.0), (6, 24, 27))])
def test_a_label_map_off_the_volume_grid_is_refused_and_nothing_is_imported(ctx, mk, tmp_path, shift, shape):
    volume, label, _ = _prediction(ctx, mk, tmp_path)
    moved = np.zeros(shape, np.uint8)
    moved[: label.shape[0], : label.shape[1], : label.shape[2]] = label[: shape[0], : shape[1], : shape[2]]
    labelNode = mk.volume(ctx.scene, moved, "shifted", nodeClass="vtkMRMLLabelMapVolumeNode")
    labelNode.CopyOrientation(volume)
    origin = np.array(volume.GetOrigin()) + np.array(shift)  # half a voxel (spacing 1.2 x 1.1 x 4.0) along R
    labelNode.SetOrigin(*origin)
    path = tmp_path / "off grid.nrrd"
    mrml.writeVolume(labelNode, path)
    ctx.scene.RemoveNode(labelNode)
    nodesBefore = ctx.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"off grid\.nrrd: expected a label map on the voxel grid of volume "
                                         r"'patient 7'.*(off by up to 0\.6 mm|expected \(28, 24, 6\) voxels)"):
        importPrediction(path, LABELS, volume, ctx.segmentationsLogic)
    assert ctx.scene.GetNumberOfNodes() == nodesBefore


def test_a_result_is_marked_and_placed_beside_its_volume(ctx, mk, tmp_path):
    import slicer

    volume, _, path = _prediction(ctx, mk, tmp_path)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(ctx.scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient 7"), "MR 2026")
    sh.CreateItem(study, volume)  # what the application's subject hierarchy plugins do when a volume is loaded
    seg = importPrediction(path, LABELS, volume, ctx.segmentationsLogic, modelPath="/runs/r1")
    assert mrml.isModelResult(seg) and seg.GetAttribute(mrml.RESULT_ATTRIBUTE) == "/runs/r1"
    assert sh.GetItemParent(sh.GetItemByDataNode(seg)) == study
    assert not mrml.isModelResult(volume)
