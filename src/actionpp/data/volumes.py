"""Where the training volumes live while patches are cut from them: ``--cache memory | disk | none | auto``.

Every mode gives the sampler (:class:`~actionpp.data.loaders.IterationBatches`) the same z-scored float32 volume
``x' = (x - mean(x)) / max(std(x), 1e-8)``, so batches, losses and weights are identical across modes:

* ``memory``: each image is z-scored once and held (one float32 copy per volume; labels in their own integer dtype).
  Host memory grows with the dataset: ``sum_i Z_i Y_i X_i * (4 + 1 if labeled)`` bytes.
* ``disk``: each image is z-scored once and written to ``RUN/cache/<case>-<key>.npy`` (its label beside it as
  ``...-label.npy``); a draw maps it (``np.load(mmap_mode="c")``, copy-on-write, so the file is never written) and
  reads only what it needs: 2D copies out one ``(Y, X)`` slice; 3D hands the map to MONAI's crop, which touches only
  the patch's pages (the label, one byte a voxel, is read whole for the foreground/background choice). Host memory
  holds only the list of file names, whatever the number of volumes. Nothing is written to the dataset folder.
* ``none``: the volume is read from the dataset file (with the load-time checks) and z-scored at every draw.
* ``auto``: ``memory`` when the decompressed size above is below :data:`AUTO_FRACTION` of the memory available now
  (:func:`actionpp.memory.available_bytes`), else ``disk``. Shapes come from the load pass (the image headers), so no
  volume has to be held to decide.

A cache file is valid for one source: ``<key>`` hashes the case name, its file paths, sizes and modification times (or,
for a case held in memory without a file, its voxels), so a changed source gets a new file. Files are written to a
temporary name and renamed into place (``os.replace``), so a crash never leaves a half-written file under the final
name, and a reused file is checked (it opens, shape and dtype match) and rewritten otherwise: the cache is always
rebuildable, which is why ``--resume`` works with any mode. Concurrent writers (ranks under ``torchrun``) write
separate temporary files and the last rename wins with identical content. The cache lives only as long as the run
needs it: at the start of a run the ``*.npy`` files no current case uses (an earlier source of a case, a case no
longer in the dataset) are deleted (:func:`prune_cache`), and when the run finishes the whole cache goes, so a
labeling loop of many rounds does not keep one float32 copy of the dataset per round. A stopped or failed run keeps
its cache for ``--resume``.

Why not MONAI ``PersistentDataset``: it caches the output of a deterministic transform chain per item, as a pickled
torch file loaded whole on every access. The sampler here draws a random slice or patch of a random volume at each
iteration, and a whole-volume ``torch.load`` per draw defeats the point of slicing; a plain ``.npy`` memory map lets a
2D draw read one slice and keeps the sampling code (and therefore its batches) unchanged in every mode.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from actionpp import memory
from actionpp.config import CACHES as CACHE_MODES  # ("auto", "memory", "disk", "none")
from actionpp.data.io import DataError
from actionpp.data.layout import Case

AUTO_FRACTION = 0.25
"""``--cache auto`` holds the volumes in memory when they take less than this fraction of the available memory."""
_FORMAT = "zscore-float32-v1"
"""Part of every cache key: bump it when what a cache file holds changes."""


def normalize(image: np.ndarray) -> np.ndarray:
    """Z-score over the whole volume: ``(x - mean) / std`` (std floored at 1e-8); the model stores this choice."""
    image = image.astype(np.float32, copy=False)
    return (image - image.mean()) / max(float(image.std()), 1e-8)


def dataset_bytes(cases: Sequence[Case]) -> int:
    """Bytes the distinct ``cases`` take in memory: ``Z*Y*X*4`` per float32 image plus ``Z*Y*X`` per uint8 label."""
    seen: dict[int, Case] = {id(c): c for c in cases}
    return sum(int(np.prod(c.shape)) * (4 + (1 if c.labeled else 0)) for c in seen.values())


def resolve_cache(mode: str, cases: Sequence[Case], available: int | None = None) -> tuple[str, str]:
    """``(memory | disk | none, why)`` for ``--cache mode``; ``auto`` compares :func:`dataset_bytes` with
    :data:`AUTO_FRACTION` of ``available`` (default: :func:`actionpp.memory.available_bytes` of the CPU; memory when
    that cannot be told)."""
    if mode not in CACHE_MODES:
        raise DataError(f"--cache: expected one of {', '.join(CACHE_MODES)}, found {mode!r}")
    if mode != "auto":
        return mode, "asked for"
    need = dataset_bytes(cases)
    available = memory.available_bytes("cpu") if available is None else available
    if available is None:
        return "memory", f"auto: {memory.format_size(need)} of volumes, available memory unknown"
    chosen = "memory" if need < AUTO_FRACTION * available else "disk"
    return chosen, (f"auto: {memory.format_size(need)} of volumes vs {memory.format_size(available)} available "
                    f"(memory below {AUTO_FRACTION:g} of it)")


def _cache_key(case: Case) -> str:
    h = hashlib.sha1(f"{_FORMAT}|{case.name}|{case.shape}|{case.labeled}".encode())
    paths = [p for p in (case.image_path, case.label_path if case.labeled else None) if p is not None]
    if paths:
        for p in paths:
            st = os.stat(p)
            h.update(f"|{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:  # held in memory, no file: the voxels themselves
        image, label = case.arrays()
        h.update(np.ascontiguousarray(image).tobytes())
        if label is not None:
            h.update(np.ascontiguousarray(label).tobytes())
    return h.hexdigest()[:16]


def _valid(path: Path, shape: tuple[int, ...], kind: str) -> bool:
    """True if ``path`` opens as a ``.npy`` of ``shape`` (float32 for images, integers for labels)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    ok = tuple(arr.shape) == tuple(shape) and (arr.dtype == np.float32 if kind == "image" else arr.dtype.kind in "iu")
    del arr
    return ok


