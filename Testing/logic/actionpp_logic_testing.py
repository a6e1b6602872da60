"""Helpers of the Slicer-logic tests (a module with a unique name: ``from conftest import`` would pick whichever
``conftest`` pytest imported first when several test folders run together)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "ACTIONpp"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

SLICER_CORE_REASON = "slicer-core is not installed (pip install slicer-core): the MRML logic tests need it"

ENGINE_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment for engine subprocesses in tests: one thread each (tiny nets; two threads fight on a busy 2-core box)."""

TINY_TRAINING = ["--patch", "32", "32", "--batch-labeled", "2", "--batch-unlabeled", "2", "--channels", "8", "16"]
"""Engine flags that make a CPU training step take a few milliseconds."""


def requireEngine():
    """Skip unless the engine's command line is importable (the subprocess tests launch it)."""
    return pytest.importorskip("actionpp.cli", reason="the actionpp engine is not importable")


def _matrix(direction):
    import vtk

    m = vtk.vtkMatrix4x4()
    for i in range(3):
        for j in range(3):
            m.SetElement(i, j, float(direction[i][j]))
    return m


def addVolume(scene, array, name="volume", spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
              nodeClass="vtkMRMLScalarVolumeNode"):
    """A volume node holding ``array`` (z, y, x) with the given RAS geometry (``direction``: 3x3 IJK->RAS axes)."""
    import slicer

    node = scene.AddNewNodeByClass(nodeClass, name)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    if direction is not None:
        node.SetIJKToRASDirectionMatrix(_matrix(direction))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


def addSegmentation(ctx, volume, segments, name="segmentation", grid=None):
    """A segmentation on ``volume`` with one segment per ``(name, mask)`` in that order.

    ``grid``: another volume whose geometry the masks are given on (to test segmentations that do not share the
    volume's grid); default the volume itself. Segments are imported from a labelmap and then named by label value.
    """
    scene = ctx.scene
    grid = grid or volume
    label = np.zeros(segments[0][1].shape, np.int16) if segments else np.zeros((1, 1, 1), np.int16)
    for value, (_, mask) in enumerate(segments, start=1):
        label[mask] = value
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tmp")
    labelmap.CopyOrientation(grid)
    import slicer

    slicer.util.updateVolumeFromArray(labelmap, label)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    if segments:
        assert ctx.segmentationsLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
        seg = segmentation.GetSegmentation()
        byValue = {seg.GetNthSegment(i).GetLabelValue(): seg.GetNthSegmentID(i)
                   for i in range(seg.GetNumberOfSegments())}
        for value, (segmentName, mask) in enumerate(segments, start=1):
            if value in byValue:
                seg.GetSegment(byValue[value]).SetName(segmentName)
            else:  # an all-empty mask: add the segment anyway
                byValue[value] = seg.AddEmptySegment("", segmentName)
        for index, value in enumerate(sorted(byValue)):
            seg.SetSegmentIndex(byValue[value], index)
    for i in range(labelmap.GetNumberOfDisplayNodes()):
        scene.RemoveNode(labelmap.GetNthDisplayNode(i))
    scene.RemoveNode(labelmap)
    return segmentation


def boxes(shape, *slices):
    """Boolean masks of ``shape`` set True inside each given tuple of slices."""
    masks = []
    for s in slices:
        m = np.zeros(shape, bool)
        m[s] = True
        masks.append(m)
    return masks
