"""Variants of the cardiac phantom that a model was not tuned on: other voxel spacing, oblique slice orientation and
other tissue intensities (the shift a new user's data brings; issue 9).

A :class:`Variant` changes three things in :func:`actionpp.data.phantoms.cardiac_case`:

* ``spacing = (s_in, s_z)``: in-plane and through-plane voxel size in mm at the default size (default: drawn per case
  from U(1.35, 1.65) and U(8, 10));
* ``oblique = a`` (degrees): the anatomy is rotated in-plane by ``a + U(-10, 10)`` degrees per case, i.e. physical
  coordinates ``(x', y') = (cos r x + sin r y, -sin r x + cos r y)``; the file's direction cosines carry the same
  rotation about z (an oblique short-axis stack);
* ``intensity = "alt"``: another contrast scheme (blood pools 0.70 instead of 0.86-0.92, myocardium 0.40, fat 0.55,
  body 0.45, all +-0.06) followed by a per-case gamma ``I <- I^g``, g ~ U(0.7, 1.4).

Variant randomness comes from its own generator, so a case with ``Variant()`` (all defaults) is the plain phantom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from actionpp.data.io import DataError

ALT_LEVELS = {"body": 0.45, "fat": 0.55, "lung": 0.06, "liver": 0.50, "aorta": 0.72, "peri": 0.58, "rv_wall": 0.38,
              "RV": 0.70, "MYO": 0.40, "LV": 0.70, "PAP": 0.42}
"""Tissue means of the ``alt`` intensity scheme (default scheme: 0.36, 0.75, 0.06, 0.42, 0.85, 0.78, 0.3, 0.86,
0.3, 0.92, 0.34)."""


@dataclass(frozen=True)
class Variant:
    """How a cardiac phantom departs from the default one (see the module docstring)."""

    spacing: tuple[float, float] | None = None
    oblique: float = 0.0
    intensity: str = "default"

    def __post_init__(self) -> None:
        if self.spacing is not None:
            sp = tuple(float(s) for s in self.spacing)
            if len(sp) != 2 or min(sp) <= 0:
                raise DataError(f"--spacing: expected 2 positive numbers IN_PLANE THROUGH_PLANE (mm), found "
                                f"{list(self.spacing)}")
            object.__setattr__(self, "spacing", sp)
        if not math.isfinite(float(self.oblique)):
            raise DataError(f"--oblique: expected an angle in degrees, found {self.oblique!r}")
        if self.intensity not in ("default", "alt"):
            raise DataError(f"--intensity: expected default or alt, found {self.intensity!r}")

    @property
    def is_default(self) -> bool:
        return self.spacing is None and self.oblique == 0.0 and self.intensity == "default"

    def to_dict(self) -> dict:
        return {"spacing": None if self.spacing is None else list(self.spacing), "oblique": self.oblique,
                "intensity": self.intensity}


def rotation(variant: Variant | None, vrng: np.random.Generator) -> float:
    """The case's in-plane rotation in radians (0 for a non-oblique variant; no draw then)."""
    if variant is None or variant.oblique == 0.0:
        return 0.0
    return math.radians(variant.oblique + vrng.uniform(-10.0, 10.0))


def rotate_plane(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Physical in-plane coordinates seen by the anatomy after a rotation by ``angle`` (broadcast to ``(1, Y, X)``)."""
    if angle == 0.0:
        return x, y
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    return c * x + s * y, -s * x + c * y


def direction(angle: float) -> tuple[float, ...]:
    """ITK row-major direction cosines of a stack rotated by ``angle`` about z."""
    if angle == 0.0:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    c, s = math.cos(angle), math.sin(angle)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def apply_gamma(img: np.ndarray, variant: Variant | None, vrng: np.random.Generator) -> np.ndarray:
    """``I^g`` with g ~ U(0.7, 1.4) for the ``alt`` intensity scheme (image in [0, ~1] before noise); else ``img``."""
    if variant is None or variant.intensity != "alt":
        return img
    return np.power(np.clip(img, 0.0, None), np.float32(vrng.uniform(0.7, 1.4))).astype(np.float32)
