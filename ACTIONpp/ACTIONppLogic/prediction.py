"""Import a predicted label map as a NEW segmentation node: one named, coloured segment per class.

The user's nodes are never touched: the node gets a unique name, the input volume as reference geometry (and the
volume's parent transform), and optionally a closed-surface representation for 3D display.
"""

from __future__ import annotations

import re

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


def importPrediction(labelPath, labels: dict[str, int], referenceVolume, segmentationsLogic, name: str | None = None,
                     createSurface: bool = True):
    """Read ``labelPath`` (label values as in ``labels``: class name -> value, background 0) into a new segmentation.

    Every class gets a segment, in label order, even when the prediction has no voxel of it (so that the class list
    is the same for every result). Values missing from ``labels`` become segments called ``Label <value>``.
    Returns the segmentation node.
    """
    scene = referenceVolume.GetScene()
    with mrml.TemporaryNodes(scene) as temporary:  # the labelmap read from file and its helper nodes
        labelmap = mrml.readVolume(scene, labelPath, name="ACTIONpp prediction (temporary)", labelmap=True)
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
    if createSurface:
        segmentation.CreateClosedSurfaceRepresentation()
    return segmentation


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
