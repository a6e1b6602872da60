"""Reading and writing medical images with SimpleITK (geometry in ``geometry.py``, the error in ``errors.py``).

Arrays are numpy in **z, y, x** order (what ``SimpleITK.GetArrayFromImage`` returns); :class:`Geometry` holds
spacing, origin and direction in ITK **x, y, z** order, exactly as SimpleITK reports them, so a volume can be
written back onto the grid it was read from.

Every problem with a user's file raises :class:`DataError` with one line,
``<file path>: expected <what>, found <what>``.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from actionpp.data.errors import DataError, one_line  # noqa: F401  (re-exported: the engine's error lives here too)
from actionpp.data.geometry import Geometry  # noqa: F401  (re-exported)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File endings read and written by :func:`read_image` / :func:`write_image` (longest match first)."""

_COMPRESSED_SUFFIXES = (".nii.gz", ".nrrd", ".mha")


# ----------------------------------------------------------------------------------------------------------------
# file names
# ----------------------------------------------------------------------------------------------------------------
def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """Split a file name into stem and image suffix, handling the double ending ``.nii.gz``.

    Args:
        path: a file path or name.

    Returns:
        ``(stem, suffix)`` of the file *name*: ``"a/case_0000.nii.gz" -> ("case_0000", ".nii.gz")``. The suffix keeps
        the case of the file name; one of :data:`IMAGE_SUFFIXES` is matched case-insensitively, otherwise the last
        ``.ext`` is split off (``"x.h5" -> ("x", ".h5")``, ``"README" -> ("README", "")``).
    """
    name = Path(path).name
    low = name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf):]
    p = Path(name)
    return (p.stem, p.suffix) if p.suffix and p.stem else (name, "")


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the *name* ends with one of :data:`IMAGE_SUFFIXES` (case-insensitive) and is not hidden.

    Only the name is checked, not the file system, so this also works for output paths.
    """
    name = Path(path).name
    stem, suffix = split_suffix(name)
    return bool(stem) and not name.startswith(".") and suffix.lower() in IMAGE_SUFFIXES


# ----------------------------------------------------------------------------------------------------------------
# array validation helpers
# ----------------------------------------------------------------------------------------------------------------
def check_image_array(array: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Return ``array`` as float32, raising :class:`DataError` naming ``source`` if any value is NaN or infinite."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{source}: expected numeric intensities, found dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
        arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise DataError(f"{source}: expected finite intensities, found {bad} NaN/inf voxel(s)")
    return arr


def label_dtype(lo: int, hi: int) -> np.dtype:
    """Smallest of uint8 / int16 / int32 holding the integer range ``[lo, hi]``."""
    for dt in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise DataError(f"labels: expected values within int32, found range [{lo}, {hi}]")


def check_label_array(array: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Return a label map as an integer array (uint8 if values fit in 0..255, else int16, else int32).

    Float label maps are accepted when every value is a whole number.

    Raises:
        DataError: naming ``source`` if values are non-integer, NaN/inf or beyond int32.
    """
    arr = np.asarray(array)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - finite.sum())
            raise DataError(f"{source}: expected integer label values, found {bad} NaN/inf voxel(s)")
        frac = arr != np.round(arr)
        if frac.any():
            example = float(arr[frac].flat[0])
            raise DataError(f"{source}: expected integer label values, found {int(frac.sum())} non-integer voxel(s) "
                            f"(e.g. {example:g})")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"{source}: expected an integer label map, found dtype {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < np.iinfo(np.int32).min or hi > np.iinfo(np.int32).max:
        raise DataError(f"{source}: expected label values within int32, found range [{lo:g}, {hi:g}]")
    return arr.astype(label_dtype(int(lo), int(hi)), copy=False)


