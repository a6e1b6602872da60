"""Readers (and tiny test writers) for the two community h5 layouts used by the ACTION / ACTION++ code.

**SSL4MIS ACDC** (``root/``)::

    train_slices.list   slice names such as ``patient099_frame01_slice_15`` (defines the training volumes and order)
    val.list            volume names such as ``patient028_frame01``
    test.list           volume names
    data/<volume>.h5    ``image`` (D, H, W) float32 in [0, 1], ``label`` (D, H, W) uint8; 0 bg, 1 RV, 2 Myo, 3 LV

The h5 files carry **no voxel spacing**: ACDC volumes are given spacing (1, 1, 1), origin 0 and identity direction,
so distances computed from them are in voxels, as in the official evaluation. The 2D slice files under
``data/slices/`` are not read; training slices are taken from the volumes.

**UA-MT LA 2018** (``root/``)::

    train.list, test.list                        one ID per line (``../data/<...>/<ID>/mri_norm2.h5`` also accepted)
    <ID>/mri_norm2.h5 or 2018LA_Seg_Training Set/<ID>/mri_norm2.h5
                                                 ``image`` float32 z-scored, ``label`` uint8 {0, 1}, axes (x, y, z)

LA arrays are transposed to the engine's (z, y, x) order and given 0.625 mm isotropic spacing.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

import h5py
import numpy as np

from actionpp.data.io import DataError, Geometry, check_image_array, check_label_array, one_line
from actionpp.data.layout import Case, Dataset, check_label_values, split_labeled

ACDC_LABELS: dict[str, int] = {"background": 0, "RV": 1, "Myo": 2, "LV": 3}
LA_LABELS: dict[str, int] = {"background": 0, "left atrium": 1}
LA_SPACING = (0.625, 0.625, 0.625)
LA_SUBFOLDER = "2018LA_Seg_Training Set"
LA_FILE = "mri_norm2.h5"
_SLICE_RE = re.compile(r"^(?P<volume>.+?)_slice_?(?P<index>\d+)$")
_PATIENT_RE = re.compile(r"^(patient\d+)")


# ----------------------------------------------------------------------------------------------------------------
# generic
# ----------------------------------------------------------------------------------------------------------------
def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a ``.list`` file, stripped; a trailing ``.h5`` is removed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: expected a readable text list, found an error ({one_line(e, 150)})") from None
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s[:-3] if s.endswith(".h5") else s)
    return out


def read_h5_volume(path: Path, xyz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read ``image`` and ``label`` from an h5 volume.

    Args:
        path: the ``.h5`` file.
        xyz: the arrays are stored in (x, y, z) axis order (UA-MT LA); they are transposed to (z, y, x).

    Returns:
        ``(image, label)``: ``(Z, Y, X)`` float32 and integer arrays of equal shape.

    Raises:
        DataError: naming ``path`` if it is missing, not HDF5/corrupt, lacks either dataset, is not 3D, shapes differ,
            intensities are NaN/inf or labels are non-integer.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: expected an h5 volume, found nothing")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("image", "label") if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                found = ", ".join(sorted(f.keys())) or "no datasets"
                raise DataError(f"{path}: expected datasets 'image' and 'label', found {found}")
            image = f["image"][()]
            label = f["label"][()]
    except (OSError, KeyError, RuntimeError) as e:
        raise DataError(f"{path}: expected a readable HDF5 file, found an error ({one_line(e, 150)})") from None
    for name, arr in (("image", image), ("label", label)):
        if np.ndim(arr) != 3:
            raise DataError(f"{path}: expected a 3D '{name}' dataset, found shape {list(np.shape(arr))}")
    if image.shape != label.shape:
        raise DataError(f"{path}: expected 'image' and 'label' of equal shape, found {list(image.shape)} and "
                        f"{list(label.shape)}")
    if xyz:
        image, label = image.transpose(2, 1, 0), label.transpose(2, 1, 0)
    image = np.ascontiguousarray(check_image_array(image, path))
    label = np.ascontiguousarray(check_label_array(label, path))
    return image, label


def read_h5_case(path: Path, labels: dict[str, int], xyz: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)`` of an h5 volume with its label values checked (a released case's reader)."""
    image, label = read_h5_volume(path, xyz=xyz)
    check_label_values(label, labels, path)
    return image, label


