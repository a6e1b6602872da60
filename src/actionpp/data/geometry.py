"""The physical grid of a volume (spacing, origin, direction, size) in ITK ``(x, y, z)`` order.

Arrays elsewhere are numpy ``(z, y, x)``; :attr:`Geometry.shape` converts. A :class:`Geometry` is read from and
applied to a SimpleITK image, saved in JSON (:meth:`Geometry.to_dict`), and compared with a tolerance
(:meth:`Geometry.mismatch`). Bad values raise :class:`~actionpp.data.errors.DataError` with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import SimpleITK as sitk

from actionpp.data.errors import DataError

__all__ = ["Geometry"]

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """The physical grid of a 3D volume, in ITK (x, y, z) order.

    Attributes:
        spacing: voxel size in mm ``(sx, sy, sz)``.
        origin: physical position of voxel ``(0, 0, 0)`` in mm ``(ox, oy, oz)``.
        direction: 3x3 direction cosines, row-major, 9 floats (columns are the voxel axes in physical space).
        size: number of voxels ``(nx, ny, nz)``; the matching numpy array has shape ``(nz, ny, nx)`` (:attr:`shape`).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY
    size: tuple[int, int, int] = (1, 1, 1)

    def __post_init__(self) -> None:
        def floats(name: str, value: Any, n: int) -> tuple[float, ...]:
            try:
                out = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise DataError(f"geometry: expected {n} numbers for {name}, found {value!r}") from None
            if len(out) != n or not all(math.isfinite(v) for v in out):
                raise DataError(f"geometry: expected {n} finite numbers for {name}, found {list(value)!r}")
            return out

        spacing = floats("spacing", self.spacing, 3)
        if any(s <= 0 for s in spacing):
            raise DataError(f"geometry: expected positive spacing, found {list(spacing)}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", floats("origin", self.origin, 3))
        object.__setattr__(self, "direction", floats("direction", self.direction, 9))
        try:
            size = tuple(int(v) for v in self.size)
        except (TypeError, ValueError):
            raise DataError(f"geometry: expected 3 integers for size, found {self.size!r}") from None
        if len(size) != 3 or any(v < 1 for v in size):
            raise DataError(f"geometry: expected 3 positive integers for size, found {list(size)}")
        object.__setattr__(self, "size", size)

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_shape(cls, shape: Sequence[int], spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Sequence[float] = _IDENTITY) -> "Geometry":
        """Geometry of a numpy volume of ``shape = (Z, Y, X)``; ``spacing``/``origin``/``direction`` in ITK order."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise DataError(f"geometry: expected a (Z, Y, X) shape, found {list(shape)}")
        return cls(tuple(spacing), tuple(origin), tuple(direction), shape[::-1])

    @classmethod
    def from_sitk(cls, img: sitk.Image) -> "Geometry":
        """Geometry of a 2D or 3D SimpleITK image (a 2D image becomes one slice: size z = 1, spacing z = 1)."""
        dim = img.GetDimension()
        if dim == 3:
            return cls(img.GetSpacing(), img.GetOrigin(), img.GetDirection(), img.GetSize())
        if dim == 2:
            d = img.GetDirection()
            return cls((*img.GetSpacing(), 1.0), (*img.GetOrigin(), 0.0),
                       (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0), (*img.GetSize(), 1))
        raise ValueError(f"Geometry.from_sitk: expected a 2D or 3D image, got {dim}D")

    def to_dict(self) -> dict[str, list]:
        """JSON-friendly ``{"spacing": [3], "origin": [3], "direction": [9], "size": [3]}``."""
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction),
                "size": list(self.size)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Geometry":
        """Inverse of :meth:`to_dict`; raises :class:`DataError` for missing keys or wrong lengths."""
        if not isinstance(d, dict):
            raise DataError(f"geometry: expected a mapping, found {type(d).__name__}")
        missing = [k for k in ("spacing", "origin", "direction", "size") if k not in d]
        if missing:
            raise DataError(f"geometry: expected keys spacing, origin, direction, size, found no {', '.join(missing)}")
        return cls(d["spacing"], d["origin"], d["direction"], d["size"])

    # -- use -----------------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape ``(Z, Y, X)`` of a volume on this grid (``size`` reversed)."""
        return self.size[::-1]  # type: ignore[return-value]

    def apply_to(self, img: sitk.Image) -> sitk.Image:
        """Set spacing, origin and direction of the 3D image ``img`` (in place) and return it.

        Raises:
            ValueError: if ``img`` is not 3D or its size differs from :attr:`size`.
        """
        if img.GetDimension() != 3 or tuple(img.GetSize()) != self.size:
            raise ValueError(f"Geometry.apply_to: image size {img.GetSize()} does not match geometry size {self.size}")
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def matches(self, other: "Geometry", tol: float = 1e-4) -> bool:
        """Same grid within ``tol``.

        Sizes must be equal; spacing and origin may differ by ``tol * max(1, |a|, |b|)`` per component (relative for
        large values, absolute below 1, which absorbs NIfTI's float32 storage); direction components by ``tol``.
        """
        return not self.mismatch(other, tol)

    def mismatch(self, other: "Geometry", tol: float = 1e-4) -> str:
        """The first difference from ``other``, e.g. ``"spacing (1, 1, 2) vs (1, 1, 3)"``; ``""`` when they match."""
        if self.size != other.size:
            return f"size {list(self.size)} vs {list(other.size)}"
        for name in ("spacing", "origin"):
            a, b = getattr(self, name), getattr(other, name)
            if any(abs(x - y) > tol * max(1.0, abs(x), abs(y)) for x, y in zip(a, b)):
                return f"{name} {_fmt(a)} vs {_fmt(b)}"
        if any(abs(x - y) > tol for x, y in zip(self.direction, other.direction)):
            return f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}"
        return ""


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"

