"""Curation check and export of Slicer volumes + segmentations to the engine's dataset layout (nnU-Net raw).

A *case* is ``(volume node, segmentation node or None)``: with a segmentation it is labeled, without one it is
unlabeled. Segment *names* become classes, matched by name (case and surrounding spaces ignored), never by segment
order, and numbered 1.. in the order they are first seen (the first labeled segmentation's order); background is 0.

Layout written::

    DATASET/dataset.json            channel_names, labels (name -> value), numTraining, file_ending ".nrrd"
    DATASET/imagesTr/<case>_0000.nrrd   every case
    DATASET/labelsTr/<case>.nrrd        labeled cases only

Images and label maps are written through ``vtkMRMLVolumeArchetypeStorageNode``; label maps come from
``ExportSegmentsToLabelmapNode`` with explicit segment IDs (ordered by class value) and the volume as reference
geometry, so every label map lies voxel for voxel on its image grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import slicer
from vtk.util.numpy_support import vtk_to_numpy

from . import gridcheck, mrml

ERROR = "error"
WARNING = "warning"
BACKGROUND = "background"


@dataclass(frozen=True)
class Problem:
    """One finding of the curation check. ``error`` blocks training; ``warning`` is shown but does not."""

    severity: str
    message: str
    subject: str = ""
    """Name of the volume or segmentation concerned ("" for the whole selection)."""

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass
class CurationReport:
    """What the check found for a selection of cases."""

    cases: list
    classes: dict[str, int] = field(default_factory=dict)
    """Class name -> label value, background excluded, in label order."""
    labeled: int = 0
    unlabeled: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def canTrain(self) -> bool:
        return not self.errors

    def labels(self) -> dict[str, int]:
        """The dataset.json ``labels`` entry: background 0, then the classes."""
        return {BACKGROUND: 0, **self.classes}


class CurationError(ValueError):
    """The selection has errors; ``problems`` lists them and the message is the first one."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0].message}{more}" if problems else "invalid selection")


@dataclass
class ExportResult:
    folder: Path
    labels: dict[str, int]
    caseIds: dict[str, str]
    """Case id -> volume node name."""
    labeledCaseIds: list[str]
    unlabeledCaseIds: list[str]


def _key(name: str) -> str:
    return name.strip().casefold()


_LAYER_COUNTS: dict = {}
"""(labelmap address, modification time) -> voxel count per label value; the check runs on every GUI change and a
full pass over a large labelmap takes a noticeable fraction of a second, so each layer is counted once per edit."""


def _layerCounts(image):
    import numpy as np

    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        return None
    key = (image.GetAddressAsString("vtkOrientedImageData"), image.GetMTime(), scalars.GetMTime())
    counts = _LAYER_COUNTS.get(key)
    if counts is None:
        values = vtk_to_numpy(scalars).ravel()
        counts = np.bincount(values.astype(np.int64, copy=False)) if values.size and values.min() >= 0 else \
            dict(zip(*np.unique(values, return_counts=True)))
        if len(_LAYER_COUNTS) > 256:
            _LAYER_COUNTS.clear()
        _LAYER_COUNTS[key] = counts
    return counts


def segmentVoxelCount(segmentationNode, segmentId: str) -> int | None:
    """Painted voxels of one segment in its binary labelmap (None when the segmentation is not labelmap-based)."""
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentId)
    if segment is None:
        return None
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if image is None:
        surface = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
        return None if surface is None else (1 if surface.GetNumberOfPoints() > 0 else 0)
    counts = _layerCounts(image)
    if counts is None:
        return 0
    value = segment.GetLabelValue()
    if isinstance(counts, dict):
        return int(counts.get(value, 0))
    return int(counts[value]) if 0 <= value < len(counts) else 0