# ----------------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------------
def _itk_reason(err: Exception) -> str:
    """The informative part of a (multi-line) ITK/SimpleITK exception message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith("Exception thrown in SimpleITK")]
    teem = [ln for ln in keep if ln.startswith("[nrrd]")]
    if teem:  # NRRD errors are a stack of "[nrrd] ..." lines; the last one says what went wrong
        keep = [ln for ln in keep if not ln.startswith("[nrrd]")][:1] + teem[-1:]
    text = " ".join(keep) or (lines[0] if lines else type(err).__name__)
    for marker in ("sitk::ERROR: ", "ITK ERROR: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", text)  # "NrrdImageIO(0x5631...): reason"
    return one_line(text, 200)


def _check_nifti(path: Path, kind: str) -> None:
    """Checks ITK's NIfTI reader skips: it zero-fills a truncated file and sets NaN/inf floats to 0, both silently.

    The file is decompressed (``.nii.gz``: the gzip stream must run to its end, CRC and length trailer included) and
    must hold ``vox_offset + prod(dim) * bitpix / 8`` bytes; float32/float64 voxel data must be finite.

    Raises:
        DataError: naming ``path``, for a truncated/corrupt file or non-finite voxels.
    """
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: expected a complete NIfTI file, found a truncated or corrupt file "
                        f"({one_line(e, 120)})") from None
    header = _nifti_header(data)
    if header is None:
        return  # not a NIfTI header we know; let ITK report what it finds
    vox_offset, voxels, bitpix, datatype, endian = header
    expected = vox_offset + voxels * bitpix // 8
    if len(data) < expected:
        raise DataError(f"{path}: expected {expected} bytes of NIfTI data, found {len(data)} (truncated file)")
    ftype = {16: "f4", 64: "f8"}.get(datatype)
    if ftype is not None and len(data) < vox_offset + voxels * int(ftype[1]):  # bitpix disagrees with datatype
        raise DataError(f"{path}: expected {vox_offset + voxels * int(ftype[1])} bytes of NIfTI float data, found "
                        f"{len(data)} (truncated file or bitpix {bitpix} inconsistent with the datatype)")
    if ftype is not None and voxels:
        values = np.frombuffer(data, dtype=endian + ftype, count=voxels, offset=vox_offset)
        bad = int(voxels - np.count_nonzero(np.isfinite(values)))
        if bad:
            what = "finite intensities" if kind == "image" else "integer label values"
            raise DataError(f"{path}: expected {what}, found {bad} NaN/inf voxel(s)")


def _nifti_header(head: bytes) -> tuple[int, int, int, int, str] | None:
    """``(vox_offset, voxels, bitpix, datatype, endian)`` of a NIfTI-1/2 header, or None if not recognised."""
    if len(head) < 348:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr == 348:
            (datatype, bitpix) = struct.unpack(endian + "2h", head[70:74])
            dims = struct.unpack(endian + "8h", head[40:56])
            (vox_offset,) = struct.unpack(endian + "f", head[108:112])
            break
        if sizeof_hdr == 540 and len(head) >= 540:
            (datatype, bitpix) = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            (vox_offset,) = struct.unpack(endian + "q", head[168:176])
            break
    else:
        return None
    n = int(dims[0])
    if not 1 <= n <= 7 or bitpix <= 0 or not math.isfinite(vox_offset) or vox_offset < 0:
        return None
    voxels = 1
    for d in dims[1: n + 1]:
        voxels *= max(int(d), 1)
    return int(vox_offset), voxels, int(bitpix), int(datatype), endian


def _itk_read(path: Path) -> sitk.Image:
    """``sitk.ReadImage``, except that ``x.nii.gz`` is read even when an ``x.nii`` lies beside it.

    ITK's NIfTI reader looks for the uncompressed name first, so it would silently return ``x.nii``'s voxels for
    ``x.nii.gz`` (found by the property tests); such a file is read through a link in a folder of its own.
    """
    if path.name.lower().endswith(".nii.gz") and path.with_name(path.name[:-3]).exists():
        with tempfile.TemporaryDirectory(prefix=".actionpp-read-") as tmp:
            alone = Path(tmp) / ("image" + path.name[-7:])
            try:
                alone.symlink_to(path.resolve())
            except OSError:  # no symbolic links here (e.g. Windows without the privilege): copy instead
                shutil.copyfile(path, alone)
            img = sitk.ReadImage(str(alone))
            img.GetSize()  # loaded now, before the folder goes
            return img
    return sitk.ReadImage(str(path))


def image_size(path: str | os.PathLike) -> tuple[int, ...]:
    """ITK ``(x, y, z)`` size of an image from its header only (no voxels read); DataError naming the file."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise DataError(f"{path}: expected a readable image file, found an error ({_itk_reason(e)})") from None
    size = tuple(int(v) for v in reader.GetSize())
    return (*size, 1)[:3] if len(size) == 2 else size[:3]