def _write_npy(array: np.ndarray, path: Path) -> None:
    """``np.save`` to a temporary file beside ``path``, then rename it over ``path`` (never a half-written file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_files(case: Case, folder: Path, with_label: bool) -> tuple[Path, Path | None]:
    """``(image.npy, label.npy or None)`` of ``case`` in ``folder``, written (z-scored image, raw label) unless a
    valid file is already there."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", case.name)[:80] + "-" + _cache_key(case)
    image_file = folder / f"{stem}.npy"
    label_file = folder / f"{stem}-label.npy" if with_label and case.labeled else None
    missing = not _valid(image_file, case.shape, "image") or (
        label_file is not None and not _valid(label_file, case.shape, "label"))
    if missing:
        _check_space(case, folder)
        image, label = case.arrays()
        _write_npy(normalize(image), image_file)
        if label_file is not None:
            _write_npy(label, label_file)
    return image_file, label_file


def prune_cache(folder: Path, keep: Sequence[Path] = ()) -> int:
    """Delete the ``*.npy`` files of ``folder`` that ``keep`` does not name, and ``folder`` itself when that leaves
    it empty; returns the bytes freed. Only the cache's own files are touched: dot-named temporary files (a concurrent
    writer's, see :func:`_write_npy`) and anything not ending in ``.npy`` stay."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    keep_names, freed = {Path(k).name for k in keep}, 0
    for f in folder.glob("*.npy"):
        if f.name.startswith(".") or f.name in keep_names:
            continue
        try:
            size = f.stat().st_size
            f.unlink()
            freed += size
        except OSError:  # another rank removed it first, or (Windows) a map still holds it: left for next time
            pass
    try:
        folder.rmdir()  # only succeeds when empty
    except OSError:
        pass
    return freed


class VolumeStore:
    """The z-scored volumes (and labels) of a list of cases, kept as ``mode`` says (see the module docstring).

    ``take(i, z)`` returns case ``i``'s image ``(Z, Y, X)`` float32 (or slice ``z``, ``(Y, X)``) and its label in its
    stored integer dtype (None when unlabeled or ``with_labels`` is False); treat both as read-only. The store
    pickles small in ``disk`` and ``none`` modes (file names, or cases that read themselves): worker processes open
    the files themselves, one draw at a time.
    """

    def __init__(self, cases: Sequence[Case], mode: str = "memory", folder: str | Path | None = None,
                 with_labels: bool = True):
        if mode not in CACHE_MODES[1:]:
            raise DataError(f"--cache: expected one of {', '.join(CACHE_MODES[1:])} here, found {mode!r}")
        self.mode, self.with_labels = mode, with_labels
        self.names = [c.name for c in cases]
        self.depths = [int(c.shape[0]) for c in cases]
        self._held: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._files: list[tuple[Path, Path | None]] = []
        self._cases: list[Case] = []
        if mode == "memory":
            for c in cases:  # one volume read at a time; only the z-scored copy is kept
                image, label = c.arrays()
                self._held.append((normalize(image), label if with_labels else None))
        elif mode == "disk":
            if folder is None:
                raise ValueError("VolumeStore: mode 'disk' needs a cache folder")
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            self._files = [cache_files(c, folder, with_labels) for c in cases]
        else:
            self._cases = list(cases)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def files(self) -> list[Path]:
        """The cache files this store reads (``disk`` mode; empty otherwise)."""
        return [f for pair in self._files for f in pair if f is not None]

    def without_labels(self) -> "VolumeStore":
        """The same volumes (storage shared, nothing copied or written) with labels left out."""
        other = object.__new__(VolumeStore)
        other.__dict__.update(self.__dict__, with_labels=False)
        other._held = [(image, None) for image, _ in self._held]
        other._files = [(image, None) for image, _ in self._files]
        return other

    def take(self, i: int, z: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Image of case ``i`` (slice ``z`` if given) and its label (stored dtype), or None."""
        if self.mode == "memory":
            image, label = self._held[i]
        elif self.mode == "disk":
            image_file, label_file = self._files[i]
            # copy-on-write map: private and writable, so torch shares it without a copy; pages are read on access
            image = np.load(image_file, mmap_mode="c")
            label = np.load(label_file, mmap_mode="c") if label_file is not None else None
        else:
            image, label = self._cases[i].arrays()
            image, label = normalize(image), label if self.with_labels else None
        if z is not None:
            image, label = image[z], None if label is None else label[z]
        if self.mode == "disk" and z is not None:  # the map closes when the last array using it goes out of scope
            # 2D: copy the slice out (only its pages are read). 3D: the maps themselves; the crop reads only the
            # patch's pages (the label is read whole once per case, when loaders.CropIndices lists its foreground)
            image = np.array(image, dtype=np.float32)
            label = None if label is None else np.array(label)
        # the label keeps its stored dtype (uint8 for most): the sampler widens only the patch, never the volume
        return image, label


def _check_space(case: Case, folder: Path) -> None:
    """Refuse, in one line, a cache file that would not fit the free disk space of ``folder``."""
    need = dataset_bytes([case]) + 256
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"--cache disk: expected {memory.format_size(need)} free in {folder} for case {case.name!r}, "
                        f"found {memory.format_size(free)}; free space, or use --cache none (files read at each draw)")