def _volumeProblem(volume) -> str:
    """Why ``volume`` cannot be used at all ("" when it can)."""
    name = volume.GetName()
    kind = gridcheck.nonScalarKind(volume)
    if kind:
        return f"Volume '{name}' is a {kind[len('vtkMRML'):-len('Node')]} (several values per voxel); expected a " \
               "scalar volume (extract one component or one frame first)."
    image = volume.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        return f"Volume '{name}' has no image data."
    if image.GetNumberOfScalarComponents() != 1:
        return (f"Volume '{name}' has {image.GetNumberOfScalarComponents()} components per voxel (colour or vector "
                "image); expected a scalar image.")
    transform = gridcheck.nonLinearTransform(volume)
    if transform is not None:
        return (f"Volume '{name}' is under the non-linear transform '{transform.GetName()}': its voxels cannot be "
                "exported on a grid; harden the transform first (Data module: right-click > Harden transform).")
    return ""


def _segmentationProblems(volume, segmentation, problems: list[Problem]) -> dict[str, str] | None:
    """Check one labeled case; return its classes (normalised name -> name), or None when it has errors."""
    vname, sname = volume.GetName(), segmentation.GetName()

    def error(message):
        problems.append(Problem(ERROR, message, sname))

    names = mrml.segmentNames(segmentation)
    if not names:
        error(f"Segmentation '{sname}' of '{vname}' has no segments.")
        return None
    keys: dict[str, str] = {}
    ok = True
    for _, name in names:
        k = _key(name)
        if k in keys:
            error(f"Segmentation '{sname}' has two segments named '{name}'; class names must be unique.")
            ok = False
        elif k == BACKGROUND:
            error(f"Segmentation '{sname}' has a segment named '{name}'; background is label 0 and is everything "
                  "outside the segments. Rename or delete it.")
            ok = False
        keys.setdefault(k, name)
    transform = gridcheck.nonLinearTransform(segmentation)
    if transform is not None:
        error(f"Segmentation '{sname}' is under the non-linear transform '{transform.GetName()}': its geometry cannot "
              "be mapped onto the volume; harden the transform first.")
        return None
    counts = {segmentId: segmentVoxelCount(segmentation, segmentId) for segmentId, _ in names}
    if all(c == 0 for c in counts.values()):
        error(f"Segmentation '{sname}' of '{vname}' is empty (no painted voxel).")
        return None
    mismatch = gridcheck.referenceGridMismatch(volume, segmentation)
    if mismatch:
        error(f"Segmentation '{sname}' was drawn on another grid than volume '{vname}': {mismatch}. Pick the "
              "segmentation made on this volume (or set its geometry to this volume in the Segment Editor).")
        return None
    for segmentId, name in names:
        if counts[segmentId] == 0:
            problems.append(Problem(WARNING, f"Segment '{name}' of '{sname}' is empty: '{vname}' is taken to contain "
                                             f"no '{name}'.", sname))
    if volume.GetTransformNodeID() == segmentation.GetTransformNodeID():
        segBounds, volBounds = mrml.segmentationRASBounds(segmentation), mrml.volumeRASBounds(volume)
        if not mrml.boundsIntersect(segBounds, volBounds):
            error(f"Segmentation '{sname}' does not overlap volume '{vname}': its geometry cannot be mapped onto the "
                  "volume. Pick the segmentation made on this volume.")
            return None
        if not mrml.boundsInside(segBounds, volBounds, tolerance=1e-3 + max(volume.GetSpacing())):
            problems.append(Problem(WARNING, f"Segmentation '{sname}' reaches outside volume '{vname}'; the part "
                                             "outside is cropped.", sname))
    return keys if ok else None