def read_image(path: str | os.PathLike, kind: str = "image") -> tuple[np.ndarray, Geometry]:
    """Read a 3D scalar image with SimpleITK.

    Args:
        path: a file ending in one of :data:`IMAGE_SUFFIXES` (other ITK-readable files are tried too).
        kind: ``"image"`` (intensities) or ``"label"`` (integer label map).

    Returns:
        ``(array, geometry)``: ``array`` has shape ``(Z, Y, X)``; float32 for images, uint8/int16/int32 for labels
        (see :func:`check_label_array`). A 2D image is returned as one slice, shape ``(1, Y, X)``; a 4D image whose
        4th axis has length 1 is read as 3D.

    Raises:
        DataError: naming the file when it is missing, unreadable or truncated, not 3D scalar, has NaN/inf
            intensities, or (labels) has non-integer values.
    """
    if kind not in ("image", "label"):
        raise ValueError(f"read_image: kind must be 'image' or 'label', got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: expected an image file, found {'a folder' if path.is_dir() else 'nothing'}")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti(path, kind)
    try:
        img = _itk_read(path)
    except RuntimeError as e:
        raise DataError(f"{path}: expected a readable image file, found an error ({_itk_reason(e)})") from None
    dim, comps = img.GetDimension(), img.GetNumberOfComponentsPerPixel()
    if dim == 4 and img.GetSize()[3] == 1:
        img = sitk.Extract(img, (*img.GetSize()[:3], 0), (0, 0, 0, 0))
        dim = 3
    if dim not in (2, 3) or comps != 1:
        what = f"a {dim}D image of size {list(img.GetSize())}"
        if comps != 1:
            what += f" with {comps} components per pixel"
        raise DataError(f"{path}: expected a 3D scalar image, found {what}")
    geometry = Geometry.from_sitk(img)
    arr = sitk.GetArrayFromImage(img)
    if dim == 2:
        arr = arr[None]
    if kind == "image":
        arr = check_image_array(arr, path)
    else:
        arr = check_label_array(arr, path)
    return np.ascontiguousarray(arr), geometry


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------
def check_writable_folder(folder: str | os.PathLike, flag: str = "--out") -> Path:
    """Make sure ``folder`` exists (created if needed) and a file can be written in it, before any work is done.

    A probe file is created and removed (permission bits alone do not tell: root ignores them, and a read-only or
    immutable mount refuses writes whatever the bits say).

    Raises:
        DataError: naming ``flag`` and the folder: a path under a regular file, a folder that cannot be created, or
            one that refuses new files.
    """
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{flag} {folder}: expected a writable folder, found {parent} is a file")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".actionpp-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"{flag} {folder}: expected a writable folder, found an error "
                        f"({e.strerror or one_line(e, 150)})") from None
    return folder


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a ``(Z, Y, X)`` volume on ``geometry`` to ``path``, atomically.

    Float arrays are written as float32. Integer/bool arrays are label maps, written as uint8 when the values fit in
    0..255, else int16 (int32 beyond that). ``.nii.gz``, ``.nrrd`` and ``.mha`` are compressed. The file (and, for
    the detached-header formats ``.mhd``/``.nhdr``, its data file) is first written into a hidden temporary folder
    beside ``path`` and then renamed into place, so readers never see a half-written file. The parent folder is
    created if needed.

    Args:
        array: volume, shape ``geometry.shape``.
        geometry: grid to write onto (spacing/origin/direction kept as given).
        path: output file; its ending picks the format.
        overwrite: if False, raise :class:`DataError` instead of replacing an existing file.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    if split_suffix(path)[1].lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: expected an output file ending in {', '.join(IMAGE_SUFFIXES)}, found "
                        f"{split_suffix(path)[1] or 'no ending'!r}")
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != geometry.shape:
        raise ValueError(f"write_image: array shape {arr.shape} does not match the geometry's (Z, Y, X) "
                         f"{geometry.shape}")
    if arr.dtype.kind in "biu":
        if arr.dtype.kind == "b" or arr.size == 0:
            arr = arr.astype(np.uint8)
        else:
            arr = arr.astype(label_dtype(int(arr.min()), int(arr.max())), copy=False)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    else:
        raise ValueError(f"write_image: unsupported dtype {arr.dtype}")
    img = geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(arr)))
    compress = path.name.lower().endswith(_COMPRESSED_SUFFIXES)

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=folder))
    except OSError as e:
        raise DataError(f"{folder}: expected a writable folder, found an error ({one_line(e, 150)})") from None
    try:
        try:
            sitk.WriteImage(img, str(tmp / path.name), compress)
        except RuntimeError as e:
            raise DataError(f"{path}: expected to write the image, found an error ({_itk_reason(e)})") from None
        written = sorted(tmp.iterdir(), key=lambda p: p.name == path.name)  # data file(s) first, header last
        if not overwrite:
            for f in written:
                if (folder / f.name).exists():
                    raise DataError(f"{folder / f.name}: expected no existing file (not overwriting), found one")
        for f in written:
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