def _h5_case(name: str, path: Path, labels: dict[str, int], spacing: Sequence[float], xyz: bool,
             hold: bool = True) -> Case:
    reader = functools.partial(read_h5_case, path, dict(labels), xyz)
    image, label = reader()
    case = Case(name, image, label, Geometry.from_shape(image.shape, spacing), path, path, reader)
    return case if hold else case.released()


# ----------------------------------------------------------------------------------------------------------------
# SSL4MIS ACDC
# ----------------------------------------------------------------------------------------------------------------
def acdc_volume_of(slice_name: str) -> str | None:
    """``"patient099_frame01_slice_15" -> "patient099_frame01"`` (None if the name has no ``_slice_N`` tail)."""
    m = _SLICE_RE.match(slice_name)
    return m["volume"] if m else None


def acdc_patient_of(volume: str) -> str:
    """``"patient099_frame01" -> "patient099"``; names without a ``patientNNN`` prefix are their own patient."""
    m = _PATIENT_RE.match(volume)
    return m.group(1) if m else volume


def load_acdc(root: str | Path, labeled_cases: int = 0, hold: bool = True) -> Dataset:
    """Load the SSL4MIS ACDC layout (see the module docstring).

    Training volumes are those named in ``train_slices.list``, in order of first appearance; ``labeled_cases = N``
    keeps labels on the first N *patients* (both frames of a patient count as that patient). Spacing is unknown in
    this layout and set to (1, 1, 1).
    """
    root = Path(root)
    train_list = root / "train_slices.list"
    volumes: list[str] = []
    for name in read_list(train_list):
        vol = acdc_volume_of(name)
        if vol is None:
            raise DataError(f"{train_list}: expected slice names like patient099_frame01_slice_15, found {name!r}")
        volumes.append(vol)
    volumes = list(dict.fromkeys(volumes))
    if not volumes:
        raise DataError(f"{train_list}: expected at least one training slice name, found none")

    def cases(names: list[str]) -> list[Case]:
        return [_h5_case(v, root / "data" / f"{v}.h5", ACDC_LABELS, (1.0, 1.0, 1.0), False, hold) for v in names]

    labeled = cases(volumes)
    val = cases(read_list(root / "val.list")) if (root / "val.list").is_file() else []
    test = cases(read_list(root / "test.list")) if (root / "test.list").is_file() else []
    kept, demoted = split_labeled(labeled, labeled_cases, root, [acdc_patient_of(v) for v in volumes],
                                  unit="patients in train_slices.list")
    return Dataset(root, "acdc-h5", dict(ACDC_LABELS), kept, demoted, val, test, ".nii.gz")


# ----------------------------------------------------------------------------------------------------------------
# UA-MT LA
# ----------------------------------------------------------------------------------------------------------------
def la_id_of(entry: str) -> str:
    """Case ID of a ``train.list`` entry: ``"ABC"``, ``"ABC/"`` or ``"../data/<set>/ABC/mri_norm2.h5"`` -> ``"ABC"``."""
    p = PurePosixPath(entry.strip().replace("\\", "/"))
    if p.name in (LA_FILE, LA_FILE[:-3]):  # read_list strips '.h5'
        p = p.parent
    return p.name


def la_file(root: Path, case_id: str) -> Path:
    """Where ``<ID>/mri_norm2.h5`` lies: in ``root`` or its ``2018LA_Seg_Training Set`` subfolder."""
    candidates = [root / case_id / LA_FILE, root / LA_SUBFOLDER / case_id / LA_FILE]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[1] if (root / LA_SUBFOLDER).is_dir() else candidates[0]


