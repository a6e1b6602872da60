"""One volume of a dataset: :class:`Case`, held in memory or read again from its file(s) on each access.

A case loaded with ``load_dataset(..., hold=False)`` is *released*: after its first read and check it keeps only its
name, geometry, shape and a picklable ``reader`` (a ``functools.partial`` of a module-level function), so a list of
thousands of cases costs kilobytes and can be sent to data-loading worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from actionpp.data.io import Geometry

Reader = Callable[[], "tuple[np.ndarray, np.ndarray | None]"]
"""Reads a case's ``(image, label)`` again from its file(s), with the same checks as the first read (picklable)."""


class Case:
    """One volume of a dataset, held in memory or read again from its file(s) on each access.

    Attributes:
        name: case identifier (file name without ending and channel tag, or the h5 volume name / LA ID).
        image: ``(Z, Y, X)`` float32 raw intensities (no normalisation applied).
        label: ``(Z, Y, X)`` integer label map with values in ``0..C-1``, or None for an unlabeled case.
        geometry: grid of the image (and label).
        image_path: file the image was read from (None for in-memory cases).
        label_path: file the label was read from (None when unlabeled; for h5 layouts the same file as the image).

    A *released* case (:meth:`released`) holds no voxels: ``image`` and ``label`` call its ``reader`` each time
    (use :meth:`arrays` to get both from one read); ``shape`` and ``labeled`` come from what the first read saw.
    """

    def __init__(self, name: str, image: np.ndarray | None, label: np.ndarray | None, geometry: Geometry,
                 image_path: Path | None = None, label_path: Path | None = None, reader: Reader | None = None,
                 labeled: bool | None = None):
        if image is None and reader is None:
            raise ValueError(f"Case {name!r}: expected an image array or a reader, got neither")
        self.name, self.geometry, self.image_path, self.label_path = name, geometry, image_path, label_path
        self._image, self._label, self.reader = image, label, reader
        self.labeled = label is not None if labeled is None else bool(labeled)

    def __repr__(self) -> str:
        return f"Case(name={self.name!r}, labeled={self.labeled}, held={self.held})"

    @property
    def held(self) -> bool:
        """True when the voxels are in memory (False: read from the file(s) on each access)."""
        return self._image is not None

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image, label)``: the held arrays, or one read of the file(s); label None when unlabeled."""
        if self._image is not None:
            return self._image, self._label if self.labeled else None
        image, label = self.reader()  # type: ignore[misc]
        return image, label if self.labeled else None

    @property
    def image(self) -> np.ndarray:
        return self.arrays()[0]

    @property
    def label(self) -> np.ndarray | None:
        return self.arrays()[1] if self.labeled else None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(Z, Y, X)`` of the image (from the geometry when released)."""
        return tuple(self._image.shape) if self._image is not None else tuple(self.geometry.shape)

    def unlabeled_copy(self) -> "Case":
        """The same case with its label dropped (arrays are shared, not copied)."""
        return Case(self.name, self._image, None, self.geometry, self.image_path, None, self.reader, labeled=False)

    def released(self) -> "Case":
        """The same case holding no voxels, read from its file(s) on each access (itself when it has no reader)."""
        if self.reader is None:
            return self
        return Case(self.name, None, None, self.geometry, self.image_path, self.label_path, self.reader, self.labeled)
