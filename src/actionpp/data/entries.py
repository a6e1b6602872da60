"""Files named from elsewhere: ``dataset.json`` file lists that must stay inside the dataset, and case ids that must
stay distinct on case-insensitive file systems.

nnU-Net v2 lets ``dataset.json`` list its files explicitly (``"dataset": {case: {"images": [...], "label": ...}}``,
paths relative to the dataset folder). ActionPP reads such a list, but refuses an entry that leaves the dataset folder
(an absolute path or ``..``): a dataset is one folder that can be copied, checked and shared as a whole. Symbolic links
*inside* the folder are followed (a symlinked ``imagesTr`` or a symlinked dataset folder works): the check is on the
path as written, not on where a link leads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from actionpp.data.io import DataError


def inside(root: Path, entry: Any, js: Path, where: str) -> Path:
    """``root / entry`` if ``entry`` is a relative path that stays inside ``root``; else :class:`DataError`."""
    if not isinstance(entry, str) or not entry.strip():
        raise DataError(f"{js}: expected {where} as a file path relative to {root}, found {entry!r}")
    rel = Path(entry)
    if rel.is_absolute() or rel.drive or os.path.normpath(rel).split(os.sep)[0] == os.pardir:
        raise DataError(f"{js}: expected {where} inside the dataset folder {root}, found {entry!r} (outside it; "
                        "copy or link the file into the dataset)")
    return root / os.path.normpath(rel)


def listed_cases(meta: dict[str, Any], root: Path, js: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``(images, labels)`` by case from ``dataset.json``'s ``"dataset"`` file list (one channel per case).

    Raises:
        DataError: naming ``dataset.json`` and the entry: not a mapping, several channels, a path outside the
            dataset, or a file that does not exist.
    """
    listing = meta["dataset"]
    if not isinstance(listing, dict) or not listing:
        raise DataError(f"{js}: expected 'dataset' as {{case: {{\"images\": [file], \"label\": file}}}}, "
                        f"found {type(listing).__name__}")
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for case, entry in listing.items():
        files = entry.get("images") if isinstance(entry, dict) else None
        if not isinstance(files, list) or len(files) != 1:
            raise DataError(f"{js}: expected dataset entry {case!r} with \"images\": [one file] (multi-channel input "
                            f"is not supported yet), found {entry!r}")
        images[str(case)] = _existing(inside(root, files[0], js, f"the image of {case!r}"), js, case)
        if entry.get("label") is not None:
            labels[str(case)] = _existing(inside(root, entry["label"], js, f"the label of {case!r}"), js, case)
    check_distinct_cases(images, js)
    return images, labels


def _existing(path: Path, js: Path, case: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: expected the file listed for case {case!r} in {js.name}, found nothing")
    return path


def check_distinct_cases(files: dict[str, Path] | Iterable[tuple[str, Path]], source: str | Path) -> None:
    """Refuse two case ids that differ only in letter case (``Case1`` / ``case1``).

    On Windows and macOS their outputs (``Case1.nii.gz`` / ``case1.nii.gz``) would be one file, so one case would
    silently overwrite the other.

    Raises:
        DataError: naming both files.
    """
    seen: dict[str, tuple[str, Path]] = {}
    for case, path in (files.items() if isinstance(files, dict) else files):
        key = case.casefold()
        if key in seen and seen[key][0] != case:
            raise DataError(f"{path}: expected case ids that differ in more than letter case, found {case!r} and "
                            f"{seen[key][0]!r} ({seen[key][1]}) in {source}; rename one of them")
        seen.setdefault(key, (case, path))
