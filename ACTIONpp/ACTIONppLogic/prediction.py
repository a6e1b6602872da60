"""Import a predicted label map as a NEW segmentation node: one named, coloured segment per class.

The user's nodes are never touched: the node gets a unique name, the input volume as reference geometry (and the
volume's parent transform), a place beside the volume in the subject hierarchy, the model-result attribute
(``mrml.RESULT_ATTRIBUTE``: never proposed as training labels before review), and optionally a closed-surface
representation for 3D display. A label map that does not lie on the volume's voxel grid is refused.
"""

from __future__ import annotations

import re

import numpy as np
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from . import mrml

# Colours close to Slicer's anatomical terminology / GenericAnatomyColors for the structures our phantoms and the
# benchmark datasets use; other names take the palette below in class order.
_NAMED_COLOURS = {
    ("lv", "left ventricle", "left ventricular cavity", "lv cavity", "lv blood pool", "left ventricle cavity"):
        (221, 80, 70),
    ("myo", "myocardium", "lv myocardium", "left ventricular myocardium", "heart muscle"): (192, 104, 88),
    ("rv", "right ventricle", "right ventricular cavity", "rv cavity", "right ventricle cavity"): (0, 151, 206),
    ("la", "left atrium", "left atrial cavity", "atrium"): (241, 122, 101),
    ("ra", "right atrium", "right atrial cavity"): (111, 184, 210),
    ("aorta",): (224, 97, 76),
    ("liver",): (221, 130, 101),
    ("spleen",): (157, 108, 162),
    ("kidney", "left kidney", "right kidney"): (185, 102, 83),
    ("lung", "left lung", "right lung"): (197, 165, 145),
    ("tumor", "tumour", "lesion", "mass"): (144, 238, 144),
    ("bone",): (241, 214, 145),
}
_PALETTE = [  # soft, distinguishable, after the first GenericAnatomyColors entries
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79), (221, 130, 101),
    (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70),
    (200, 200, 235), (250, 250, 210), (244, 214, 49), (0, 151, 206),
]


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().casefold())


def classColour(name: str, index: int) -> tuple[float, float, float]:
    """RGB in 0..1 for class ``name``; ``index`` (0-based class order) picks a palette colour for unknown names."""
    key = _normalise(name)
    for names, rgb in _NAMED_COLOURS.items():
        if key in names:
            break
    else:
        rgb = _PALETTE[index % len(_PALETTE)]
    return tuple(c / 255.0 for c in rgb)


GRID_TOLERANCE = 1e-3
"""Largest allowed distance (as a fraction of the smallest voxel size) between corresponding voxel centres of a
label map and its volume; direction cosines must agree to the same tolerance."""


def _ijkToRas(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def gridMismatch(labelmapNode, volumeNode, tolerance: float = GRID_TOLERANCE) -> str:
    """Why ``labelmapNode`` does not lie on ``volumeNode``'s voxel grid ("" when it does).

    Same dimensions, and the IJK -> RAS matrices agree: every voxel centre within ``tolerance`` x the smallest
    spacing (checked on the grid's corners, which bounds the whole grid for an affine map).
    """
    dimsL = labelmapNode.GetImageData().GetDimensions() if labelmapNode.GetImageData() else (0, 0, 0)
    dimsV = volumeNode.GetImageData().GetDimensions() if volumeNode.GetImageData() else (0, 0, 0)
    if tuple(dimsL) != tuple(dimsV):
        return f"expected {tuple(dimsV)} voxels, found {tuple(dimsL)}"
    a, b = _ijkToRas(labelmapNode), _ijkToRas(volumeNode)
    corners = np.array([[i, j, k, 1.0] for i in (0, dimsV[0] - 1) for j in (0, dimsV[1] - 1)
                        for k in (0, dimsV[2] - 1)]).T
    offset = float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))
    smallest = float(min(volumeNode.GetSpacing()))
    if offset > tolerance * smallest:
        return f"voxel centres off by up to {offset:.4g} mm (tolerance {tolerance * smallest:.3g} mm)"
    return ""