def _namesDisagree(reference: tuple[str, dict[str, str]], sname: str, vname: str, keys: dict[str, str]) -> str:
    """The message when a labeled case's classes differ from the first labeled case's ("" when they agree)."""
    refName, refKeys = reference
    missing = [refKeys[k] for k in refKeys if k not in keys]
    extra = [keys[k] for k in keys if k not in refKeys]
    if not missing and not extra:
        return ""
    parts = (["lacks " + ", ".join(f"'{n}'" for n in missing)] if missing else []) + \
        (["has extra " + ", ".join(f"'{n}'" for n in extra)] if extra else [])
    return (f"Segment names disagree: '{sname}' ({vname}) {' and '.join(parts)} compared with '{refName}'. Every "
            "labeled volume needs the same segment names (add an empty segment for a class that is absent).")


def checkCuration(cases) -> CurationReport:
    """Check a selection of ``(volume, segmentation or None)`` and list every problem found.

    Errors: nothing selected, a volume without image data, a vector/tensor/4D volume or one with several components,
    a volume under a non-linear transform, a volume listed twice, an unreviewed model result used as labels, a
    segmentation with no segments / duplicate names /
    a segment called "background" / no painted voxel, one under a non-linear transform, one drawn on another grid
    than its volume (:func:`gridcheck.referenceGridMismatch`) or not overlapping it, segment names that differ between
    labeled volumes, no labeled volume. Warnings: empty segments, segments reaching outside their volume, a volume
    under a linear transform (exported without it), no unlabeled volume, one segmentation used for several volumes.
    """
    cases = list(cases)
    report = CurationReport(cases=cases)
    problems = report.problems
    if not cases:
        problems.append(Problem(ERROR, "No volume selected: add volumes to the table and give labeled ones a "
                                       "segmentation."))
        return report
    seenVolumes: set[str] = set()
    seenSegmentations: dict[str, str] = {}
    reference: tuple[str, dict[str, str]] | None = None  # first labeled case: (segmentation name, classes)
    for volume, segmentation in cases:
        if volume is None:
            problems.append(Problem(ERROR, "A row has no volume."))
            continue
        vname = volume.GetName()
        if volume.GetID() in seenVolumes:
            problems.append(Problem(ERROR, f"Volume '{vname}' is listed twice.", vname))
            continue
        seenVolumes.add(volume.GetID())
        message = _volumeProblem(volume)
        if message:
            problems.append(Problem(ERROR, message, vname))
            continue
        if volume.GetParentTransformNode() is not None:
            problems.append(Problem(WARNING, f"Volume '{vname}' is under a linear transform: it is exported on its own "
                                             "voxel grid, without the transform.", vname))
        if segmentation is None:
            report.unlabeled += 1
            continue
        sname = segmentation.GetName()
        if mrml.isModelResult(segmentation):
            problems.append(Problem(ERROR, f"Segmentation '{sname}' is a model's result nobody has reviewed: correct "
                                           "it in the Segment Editor and press 'Accept as labels', or use the volume "
                                           "as unlabeled.", sname))
            continue
        if segmentation.GetID() in seenSegmentations:
            problems.append(Problem(WARNING, f"Segmentation '{sname}' labels both "
                                             f"'{seenSegmentations[segmentation.GetID()]}' and '{vname}'.", sname))
        seenSegmentations[segmentation.GetID()] = vname
        keys = _segmentationProblems(volume, segmentation, problems)
        if keys is None:
            continue
        if reference is None:
            reference = (sname, keys)
        elif _namesDisagree(reference, sname, vname, keys):
            problems.append(Problem(ERROR, _namesDisagree(reference, sname, vname, keys), sname))
            continue
        report.labeled += 1
    if reference is not None:
        report.classes = {name: i + 1 for i, name in enumerate(reference[1].values())}
    if report.labeled == 0:
        first = "No labeled volume: choose a segmentation for at least one volume." if not report.errors else \
            "No usable labeled volume (see the errors above)."
        problems.append(Problem(ERROR, first))
    elif report.unlabeled == 0:
        problems.append(Problem(WARNING, "No unlabeled volume: semi-supervised methods have no extra images to "
                                         "learn from."))
    return report


