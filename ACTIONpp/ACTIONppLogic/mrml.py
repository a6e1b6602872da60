"""MRML plumbing shared by export, import and the batch script.

Works with the Slicer application and with the ``slicer-core`` wheel alone. Files are read and written only through
MRML storage nodes, so origin, spacing and direction survive exactly as Slicer itself would save them.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

import slicer
import vtk


@dataclass
class SceneContext:
    """A scene and the module logics the ACTIONpp logic needs.

    In Slicer: ``SceneContext(slicer.mrmlScene, slicer.modules.segmentations.logic())``. Outside Slicer,
    :func:`createHeadlessScene` builds one from the ``slicer-core`` classes.
    """

    scene: Any
    segmentationsLogic: Any
    keepAlive: tuple = ()
    """Logic objects that must live as long as the scene (headless only)."""


def createHeadlessScene() -> SceneContext:
    """A new scene wired to the application, colour, volumes and segmentations logics (no ``slicer.app`` needed).

    Registering the colour logic gives labelmap display nodes their default colour table, and the converter rules make
    closed-surface conversion available, as in the application.
    """
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    # The colour logic looks for colour files under <home>/<share>/ColorFiles and logs an error when there is no
    # home: give it an empty one (the wheel ships no colour files; the built-in tables are generated in code).
    home = os.path.join(tempfile.gettempdir(), "ACTIONpp-slicer-core-home")
    os.makedirs(os.path.join(home, "share", "Slicer", "ColorFiles"), exist_ok=True)
    appLogic.SetHomeDirectory(home)
    appLogic.SetShareDirectory(os.path.join("share", "Slicer"))
    appLogic.SetMRMLScene(scene)
    logics = []
    for name, cls in (("Colors", slicer.vtkSlicerColorLogic), ("Volumes", slicer.vtkSlicerVolumesLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        appLogic.SetModuleLogic(name, logic)
        logics.append(logic)
    # The segmentations logic registers the converter rules again each time it is given a scene, so a process that
    # makes many scenes (the tests) would pile up duplicates: it gets no scene here (the methods used are static) and
    # the rules are registered once instead.
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLApplicationLogic(appLogic)
    appLogic.SetModuleLogic("Segmentations", segmentationsLogic)
    registerSegmentationConverterRules()
    # The application's Segmentations module registers the Segment Editor's parameter node class with the scene
    # (Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.cxx, RegisterNodes); without that
    # scene the logic above cannot, so register it here.
    scene.RegisterNodeClass(slicer.vtkMRMLSegmentEditorNode())
    return SceneContext(scene, segmentationsLogic, keepAlive=(appLogic, *logics))


def registerSegmentationConverterRules() -> None:
    """Register labelmap <-> closed-surface conversion rules once (the application does this at start-up).

    Under ``slicer-core`` the factory starts empty, and ``CreateClosedSurfaceRepresentation()`` returns False
    until these rules exist. Calling this inside Slicer is harmless: rules already present are not added again.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    present = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for cls in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if cls.__name__ not in present:
            factory.RegisterConverterRule(cls())


RESULT_ATTRIBUTE = "ACTIONpp.ModelResult"
"""Node attribute set on every segmentation the module creates from a model's prediction (value: the model's run
folder). Such a node is never proposed as training labels until a person reviews it (see ``acceptAsLabels``)."""


def isModelResult(node) -> bool:
    """True for a segmentation made by a model and not yet accepted as labels."""
    return node is not None and bool(node.GetAttribute(RESULT_ATTRIBUTE))


def placeBeside(node, sibling) -> None:
    """Put ``node`` in the subject hierarchy folder (patient / study) that holds ``sibling``, as Slicer's own
    modules do with results.

    In the application the subject hierarchy plugins give every new data node an item; under ``slicer-core`` alone
    nothing does, so a missing item is created here (the sibling's item is never created or moved).
    """
    scene = node.GetScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if sh is None:
        return
    siblingItem = sh.GetItemByDataNode(sibling)
    parent = sh.GetItemParent(siblingItem) if siblingItem else sh.GetSceneItemID()
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent)
    else:
        sh.CreateItem(parent, node)


SEGMENT_EDITOR_TAG = "ACTIONpp"
"""Singleton tag of the panel's own Segment Editor parameter node (the Segment Editor module uses "SegmentEditor")."""


def segmentEditorNode(scene):
    """The panel's ``vtkMRMLSegmentEditorNode``: found by its singleton tag, or created and added (as Slicer's
    Modules/Scripted/SegmentEditor/SegmentEditor.py ``selectParameterNode`` does for the module, under its own tag so
    the two editors do not share an active effect or segment)."""
    node = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
        node.UnRegister(None)
        node.SetSingletonTag(SEGMENT_EDITOR_TAG)
        node = scene.AddNode(node)
    return node


def uniqueName(scene, base: str) -> str:
    """``base`` if no node has that name yet, else ``base_1``, ``base_2``..."""
    if scene.GetFirstNodeByName(base) is None:
        return base
    i = 1
    while scene.GetFirstNodeByName(f"{base}_{i}") is not None:
        i += 1
    return f"{base}_{i}"