def importPrediction(labelPath, labels: dict[str, int], referenceVolume, segmentationsLogic, name: str | None = None,
                     createSurface: bool = True, modelPath: str = ""):
    """Read ``labelPath`` (label values as in ``labels``: class name -> value, background 0) into a new segmentation.

    Every class gets a segment, in label order, even when the prediction has no voxel of it (so that the class list
    is the same for every result). Values missing from ``labels`` become segments called ``Label <value>``.
    Raises ``ValueError`` (one line naming the file) when the label map is not on ``referenceVolume``'s grid.
    Returns the segmentation node, marked as a model result (``modelPath`` as the attribute's value).
    """
    scene = referenceVolume.GetScene()
    with mrml.TemporaryNodes(scene) as temporary:  # the labelmap read from file and its helper nodes
        labelmap = mrml.readVolume(scene, labelPath, name="ACTIONpp prediction (temporary)", labelmap=True)
        mismatch = gridMismatch(labelmap, referenceVolume)
        if mismatch:
            raise ValueError(f"{labelPath}: expected a label map on the voxel grid of volume "
                             f"'{referenceVolume.GetName()}', found one that is not ({mismatch}); nothing imported")
        baseName = name or f"{referenceVolume.GetName()} ACTIONpp"
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", mrml.uniqueName(scene, baseName))
        segmentation.CreateDefaultDisplayNodes()
        temporary.keep(segmentation)
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
        if referenceVolume.GetTransformNodeID():
            segmentation.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
        if not segmentationsLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            scene.RemoveNode(segmentation)
            raise OSError(f"{labelPath}: could not import the label map into a segmentation")
        _nameAndColourSegments(segmentation, labels)
        segmentation.SetAttribute(mrml.RESULT_ATTRIBUTE, str(modelPath) or "1")
        mrml.placeBeside(segmentation, referenceVolume)
    if createSurface:
        segmentation.CreateClosedSurfaceRepresentation()
    return segmentation


UNCERTAINTY_COLOURS = "vtkMRMLColorTableNodeIron"
"""Colour table of the uncertainty overlay (built into every scene)."""


def uncertaintyPath(labelPath) -> "os.PathLike":
    """Where ``actionpp predict --uncertainty`` writes the map of ``<name><ext>``: ``<name>_uncertainty<ext>``."""
    from pathlib import Path

    labelPath = Path(labelPath)
    return labelPath.with_name(f"{labelPath.stem}_uncertainty{labelPath.suffix}")


def importUncertainty(path, referenceVolume, name: str, modelPath: str = ""):
    """Read the engine's uncertainty map (float, 0..1, on the volume's grid) into a new scalar volume coloured with
    ``UNCERTAINTY_COLOURS`` (window 0..1), marked as a model result and placed beside its volume."""
    scene = referenceVolume.GetScene()
    node = mrml.readVolume(scene, path, name=mrml.uniqueName(scene, name))
    mismatch = gridMismatch(node, referenceVolume)
    if mismatch:
        scene.RemoveNode(node)
        raise ValueError(f"{path}: expected an uncertainty map on the voxel grid of volume "
                         f"'{referenceVolume.GetName()}', found one that is not ({mismatch}); nothing imported")
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(UNCERTAINTY_COLOURS)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    node.SetAttribute(mrml.RESULT_ATTRIBUTE, str(modelPath) or "1")
    if referenceVolume.GetTransformNodeID():
        node.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
    mrml.placeBeside(node, referenceVolume)
    return node


def _nameAndColourSegments(segmentation, labels: dict[str, int]) -> None:
    classes = sorted(((value, name) for name, value in labels.items() if value != 0))
    order = {value: i for i, (value, _) in enumerate(classes)}
    byValue = dict(classes)
    seg = segmentation.GetSegmentation()
    present = {}
    for i in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(i)
        present[segment.GetLabelValue()] = seg.GetNthSegmentID(i)
    for value, segmentId in present.items():
        segment = seg.GetSegment(segmentId)
        className = byValue.get(value, f"Label {value}")
        segment.SetName(className)
        segment.SetColor(*classColour(className, order.get(value, len(order) + value)))
    for value, className in classes:
        if value not in present:
            segmentId = seg.AddEmptySegment("", className, classColour(className, order[value]))
            present[value] = segmentId
    for index, value in enumerate(sorted(present)):
        seg.SetSegmentIndex(present[value], index)


def labelArray(segmentationNode, referenceVolume, segmentationsLogic):
    """The segmentation as a label array (z, y, x) on ``referenceVolume``'s grid, value = segment index + 1.

    Used by tests and by the batch script's checks; a temporary labelmap node is removed again.
    """
    import slicer

    scene = referenceVolume.GetScene()
    with mrml.TemporaryNodes(scene):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        ids = [segmentId for segmentId, _ in mrml.segmentNames(segmentationNode)]
        segmentationsLogic.ExportSegmentsToLabelmapNode(segmentationNode, mrml.stringArray(ids), labelmap,
                                                        referenceVolume,
                                                        slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        image = labelmap.GetImageData()
        dims = image.GetDimensions()
        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0]).copy()
