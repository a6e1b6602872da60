"""Geometry checks of the curation: transforms, non-scalar volume kinds, and a segmentation's reference grid.

A segmentation records the grid it was drawn on (its *reference image geometry*). When that grid and the volume it is
paired with disagree (other axes, or a field of view displaced by more than one voxel of the volume), the pairing is
almost always a mistake (the segmentation of another series), so the curation check refuses it instead of resampling
it silently. An oversampled segmentation of the same volume (finer spacing, same axes and field of view) is accepted.

Linear transforms are accepted and not hardened: the volume is exported on its own voxel grid and its label map is
mapped onto that grid, so image and label agree voxel for voxel; the transform itself is not written (training does
not need world positions). Non-linear transforms are refused.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

NON_SCALAR_CLASSES = ("vtkMRMLVectorVolumeNode", "vtkMRMLDiffusionTensorVolumeNode",
                      "vtkMRMLDiffusionWeightedVolumeNode", "vtkMRMLMultiVolumeNode")
"""Volume node classes holding several values per voxel (colour, vector, tensor, 4D)."""

AXIS_TOLERANCE = 1e-3
"""Largest allowed ``1 - cos(angle)`` between matching grid axes."""


def nonLinearTransform(node):
    """The first non-linear transform above ``node`` (None when all are linear or there are none)."""
    transform = node.GetParentTransformNode()
    while transform is not None:
        if not transform.IsLinear():
            return transform
        transform = transform.GetParentTransformNode()
    return None


def nonScalarKind(volume) -> str:
    """The class name when ``volume`` is a vector/tensor/4D volume node ("" for a scalar volume)."""
    for cls in NON_SCALAR_CLASSES:
        if volume.IsA(cls):
            return cls
    return ""


def _matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def _corners(ijkToRas: np.ndarray, extent) -> np.ndarray:
    """RAS positions of the 8 outer corners (voxel edges) of an index extent."""
    lo = [extent[0] - 0.5, extent[2] - 0.5, extent[4] - 0.5]
    hi = [extent[1] + 0.5, extent[3] + 0.5, extent[5] + 0.5]
    pts = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return (ijkToRas @ pts.T).T[:, :3]


def referenceGrid(segmentation):
    """``(ijkToRas 4x4, extent)`` of the segmentation's reference geometry in its own coordinates, or None."""
    text = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if not text:
        return None
    image = slicer.vtkOrientedImageData()
    if not slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, image, False):
        return None
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    return _matrix(m), image.GetExtent()


def referenceGridMismatch(volume, segmentation) -> str:
    """How the segmentation's reference grid disagrees with ``volume``'s grid ("" when it agrees or is unknown).

    Both grids are compared in the volume's coordinates (linear transforms between them are applied). The axes must
    agree within :data:`AXIS_TOLERANCE`, and every corner of the two fields of view within one voxel of the volume.
    """
    grid = referenceGrid(segmentation)
    image = volume.GetImageData()
    if grid is None or image is None:
        return ""
    segToVol = vtk.vtkMatrix4x4()
    slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(segmentation.GetParentTransformNode(),
                                                               volume.GetParentTransformNode(), segToVol)
    segIjkToRas = _matrix(segToVol) @ grid[0]
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    volIjkToRas = _matrix(m)
    for axis, name in enumerate("IJK"):
        a, b = segIjkToRas[:3, axis], volIjkToRas[:3, axis]
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        if 1.0 - cos > AXIS_TOLERANCE:
            return f"its {name} axis is {np.degrees(np.arccos(np.clip(cos, -1, 1))):.1f} degrees off the volume's"
    shift = float(np.max(np.linalg.norm(_corners(segIjkToRas, grid[1]) - _corners(volIjkToRas, image.GetExtent()),
                                        axis=1)))
    tolerance = max(volume.GetSpacing())
    if shift > tolerance:
        return f"its field of view is {shift:.1f} mm off the volume's (tolerance {tolerance:g} mm, one voxel)"
    return ""
