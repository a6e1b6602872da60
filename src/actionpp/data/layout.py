"""Dataset layouts: nnU-Net v2 raw, SSL4MIS ACDC h5 and UA-MT LA h5, loaded into one :class:`Dataset`.

:func:`load_dataset` detects the layout from marker files, reads and validates every volume and splits the training
cases into labeled and unlabeled ones; with ``hold=False`` each volume is released after its check and read again
from its file when used (the trainer's way: memory does not grow with the number of volumes, see ``data/volumes.py``).
Nothing in the dataset folder is written or deleted.

All arrays are ``(Z, Y, X)``; geometry is in ITK ``(x, y, z)`` order (see :mod:`actionpp.data.io`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from actionpp.data.io import (
    IMAGE_SUFFIXES,
    DataError,
    Geometry,
    is_image_file,
    one_line,
    read_image,
    split_suffix,
)

from actionpp.data.case import Case  # defined there, imported from here by most callers
from actionpp.data.entries import check_distinct_cases, listed_cases

FORMATS = ("nnunet", "acdc-h5", "la-h5")
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(eq=False)
class Dataset:
    """A loaded dataset.

    Attributes:
        root: the dataset folder.
        format: ``"nnunet"``, ``"acdc-h5"`` or ``"la-h5"``.
        labels: class name -> value, including background 0; values are ``0..C-1``.
        labeled: training cases with labels.
        unlabeled: training cases without labels (including labeled cases demoted by ``labeled_cases``).
        val: labeled validation cases (only the ACDC layout has a ``val.list``; empty otherwise).
        test: held-out cases; ``label`` is None where the layout has no test label.
        file_ending: ending that predictions for this dataset are written with (``dataset.json``'s ``file_ending``
            for nnU-Net; ``".nii.gz"`` for the h5 layouts).
    """

    root: Path
    format: str
    labels: dict[str, int]
    labeled: list[Case] = field(default_factory=list)
    unlabeled: list[Case] = field(default_factory=list)
    val: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)
    file_ending: str = ".nii.gz"

    @property
    def num_classes(self) -> int:
        """C, the number of classes including background."""
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by value (index ``c`` is the name of label value ``c``)."""
        return [name for name, _ in sorted(self.labels.items(), key=lambda kv: kv[1])]

    @property
    def median_spacing(self) -> tuple[float, float, float]:
        """Per-axis median voxel spacing over labeled + unlabeled cases, ITK ``(sx, sy, sz)`` order."""
        cases = self.labeled + self.unlabeled
        if not cases:
            return (1.0, 1.0, 1.0)
        sp = np.median(np.array([c.geometry.spacing for c in cases], dtype=np.float64), axis=0)
        return tuple(float(v) for v in sp)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# shared helpers (also used by h5formats)
