"""Coordinate grids and smooth random fields the phantoms are drawn from (numpy, float32 throughout).

Shapes: ``grid`` gives three broadcastable arrays ``(Z,1,1), (1,Y,1), (1,1,X)``; the fields take such coordinates
and return arrays of their broadcast shape ``(Z, Y, X)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def grid(shape: Sequence[int], spacing_zyx: Sequence[float]) -> list[np.ndarray]:
    """Broadcastable physical coordinates (mm) of voxel centres, centred on the volume: ``[z, y, x]``."""
    out = []
    for axis, (n, s) in enumerate(zip(shape, spacing_zyx)):
        v = (np.arange(n, dtype=np.float32) + 0.5 - n / 2.0) * np.float32(s)
        sh = [1, 1, 1]
        sh[axis] = n
        out.append(v.reshape(sh))
    return out


def bias_field(rng: np.random.Generator, z: np.ndarray, y: np.ndarray, x: np.ndarray, half: Sequence[float],
                strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum of random low-order polynomial terms)`` over normalised coordinates."""
    zn, yn, xn = z / np.float32(max(half[0], 1e-3)), y / np.float32(half[1]), x / np.float32(half[2])
    c = rng.uniform(-strength, strength, 7).astype(np.float32)
    log = c[0] * xn + c[1] * yn + c[2] * zn + c[3] * xn * xn + c[4] * yn * yn + c[5] * xn * yn + c[6] * zn * zn
    return np.exp(log)


def smooth_noise(rng: np.random.Generator, coords: Sequence[np.ndarray], waves: int, wavelength: tuple[float, float]
                  ) -> np.ndarray:
    """Smooth random field in [-1, 1]: a sum of ``waves`` random plane sinusoids (wavelengths in mm)."""
    total = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), dtype=np.float32)
    for _ in range(waves):
        d = rng.normal(size=len(coords))
        d /= np.linalg.norm(d) + 1e-9
        k = 2 * math.pi / rng.uniform(*wavelength)
        phase = sum(np.float32(k * di) * c for di, c in zip(d, coords))
        total += np.sin(phase + np.float32(rng.uniform(0, 2 * math.pi)))
    return total / np.float32(max(waves, 1))


def rician(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician): ``sqrt((I + n1)^2 + n2^2)``."""
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt((img + n1) ** 2 + n2 ** 2)
