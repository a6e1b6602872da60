"""The two folders Studio touches, and how their content gets into the MRML scene.

``--data`` is only read; ``--work`` is where everything is written (datasets, runs, predictions, downloads,
phantoms). The page never sends a path: cases, models and results are chosen among lists this module built, and every
path derived from them is checked with :func:`confine` before it is read or written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "ACTIONpp"
"""The Slicer module folder of this clone (holds ``ACTIONppLogic``; Studio reuses it unchanged)."""

VOLUME_ENDINGS = (".nrrd", ".nii.gz", ".nii", ".mha", ".mhd")
SEGMENTATION_ENDING = ".seg.nrrd"


class WorkspaceError(ValueError):
    """A one-line problem with ``--data`` / ``--work`` (``<path>: expected <what>, found <what>``)."""


def ensureLogicOnPath() -> None:
    """Make ``import ACTIONppLogic`` work (the module folder of this clone); raise if it is missing."""
    if not (MODULE_DIR / "ACTIONppLogic").is_dir():
        raise WorkspaceError(f"{MODULE_DIR}: expected the ACTIONpp module folder (ACTIONppLogic), found none; "
                             "install actionpp from a clone (pip install -e '.[web]')")
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))


def confine(path, roots) -> Path:
    """``path`` resolved, if it lies inside one of ``roots`` (resolved, symlinks followed); else WorkspaceError."""
    resolved = Path(path).resolve()
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    raise WorkspaceError(f"{path}: expected a path inside {' or '.join(str(r) for r in roots)}, found one outside")


@dataclass
class Folders:
    """The data folder (read only; None: phantoms made in the work folder) and the work folder (written)."""

    data: Path
    work: Path

    @property
    def roots(self) -> tuple[Path, Path]:
        return (self.data, self.work)


def prepareFolders(data, work, phantomCases: int = 6, phantomLabeled: int = 2,
                   phantomSize: tuple[int, int, int] | None = None) -> Folders:
    """Check ``data`` (an existing folder) and create ``work``; with no ``data``, cardiac phantoms are written to
    ``WORK/phantoms`` (once: an existing one is reused) and used as the data folder."""
    work = Path(work).expanduser()
    if work.exists() and not work.is_dir():
        raise WorkspaceError(f"--work {work}: expected a folder, found a file")
    work.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = work / "phantoms"
        if not (data / "dataset.json").is_file():
            from actionpp.data.phantoms import make_phantoms

            make_phantoms("cardiac", phantomCases, phantomLabeled, data, seed=0, test_cases=0, size=phantomSize)
    data = Path(data).expanduser()
    if not data.is_dir():
        raise WorkspaceError(f"--data {data}: expected an existing folder, found {'a file' if data.exists() else 'nothing'}")
    return Folders(data.resolve(), work.resolve())


def _ending(name: str) -> str | None:
    name = name.lower()
    if name.endswith(SEGMENTATION_ENDING):
        return SEGMENTATION_ENDING
    return next((e for e in VOLUME_ENDINGS if name.endswith(e)), None)


def findCases(data: Path) -> list[tuple[str, Path, Path | None, str]]:
    """``[(name, image, labels or None, kind)]`` of a data folder, in name order.

    ``kind`` is ``"labelmap"`` (nnU-Net raw: ``dataset.json``, ``imagesTr/<case>_0000.*``, ``labelsTr/<case>.*``)
    or ``"segmentation"`` (a plain folder of volumes, each with an optional ``<stem>.seg.nrrd`` beside it).
    """
    if (data / "dataset.json").is_file():
        images = data / "imagesTr"
        if not images.is_dir():
            raise WorkspaceError(f"{data}: expected imagesTr/ beside dataset.json, found none")
        cases = []
        for image in sorted(images.iterdir()):
            ending = _ending(image.name)
            if ending is None or ending == SEGMENTATION_ENDING or not image.name[: -len(ending)].endswith("_0000"):
                continue
            name = image.name[: -len(ending) - len("_0000")]
            label = next((p for p in (data / "labelsTr").glob(f"{name}.*") if _ending(p.name)), None)
            cases.append((name, image, label, "labelmap"))
    else:
        files = sorted(p for p in data.iterdir() if p.is_file() and _ending(p.name))
        segmentations = {p.name[: -len(SEGMENTATION_ENDING)]: p for p in files if _ending(p.name) == SEGMENTATION_ENDING}
        cases = [(p.name[: -len(_ending(p.name))], p, segmentations.get(p.name[: -len(_ending(p.name))]),
                  "segmentation") for p in files if _ending(p.name) != SEGMENTATION_ENDING]
    if not cases:
        raise WorkspaceError(f"--data {data}: expected volumes ({', '.join(VOLUME_ENDINGS)}) or an nnU-Net raw "
                             "dataset (dataset.json, imagesTr/), found none")
    return cases


def datasetLabels(data: Path) -> dict[str, int]:
    """Class name -> value of an nnU-Net raw dataset (``dataset.json``'s ``labels``)."""
    import json

    labels = json.loads((data / "dataset.json").read_text(encoding="utf-8")).get("labels", {})
    return {str(name): int(value) for name, value in labels.items()}


LABELS_FILE_ATTRIBUTE = "ACTIONppStudio.LabelsFile"
"""Set on a segmentation read from, or saved to, ``WORK/labels``: the file it may overwrite when saved again."""


def labelsFile(folders: Folders, caseName: str) -> Path:
    """Where the page saves the labels of a case: ``WORK/labels/<case>.seg.nrrd`` (never inside ``--data``)."""
    ensureLogicOnPath()
    from ACTIONppLogic import mrml

    return confine(folders.work / "labels" / f"{mrml.safeFileStem(caseName)}{SEGMENTATION_ENDING}", (folders.work,))


def saveLabels(segmentation, folders: Folders, caseName: str) -> Path:
    """Write a case's labels to :func:`labelsFile`. A file already there is replaced only when it is the one this
    node was read from or saved to (the page shows its content); any other is left alone (WorkspaceError)."""
    ensureLogicOnPath()
    from ACTIONppLogic import mrml

    path = labelsFile(folders, caseName)
    if path.exists() and segmentation.GetAttribute(LABELS_FILE_ATTRIBUTE) != str(path):
        raise WorkspaceError(f"{path}: expected no labels file there, found one this page did not load; "
                             "not overwritten (move it away, or restart Studio to load and review it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    mrml.writeSegmentation(segmentation, path)
    segmentation.SetAttribute(LABELS_FILE_ATTRIBUTE, str(path))
    return path


def loadCases(context, folders: Folders) -> list:
    """Read every case of ``folders.data`` into ``context.scene``: ``[(volume node, segmentation node or None)]``.

    Label maps become segmentations named ``<case> segmentation`` (one segment per class of ``dataset.json``) made on
    their volume, as the Segment Editor would make them, so ``ModuleLogic.guessSegmentation`` finds them. Labels saved
    from the page (``WORK/labels/<case>.seg.nrrd``, :func:`saveLabels`) replace the data folder's for that case.
    """
    ensureLogicOnPath()
    from ACTIONppLogic import mrml, prediction

    found = findCases(folders.data)
    labels = datasetLabels(folders.data) if found and found[0][3] == "labelmap" else {}
    cases = []
    for name, image, label, kind in found:
        volume = mrml.readVolume(context.scene, confine(image, folders.roots), name=name)
        segmentation, saved = None, labelsFile(folders, name)
        if saved.is_file():
            segmentation = mrml.readSegmentation(context.scene, saved, name=f"{name} segmentation")
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            segmentation.SetAttribute(LABELS_FILE_ATTRIBUTE, str(saved))
        elif label is not None and kind == "labelmap":
            segmentation = prediction.importPrediction(confine(label, folders.roots), labels, volume,
                                                       context.segmentationsLogic, name=f"{name} segmentation",
                                                       createSurface=False)
            segmentation.RemoveAttribute(mrml.RESULT_ATTRIBUTE)  # ground truth, not a model's result
        elif label is not None:
            segmentation = mrml.readSegmentation(context.scene, confine(label, folders.roots),
                                                 name=f"{name} segmentation")
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        cases.append((volume, segmentation))
    return cases