# ----------------------------------------------------------------------------------------------------------------
def check_labels_mapping(labels: Any, source: str | Path) -> dict[str, int]:
    """Validate a ``{name: value}`` class mapping and return it ordered by value.

    Values must be integers forming ``0..C-1`` with ``C >= 2``.

    Raises:
        DataError: naming ``source``.
    """
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{source}: expected 'labels' as a mapping {{name: integer value}}, found {labels!r}")
    out: dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DataError(f"{source}: expected one integer value per label (region-based labels are not "
                            f"supported), found {name!r}: {value!r}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(f"{source}: expected 'labels' as {{name: integer value}}, found {name!r}: {value!r}")
        out[str(name)] = int(value)
    values = sorted(out.values())
    if values != list(range(len(values))) or len(values) < 2:
        raise DataError(f"{source}: expected label values 0..C-1 (consecutive, with background 0, C >= 2), "
                        f"found {values}")
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def check_label_values(label: np.ndarray, labels: dict[str, int], source: str | Path) -> None:
    """Raise :class:`DataError` naming ``source`` if ``label`` holds values outside ``labels.values()``."""
    present = np.unique(label)
    allowed = set(labels.values())
    bad = [int(v) for v in present if int(v) not in allowed]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise DataError(f"{source}: expected label values in {sorted(allowed)}, found unexpected value(s) {shown}")


def check_same_grid(label_geometry: Geometry, image_geometry: Geometry, label_source: str | Path,
                    image_source: str | Path) -> None:
    """Raise :class:`DataError` naming the label file if its grid differs from its image's grid."""
    diff = label_geometry.mismatch(image_geometry)
    if diff:
        raise DataError(f"{label_source}: expected the grid of its image {Path(image_source).name} (size, spacing, "
                        f"origin, direction), found label vs image {diff}")


def split_labeled(labeled: list[Case], labeled_cases: int, source: str | Path,
                  groups: Sequence[str] | None = None, unit: str = "labeled cases") -> tuple[list[Case], list[Case]]:
    """Keep labels on the first ``labeled_cases`` groups of ``labeled``; drop the others' labels.

    Args:
        labeled: labeled cases, in the order that defines "first".
        labeled_cases: N > 0 keeps the first N groups; 0 keeps all.
        source: dataset folder, for the error message.
        groups: group key per case (ACDC: the patient, so both frames count as one); default: each case its own.
        unit: what a group is called in the error message.

    Returns:
        ``(kept, demoted)``: cases still labeled, and the other cases as unlabeled copies (same order).

    Raises:
        DataError: ``--labeled-cases`` larger than the number of groups available.
    """
    if labeled_cases == 0:
        return list(labeled), []
    keys = list(groups) if groups is not None else [c.name for c in labeled]
    order = list(dict.fromkeys(keys))
    if labeled_cases > len(order):
        raise DataError(f"--labeled-cases: expected at most {len(order)} ({unit} in {source}), found {labeled_cases}")
    keep = set(order[:labeled_cases])
    kept = [c for c, k in zip(labeled, keys) if k in keep]
    demoted = [c.unlabeled_copy() for c, k in zip(labeled, keys) if k not in keep]
    return kept, demoted


def _check_labeled_cases(labeled_cases: Any) -> int:
    if not isinstance(labeled_cases, (int, np.integer)) or isinstance(labeled_cases, bool) or labeled_cases < 0:
        raise DataError(f"--labeled-cases: expected an integer >= 0, found {labeled_cases!r}")
    return int(labeled_cases)


# ----------------------------------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------------------------------
def load_dataset(path: str | Path, labeled_cases: int = 0, hold: bool = True) -> Dataset:
    """Load a dataset folder, detecting its layout.

    * ``dataset.json`` -> nnU-Net v2 raw: ``imagesTr/<case>_0000<ext>``, ``labelsTr/<case><ext>``, optional
      ``imagesTs/`` and ``labelsTs/``. A training image without a label file is unlabeled.
    * ``train_slices.list`` -> SSL4MIS ACDC (``data/<volume>.h5``), see :mod:`actionpp.data.h5formats`.
    * ``train.list`` -> UA-MT LA (``<id>/mri_norm2.h5`` here or under ``2018LA_Seg_Training Set/``).

    Args:
        path: the dataset folder.
        labeled_cases: N > 0 keeps labels only on the first N labeled training cases (nnU-Net: sorted case order;
            LA: ``train.list`` order; ACDC: first N *patients* in order of first appearance in
            ``train_slices.list``); the others become unlabeled. 0 keeps all labels.
        hold: keep every volume in memory (True), or read and check each volume once and release it
            (:meth:`Case.released`: read again from its file on each access; memory stays that of one volume).

    Returns:
        The :class:`Dataset`.

    Raises:
        DataError: one line naming the offending file for any missing, unreadable or inconsistent input.
    """
    labeled_cases = _check_labeled_cases(labeled_cases)
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: expected a dataset folder, found {'a file' if root.exists() else 'nothing'}")
    if (root / "dataset.json").is_file():
        return _load_nnunet(root, labeled_cases, hold)
    from actionpp.data import h5formats  # imported here: h5formats builds on this module

    if (root / "train_slices.list").is_file():
        return h5formats.load_acdc(root, labeled_cases, hold)
    if (root / "train.list").is_file():
        return h5formats.load_la(root, labeled_cases, hold)
    raise DataError(f"{root}: expected a dataset folder with dataset.json (nnU-Net v2 raw), train_slices.list "
                    f"(SSL4MIS ACDC h5) or train.list (UA-MT LA h5), found none of these")


def case_name(path: str | Path) -> str:
    """Case identifier of an image file: the name without its ending and without an nnU-Net ``_0000`` tag.

    ``"imagesTs/heart_007_0000.nii.gz" -> "heart_007"``; ``"scan.nrrd" -> "scan"``.
    """
    stem, _ = split_suffix(path)
    return stem[:-5] if stem.endswith("_0000") and len(stem) > 5 else stem


def find_images(path: str | Path) -> list[Path]:
    """Image files to predict: ``path`` itself if it is an image file, else the image files in the folder.

    Folders are not searched recursively; hidden files and Slicer ``*.seg.nrrd`` segmentations are skipped; files
    are sorted by name. Detached-header data
    files (``.raw``/``.zraw``) are not images. nnU-Net channel tags are recognised: ``x_0000.nii.gz`` is case ``x``,
    and a folder holding ``x_0000`` *and* ``x_0001`` is multi-channel, which is refused.

    Raises:
        DataError: path missing, not an image file, folder without images, multi-channel input, or two files that
            would give the same case name.
    """
    p = Path(path)
    if p.is_file():
        if not is_image_file(p):
            raise DataError(f"{p}: expected an image file ending in {', '.join(IMAGE_SUFFIXES)}, found "
                            f"{split_suffix(p)[1] or 'no ending'!r}")
        return [p]
    if not p.is_dir():
        raise DataError(f"{p}: expected an image file or a folder of images, found nothing")
    files = sorted((f for f in p.iterdir() if f.is_file() and is_image_file(f) and not f.name.endswith(".seg.nrrd")),
                   key=lambda f: f.name)  # Slicer segmentation files beside the volumes are not inputs
    if not files:
        raise DataError(f"{p}: expected image files ending in {', '.join(IMAGE_SUFFIXES)}, found none")
    stems = {split_suffix(f)[0] for f in files}
    seen: dict[str, Path] = {}
    for f in files:
        m = _CHANNEL_RE.match(split_suffix(f)[0])
        if m and m["channel"] != "0000" and f"{m['case']}_0000" in stems:
            raise DataError(f"{f}: expected one channel per case (multi-channel input is not supported yet), "
                            f"found channel _{m['channel']}")
        name = case_name(f)
        if name in seen:
            raise DataError(f"{f}: expected one file per case name, found {seen[name].name} with the same "
                            f"case {name!r}")
        seen[name] = f
    check_distinct_cases(seen, p)
    return files


# ----------------------------------------------------------------------------------------------------------------
# nnU-Net v2 raw
# ----------------------------------------------------------------------------------------------------------------
_REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


def _read_dataset_json(js: Path) -> tuple[dict[str, int], str, dict[str, Any]]:
    """Parse and validate ``dataset.json``; return ``(labels, file_ending, everything it holds)``."""
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{js}: expected valid JSON, found an error ({one_line(e, 150)})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{js}: expected a JSON object, found {type(meta).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        hint = " (this looks like an nnU-Net v1 / MSD dataset.json; convert it to v2)" if "modality" in meta else ""
        raise DataError(f"{js}: expected keys {', '.join(_REQUIRED_KEYS)}, found no {', '.join(missing)}{hint}")
    channels = meta["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise DataError(f"{js}: expected channel_names as {{\"0\": name}}, found {channels!r}")
    if len(channels) > 1:
        raise DataError(f"{js}: expected a single channel in channel_names (multi-channel input is not supported "
                        f"yet), found {len(channels)}: {', '.join(map(str, channels.values()))}")
    labels = check_labels_mapping(meta["labels"], js)
    num = meta["numTraining"]
    if not isinstance(num, int) or isinstance(num, bool) or num < 0:
        raise DataError(f"{js}: expected numTraining as an integer >= 0, found {num!r}")
    ending = meta["file_ending"]
    if not isinstance(ending, str) or ending.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{js}: expected file_ending one of {', '.join(IMAGE_SUFFIXES)}, found {ending!r}")
    return labels, ending, meta


def _image_files(folder: Path) -> Iterable[Path]:
    return sorted((f for f in folder.iterdir() if f.is_file() and is_image_file(f)), key=lambda f: f.name)


def _check_ending(f: Path, ending: str, js: Path) -> str:
    """Stem of ``f`` after removing ``ending``; DataError if ``f`` has another image ending."""
    if not f.name.lower().endswith(ending.lower()):
        raise DataError(f"{f}: expected file ending {ending!r} (file_ending in {js.name}), "
                        f"found {split_suffix(f)[1]!r}")
    return f.name[: -len(ending)]


def _scan_nnunet_images(folder: Path, ending: str, js: Path) -> dict[str, Path]:
    """``{case: imagesXx/<case>_0000<ending>}`` for one nnU-Net image folder."""
    out: dict[str, Path] = {}
    for f in _image_files(folder):
        stem = _check_ending(f, ending, js)
        m = _CHANNEL_RE.match(stem)
        if not m:
            raise DataError(f"{f}: expected an nnU-Net image name <case>_0000{ending}, found {f.name!r}")
        if m["channel"] != "0000":
            raise DataError(f"{f}: expected only channel _0000 (multi-channel input is not supported yet), "
                            f"found channel _{m['channel']}")
        out[m["case"]] = f
    check_distinct_cases(out, folder)
    return out


def _scan_nnunet_labels(folder: Path, ending: str, js: Path, images: dict[str, Path],
                        image_folder: Path) -> dict[str, Path]:
    """``{case: labelsXx/<case><ending>}``; every label must have an image."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for f in _image_files(folder):
        case = _check_ending(f, ending, js)
        if case not in images:
            raise DataError(f"{f}: expected a matching image {image_folder / (case + '_0000' + ending)}, found none")
        out[case] = f
    return out


def _read_checked(image_path: Path, label_path: Path | None,
                  labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    image, geom = read_image(image_path, "image")
    label = None
    if label_path is not None:
        label, lgeom = read_image(label_path, "label")
        check_same_grid(lgeom, geom, label_path, image_path)
        check_label_values(label, labels, label_path)
    return image, label, geom


def read_case_arrays(image_path: Path, label_path: Path | None,
                     labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(image, label)`` of one nnU-Net case, checked as on the first read: a released case's reader."""
    return _read_checked(image_path, label_path, labels)[:2]


def _read_case(name: str, image_path: Path, label_path: Path | None, labels: dict[str, int],
               hold: bool = True) -> Case:
    image, label, geom = _read_checked(image_path, label_path, labels)
    case = Case(name, image, label, geom, image_path, label_path,
                functools.partial(read_case_arrays, image_path, label_path, labels))
    return case if hold else case.released()


def _load_nnunet(root: Path, labeled_cases: int, hold: bool = True) -> Dataset:
    js = root / "dataset.json"
    labels, ending, meta = _read_dataset_json(js)

    images_tr = root / "imagesTr"
    if "dataset" in meta:  # nnU-Net v2's explicit file list (entries must stay inside the dataset folder)
        tr_images, tr_labels = listed_cases(meta, root, js)
    elif not images_tr.is_dir():
        raise DataError(f"{images_tr}: expected the training image folder of the nnU-Net raw layout, found nothing")
    else:
        tr_images = _scan_nnunet_images(images_tr, ending, js)
        tr_labels = _scan_nnunet_labels(root / "labelsTr", ending, js, tr_images, images_tr)
    if not tr_images:
        raise DataError(f"{images_tr}: expected training images <case>_0000{ending}, found none")
    if not tr_labels:
        raise DataError(f"{root / 'labelsTr'}: expected at least one label file <case>{ending} matching imagesTr, "
                        f"found none")

    images_ts = root / "imagesTs"
    ts_images = _scan_nnunet_images(images_ts, ending, js) if images_ts.is_dir() else {}
    ts_labels = _scan_nnunet_labels(root / "labelsTs", ending, js, ts_images, images_ts)

    labeled: list[Case] = []
    unlabeled: list[Case] = []
    for name in sorted(tr_images):
        case = _read_case(name, tr_images[name], tr_labels.get(name), labels, hold)
        (labeled if case.labeled else unlabeled).append(case)
    test = [_read_case(name, ts_images[name], ts_labels.get(name), labels, hold) for name in sorted(ts_images)]

    labeled, demoted = split_labeled(labeled, labeled_cases, root)
    unlabeled = sorted(demoted + unlabeled, key=lambda c: c.name)
    return Dataset(root, "nnunet", labels, labeled, unlabeled, [], test, ending)
