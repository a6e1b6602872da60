"""Curation on real MRML: volumes under transforms, vector/4D volumes, empty segmentations and segmentations drawn on
another grid are refused with a message and nothing is written (linear transforms are accepted, with a warning)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
from actionpp_logic_testing import boxes  # noqa: E402

from ACTIONppLogic import mrml  # noqa: E402
from ACTIONppLogic.export import CurationError, checkCuration, exportDataset  # noqa: E402

SHAPE = (4, 20, 24)


def _image(seed):
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


def _refused(ctx, cases, tmp_path, *fragments):
    """The check reports an error holding every fragment, and the export raises and writes nothing."""
    report = checkCuration(cases)
    errors = [p.message for p in report.errors]
    assert not report.canTrain and any(all(f in m for f in fragments) for m in errors), errors
    with pytest.raises(CurationError):
        exportDataset(cases, tmp_path / "ds", ctx.segmentationsLogic)
    assert not (tmp_path / "ds").exists()
    return errors


def _gridTransform(scene, name="warp"):
    import slicer
    import vtk

    grid = vtk.vtkImageData()
    grid.SetDimensions(4, 4, 4)
    grid.SetSpacing(20.0, 20.0, 20.0)
    grid.SetOrigin(-30.0, -30.0, -30.0)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    grid.GetPointData().GetScalars().Fill(1.5)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    node.SetAndObserveTransformFromParent(transform)
    return node


def test_volume_or_segmentation_under_a_non_linear_transform_is_refused(ctx, mk, tmp_path):
    (m,) = boxes(SHAPE, np.s_[1:3, 4:9, 4:9])
    labeled = mk.volume(ctx.scene, _image(0), "labeled")
    seg = mk.segmentation(ctx, labeled, [("LV", m)])
    unlabeled = mk.volume(ctx.scene, _image(1), "unlabeled")
    warp = _gridTransform(ctx.scene)
    unlabeled.SetAndObserveTransformNodeID(warp.GetID())
    _refused(ctx, [(labeled, seg), (unlabeled, None)], tmp_path, "'unlabeled'", "non-linear transform 'warp'")
    unlabeled.SetAndObserveTransformNodeID(None)
    seg.SetAndObserveTransformNodeID(warp.GetID())
    _refused(ctx, [(labeled, seg), (unlabeled, None)], tmp_path, "Segmentation 'segmentation'", "non-linear")
    seg.SetAndObserveTransformNodeID(None)
    assert checkCuration([(labeled, seg), (unlabeled, None)]).canTrain


def test_linear_transform_is_accepted_and_exported_on_the_volume_grid(ctx, mk, tmp_path):
    import vtk

    (m,) = boxes(SHAPE, np.s_[1:3, 4:9, 4:9])
    vol = mk.volume(ctx.scene, _image(2), "moved")
    seg = mk.segmentation(ctx, vol, [("LV", m)])
    shift = ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 7.0)
    shift.SetMatrixTransformToParent(matrix)
    vol.SetAndObserveTransformNodeID(shift.GetID())
    seg.SetAndObserveTransformNodeID(shift.GetID())
    report = checkCuration([(vol, seg)])
    assert report.canTrain and any("linear transform" in p.message for p in report.warnings)
    exportDataset([(vol, seg)], tmp_path / "ds", ctx.segmentationsLogic)
    label = mrml.readVolume(ctx.scene, tmp_path / "ds" / "labelsTr" / "moved.nrrd", labelmap=True)
    import slicer

    np.testing.assert_array_equal(slicer.util.arrayFromVolume(label), m.astype(np.int16))


@pytest.mark.parametrize("components", [3, 1])
def test_vector_volumes_are_refused(ctx, mk, tmp_path, components):
    (m,) = boxes(SHAPE, np.s_[1:3, 4:9, 4:9])
    good = mk.volume(ctx.scene, _image(3), "scalar")
    seg = mk.segmentation(ctx, good, [("LV", m)])
    array = np.repeat(_image(4)[..., None], components, axis=-1) if components > 1 else _image(4)
    vector = mk.volume(ctx.scene, array, "rgb",
                       nodeClass="vtkMRMLVectorVolumeNode")
    _refused(ctx, [(good, seg), (vector, None)], tmp_path, "'rgb'", "VectorVolume", "scalar volume")


def test_empty_segmentations_are_refused(ctx, mk, tmp_path):
    vol = mk.volume(ctx.scene, _image(5), "v")
    _refused(ctx, [(vol, mk.segmentation(ctx, vol, [], "none"))], tmp_path, "'none'", "has no segments")
    blank = mk.segmentation(ctx, vol, [("LV", np.zeros(SHAPE, bool)), ("RV", np.zeros(SHAPE, bool))], "blank")
    _refused(ctx, [(vol, blank)], tmp_path, "'blank'", "is empty (no painted voxel)")


def _segmentationReferencing(ctx, mk, vol, grid, mask):
    seg = mk.segmentation(ctx, vol, [("LV", mask)])
    seg.SetReferenceImageGeometryParameterFromVolumeNode(grid)
    return seg


def test_segmentation_drawn_on_another_grid_is_refused(ctx, mk, tmp_path):
    (m,) = boxes(SHAPE, np.s_[1:3, 4:9, 4:9])
    vol = mk.volume(ctx.scene, _image(6), "v", spacing=(1.0, 1.0, 3.0))
    zeros = np.zeros(SHAPE, np.float32)
    shifted = mk.volume(ctx.scene, zeros, "shifted", spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 6.0))
    errors = _refused(ctx, [(vol, _segmentationReferencing(ctx, mk, vol, shifted, m))], tmp_path,
                      "drawn on another grid", "field of view is 6.0 mm off")
    assert "No usable labeled volume" in errors[-1] and len(errors) == 2
    rotated = mk.volume(ctx.scene, zeros, "rotated", spacing=(1.0, 1.0, 3.0),
                        direction=[[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    _refused(ctx, [(vol, _segmentationReferencing(ctx, mk, vol, rotated, m))], tmp_path, "I axis is 90.0 degrees")


def test_reference_grid_within_tolerance_is_accepted(ctx, mk):
    (m,) = boxes(SHAPE, np.s_[1:3, 4:9, 4:9])
    vol = mk.volume(ctx.scene, _image(7), "v", spacing=(1.0, 1.0, 3.0))
    nudged = mk.volume(ctx.scene, np.zeros(SHAPE, np.float32), "nudged", spacing=(1.0, 1.0, 3.0),
                       origin=(0.4, 0.0, 1.0))  # within one voxel (3 mm)
    fine = mk.volume(ctx.scene, np.zeros((8, 40, 48), np.float32), "oversampled", spacing=(0.5, 0.5, 1.5),
                     origin=(-0.25, -0.25, -0.75))  # same field of view, twice the sampling
    for grid in (nudged, fine):
        report = checkCuration([(vol, _segmentationReferencing(ctx, mk, vol, grid, m))])
        assert report.canTrain, [p.message for p in report.errors]