def newSegmentationFor(scene, volume, like=None):
    """A new, empty segmentation node on ``volume`` (reference geometry set, as the Segment Editor makes one), named
    ``<volume> segmentation`` (made unique) and placed beside the volume in the subject hierarchy.

    ``like`` (another case's segmentation): the new one gets the same segments (IDs, names, colours), empty, so
    what is painted there labels the dataset's classes."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", uniqueName(scene, f"{volume.GetName()} segmentation"))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    if like is not None:
        source, target = like.GetSegmentation(), node.GetSegmentation()
        for segmentId, name in segmentNames(like):
            target.AddEmptySegment(segmentId, name, source.GetSegment(segmentId).GetColor())
    placeBeside(node, volume)
    return node


def safeFileStem(name: str) -> str:
    """A node name turned into a portable file stem (letters, digits, ``-`` and ``_``)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_")
    return stem or "case"


class TemporaryNodes:
    """Context manager: nodes added to ``scene`` inside the block are removed at its end, except those kept.

    Storage nodes, labelmaps, display nodes and colour tables made along the way by reading, exporting or importing
    would otherwise stay in the user's scene.
    """

    def __init__(self, scene):
        self.scene = scene
        self._before = set()
        self._keep = set()

    def _ids(self) -> list[str]:
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]

    def __enter__(self) -> "TemporaryNodes":
        self._before = set(self._ids())
        return self

    def keep(self, node) -> None:
        """Keep ``node`` and its display nodes."""
        self._keep.add(node.GetID())
        if hasattr(node, "GetNumberOfDisplayNodes"):
            for i in range(node.GetNumberOfDisplayNodes()):
                self._keep.add(node.GetNthDisplayNodeID(i))

    def __exit__(self, *exc) -> None:
        for nodeId in self._ids():
            if nodeId not in self._before and nodeId not in self._keep:
                node = self.scene.GetNodeByID(nodeId)
                if node is not None:
                    self.scene.RemoveNode(node)


# ---- storage-node I/O ------------------------------------------------------------------------------------------
def _storageNode(scene, cls, path: str):
    node = scene.AddNewNodeByClass(cls)
    node.SetFileName(os.fspath(path))
    return node


def writeVolume(volumeNode, path, compress: bool = True) -> None:
    """Write a scalar or labelmap volume (NRRD/NIfTI by extension) with its geometry; raise OSError on failure.

    A temporary storage node is used so that the user's node keeps its own storage settings.
    """
    scene = volumeNode.GetScene()
    storage = _storageNode(scene, "vtkMRMLVolumeArchetypeStorageNode", path)
    try:
        storage.SetUseCompression(1 if compress else 0)
        if not storage.WriteData(volumeNode):
            raise OSError(f"{path}: could not write volume '{volumeNode.GetName()}'")
    finally:
        scene.RemoveNode(storage)


def readVolume(scene, path, name: str | None = None, labelmap: bool = False):
    """Read an image file into a new scalar (or labelmap) volume node with display and storage nodes."""
    path = os.fspath(path)
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name or _stem(path))
    storage = _storageNode(scene, "vtkMRMLVolumeArchetypeStorageNode", path)
    storage.SetSingleFile(1)
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise OSError(f"{path}: could not read an image")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def readSegmentation(scene, path, name: str | None = None):
    """Read a ``.seg.nrrd`` (or labelmap / surface file Slicer reads as a segmentation) into a new node."""
    path = os.fspath(path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or _stem(path))
    storage = _storageNode(scene, "vtkMRMLSegmentationStorageNode", path)
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise OSError(f"{path}: could not read a segmentation")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def writeSegmentation(segmentationNode, path) -> None:
    """Write a segmentation as ``.seg.nrrd`` (segment names, colours and geometry kept)."""
    scene = segmentationNode.GetScene()
    storage = _storageNode(scene, "vtkMRMLSegmentationStorageNode", path)
    try:
        storage.SetUseCompression(1)
        if not storage.WriteData(segmentationNode):
            raise OSError(f"{path}: could not write segmentation '{segmentationNode.GetName()}'")
    finally:
        scene.RemoveNode(storage)


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".seg.nrrd", ".nii.gz", ".seg.nii.gz"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


# ---- geometry helpers ------------------------------------------------------------------------------------------
def volumeRASBounds(volumeNode) -> list[float]:
    bounds = [0.0] * 6
    volumeNode.GetRASBounds(bounds)
    return bounds


def segmentationRASBounds(segmentationNode) -> list[float]:
    bounds = [0.0] * 6
    segmentationNode.GetRASBounds(bounds)
    return bounds


def boundsIntersect(a, b) -> bool:
    """Axis-aligned boxes ``[xmin, xmax, ymin, ymax, zmin, zmax]`` overlap (touching counts)."""
    if a[0] > a[1] or b[0] > b[1]:
        return False
    return all(a[2 * i] <= b[2 * i + 1] and b[2 * i] <= a[2 * i + 1] for i in range(3))


def boundsInside(inner, outer, tolerance: float = 1e-3) -> bool:
    return all(inner[2 * i] >= outer[2 * i] - tolerance and inner[2 * i + 1] <= outer[2 * i + 1] + tolerance
               for i in range(3))


def stringArray(values) -> vtk.vtkStringArray:
    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def segmentNames(segmentationNode) -> list[tuple[str, str]]:
    """``[(segment ID, name)]`` in the segmentation's order."""
    segmentation = segmentationNode.GetSegmentation()
    return [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName())
            for i in range(segmentation.GetNumberOfSegments())]