def load_la(root: str | Path, labeled_cases: int = 0, hold: bool = True) -> Dataset:
    """Load the UA-MT LA layout (see the module docstring).

    ``labeled_cases = N`` keeps labels on the first N IDs of ``train.list``. Arrays are transposed from (x, y, z) to
    (z, y, x); spacing is 0.625 mm isotropic.
    """
    root = Path(root)

    def cases(list_file: Path) -> list[Case]:
        out = []
        for entry in read_list(list_file):
            cid = la_id_of(entry)
            path = la_file(root, cid)
            if not path.is_file():
                raise DataError(f"{path}: expected the h5 volume of {cid!r} listed in {list_file.name}, found nothing")
            out.append(_h5_case(cid, path, LA_LABELS, LA_SPACING, True, hold))
        return out

    labeled = cases(root / "train.list")
    if not labeled:
        raise DataError(f"{root / 'train.list'}: expected at least one case ID, found none")
    test = cases(root / "test.list") if (root / "test.list").is_file() else []
    kept, demoted = split_labeled(labeled, labeled_cases, root, unit="cases in train.list")
    return Dataset(root, "la-h5", dict(LA_LABELS), kept, demoted, [], test, ".nii.gz")


# ----------------------------------------------------------------------------------------------------------------
# writers for tests (tiny fake layouts)
# ----------------------------------------------------------------------------------------------------------------
def _write_h5(path: Path, image: np.ndarray, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w-") as f:  # "w-": fail rather than overwrite
        f.create_dataset("image", data=np.asarray(image, dtype=np.float32))
        f.create_dataset("label", data=np.asarray(label, dtype=np.uint8))


def _write_list(path: Path, lines: Sequence[str]) -> None:
    if path.exists():
        raise DataError(f"{path}: expected no existing file (not overwriting), found one")
    path.write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")


def write_acdc_h5_layout(root: str | Path, volumes: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         train: Sequence[str], val: Sequence[str] = (), test: Sequence[str] = ()) -> Path:
    """Write a fake SSL4MIS ACDC layout (for tests).

    Args:
        root: output folder (created; existing files are never overwritten).
        volumes: ``{volume name: (image (D, H, W), label (D, H, W))}``, written to ``data/<name>.h5``.
        train: volume names; ``train_slices.list`` gets ``<name>_slice_<k>`` for every slice k, in this order.
        val, test: volume names for ``val.list`` / ``test.list`` (the files are written only when non-empty).

    Returns:
        ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, (image, label) in volumes.items():
        _write_h5(root / "data" / f"{name}.h5", image, label)
    _write_list(root / "train_slices.list",
                [f"{v}_slice_{k}" for v in train for k in range(np.shape(volumes[v][0])[0])])
    if val:
        _write_list(root / "val.list", list(val))
    if test:
        _write_list(root / "test.list", list(test))
    return root


def write_la_h5_layout(root: str | Path, volumes: Mapping[str, tuple[np.ndarray, np.ndarray]],
                       train: Sequence[str], test: Sequence[str] = (), subfolder: bool = True,
                       list_style: str = "id") -> Path:
    """Write a fake UA-MT LA layout (for tests).

    Args:
        root: output folder (created; existing files are never overwritten).
        volumes: ``{ID: (image (Z, Y, X), label (Z, Y, X))}``; stored transposed to (x, y, z) as UA-MT does.
        train, test: IDs for ``train.list`` / ``test.list``.
        subfolder: put volumes under ``2018LA_Seg_Training Set/`` (else directly under ``root``).
        list_style: ``"id"`` (one ID per line) or ``"path"`` (``../data/2018LA_Seg_Training Set/<ID>/mri_norm2.h5``).

    Returns:
        ``root``.
    """
    root = Path(root)
    base = root / LA_SUBFOLDER if subfolder else root
    for cid, (image, label) in volumes.items():
        _write_h5(base / cid / LA_FILE, np.asarray(image).transpose(2, 1, 0), np.asarray(label).transpose(2, 1, 0))
    root.mkdir(parents=True, exist_ok=True)

    def entry(cid: str) -> str:
        return cid if list_style == "id" else f"../data/{LA_SUBFOLDER}/{cid}/{LA_FILE}"

    _write_list(root / "train.list", [entry(c) for c in train])
    if test:
        _write_list(root / "test.list", [entry(c) for c in test])
    return root