def _caseIds(cases) -> list[str]:
    ids, used = [], set()
    for volume, _ in cases:
        stem = mrml.safeFileStem(volume.GetName())
        candidate, i = stem, 2
        while candidate.casefold() in used:
            candidate = f"{stem}_{i}"
            i += 1
        used.add(candidate.casefold())
        ids.append(candidate)
    return ids


def exportDataset(cases, folder, segmentationsLogic, datasetName: str = "ACTIONpp",
                  channelName: str = "image") -> ExportResult:
    """Write the selection as an nnU-Net raw dataset in ``folder`` (created; must not hold files already).

    Raises :class:`CurationError` when :func:`checkCuration` finds errors, ``FileExistsError`` when ``folder`` is
    not empty, ``OSError`` when a file cannot be written or a label map comes out empty.
    """
    cases = list(cases)
    report = checkCuration(cases)
    if report.errors:
        raise CurationError(report.errors)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: expected an empty or new folder for the dataset, found files in it")
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)

    classKeys = {_key(name): value for name, value in report.classes.items()}
    caseIds = _caseIds(cases)
    labeled, unlabeled = [], []
    for caseId, (volume, segmentation) in zip(caseIds, cases):
        mrml.writeVolume(volume, folder / "imagesTr" / f"{caseId}_0000.nrrd")
        if segmentation is None:
            unlabeled.append(caseId)
            continue
        _exportLabelmap(volume, segmentation, classKeys, folder / "labelsTr" / f"{caseId}.nrrd", segmentationsLogic)
        labeled.append(caseId)

    labels = report.labels()
    datasetJson = {
        "name": datasetName,
        "description": "Exported from 3D Slicer by the ACTIONpp module",
        "channel_names": {"0": channelName},
        "labels": labels,
        "numTraining": len(caseIds),
        "file_ending": ".nrrd",
        "actionpp": {
            "labeled": labeled,
            "unlabeled": unlabeled,
            "volumes": {caseId: volume.GetName() for caseId, (volume, _) in zip(caseIds, cases)},
        },
    }
    with open(folder / "dataset.json", "w", encoding="utf-8") as f:
        json.dump(datasetJson, f, indent=2)
    return ExportResult(folder, labels, {c: v.GetName() for c, (v, _) in zip(caseIds, cases)}, labeled, unlabeled)


def _exportLabelmap(volume, segmentation, classKeys: dict[str, int], path: Path, segmentationsLogic) -> None:
    """Label map of ``segmentation`` on ``volume``'s grid, value = class value, written to ``path``."""
    byValue = sorted(((classKeys[_key(name)], segmentId) for segmentId, name in mrml.segmentNames(segmentation)))
    # ExportSegmentsToLabelmapNode gives the i-th listed segment the value i + 1; listing the segments by class
    # value makes that value the class value (every labeled case has every class, checked above).
    if [v for v, _ in byValue] != list(range(1, len(byValue) + 1)):
        raise CurationError([Problem(ERROR, f"Segmentation '{segmentation.GetName()}' does not have every class "
                                            f"{sorted(classKeys)}.", segmentation.GetName())])
    scene = volume.GetScene()
    with mrml.TemporaryNodes(scene):  # the labelmap, its display node, the colour table the export makes for it
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{volume.GetName()} ACTIONpp export")
        ok = segmentationsLogic.ExportSegmentsToLabelmapNode(
            segmentation, mrml.stringArray([segmentId for _, segmentId in byValue]), labelmap, volume,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not ok or labelmap.GetImageData() is None:
            raise OSError(f"{path}: could not map segmentation '{segmentation.GetName()}' onto '{volume.GetName()}'")
        scalars = labelmap.GetImageData().GetPointData().GetScalars()
        if scalars is None or not vtk_to_numpy(scalars).any():
            raise OSError(f"{path}: segmentation '{segmentation.GetName()}' has no voxel inside volume "
                          f"'{volume.GetName()}'")
        mrml.writeVolume(labelmap, path)
