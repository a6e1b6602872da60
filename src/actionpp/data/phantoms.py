"""Synthetic datasets for demos and tests, written in the nnU-Net v2 raw layout.

Two kinds:

* ``cardiac``: short-axis cine-MRI-like stacks, default ``(Z, Y, X) = (10, 128, 128)``, about 1.5 mm in-plane and
  8-10 mm between slices. Classes 0 background, 1 RV (crescent beside the LV), 2 MYO (ring), 3 LV (bright cavity),
  4 PAP (two small papillary muscles inside the cavity, a few tenths of a percent of the voxels: the rare class).
  Ventricles taper from base (slice 0) to apex; shape, pose, size, contrast, bias field and noise vary per case; the
  body has a fat rim, dark lungs, a liver, a bright descending aorta and bright pericardial fat as distractors, and
  the RV free wall is myocardium-dark but labelled background.
* ``atrium``: LA-like volumes, default ``(48, 64, 64)`` at 1 mm isotropic. One irregular blob (smooth-noise surface)
  with 2-4 thin curved pulmonary-vein tubes is the foreground (1 LA); a bright LV and descending aorta, a dark atrial
  wall and lungs are background. Intensities are z-scored.

A ``size`` override keeps the physical field of view of the default size (the spacing scales), so tiny test volumes
show the same anatomy, coarsely. Every case is drawn from ``numpy.random.default_rng([seed, kind, index])``: the
same seed gives byte-identical files, and case ``i`` does not depend on how many cases are made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from actionpp.data import phantom_fields as pf
from actionpp.data import phantom_variants as pv
from actionpp.data.io import IMAGE_SUFFIXES, DataError, Geometry, write_image
from actionpp.data.phantom_variants import Variant

KINDS = ("cardiac", "atrium")
DEFAULT_SIZE = {"cardiac": (10, 128, 128), "atrium": (48, 64, 64)}
CARDIAC_LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "PAP": 4}
ATRIUM_LABELS = {"background": 0, "LA": 1}


# ----------------------------------------------------------------------------------------------------------------
# cardiac
# ----------------------------------------------------------------------------------------------------------------
def cardiac_case(rng: np.random.Generator, size: Sequence[int] = DEFAULT_SIZE["cardiac"],
                 variant: Variant | None = None, vrng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One synthetic short-axis cine stack.

    Args:
        rng: the case's generator (all randomness of the default phantom comes from it).
        size: ``(Z, Y, X)``.
        variant: spacing / oblique / intensity changes (:mod:`actionpp.data.phantom_variants`); None: default.
        vrng: generator of the variant's own draws (per-case rotation and gamma).

    Returns:
        ``(image, label, geometry)``: ``(Z, Y, X)`` float32 MR-like magnitudes (arbitrary positive scale), uint8 labels
        in ``0..4`` (:data:`CARDIAC_LABELS`), and the grid (ITK spacing ``(sx, sy, sz)``, random origin, identity
        direction). Slice 0 is the base, the last slice near the apex.
    """
    Z, Y, X = (int(s) for s in size)
    d0 = DEFAULT_SIZE["cardiac"]
    s_in, s_z = rng.uniform(1.35, 1.65), rng.uniform(8.0, 10.0)
    if variant is not None and variant.spacing is not None:
        s_in, s_z = variant.spacing
    sx, sy, sz = s_in * d0[2] / X, s_in * d0[1] / Y, s_z * d0[0] / Z
    z, y, x = pf.grid((Z, Y, X), (sz, sy, sx))
    vrng = vrng if vrng is not None else np.random.default_rng(0)
    angle = pv.rotation(variant, vrng)
    x, y = pv.rotate_plane(x, y, angle)
    t = ((np.arange(Z, dtype=np.float32) + 0.5) / Z).reshape(Z, 1, 1)  # 0 base .. 1 apex

    # --- body, lungs, liver, aorta (background structures) ---------------------------------------------------
    body_a, body_b = rng.uniform(0.80, 0.95) * X * sx / 2, rng.uniform(0.62, 0.75) * Y * sy / 2
    body_c = (rng.uniform(-5, 5), rng.uniform(-5, 10))
    body_r = np.sqrt(((x - body_c[0]) / body_a) ** 2 + ((y - body_c[1]) / body_b) ** 2)
    body = body_r <= 1.0
    fat = body & (body_r > 1.0 - rng.uniform(8, 12) / min(body_a, body_b))
    lungs = np.zeros((1, Y, X), dtype=bool)
    for side in (-1, 1):
        lc = (side * body_a * rng.uniform(0.45, 0.55), body_c[1] + rng.uniform(-10, 0))
        la, lb = body_a * rng.uniform(0.28, 0.34), body_b * rng.uniform(0.55, 0.7)
        lungs = lungs | ((((x - lc[0]) / la) ** 2 + ((y - lc[1]) / lb) ** 2) <= 1.0)
    lungs = lungs & body & ~fat
    liver_c = (-body_a * rng.uniform(0.2, 0.35), body_b * rng.uniform(0.55, 0.75))
    liver = ((((x - liver_c[0]) / (body_a * 0.55)) ** 2 + ((y - liver_c[1]) / (body_b * 0.45)) ** 2)
             <= (0.3 + 0.9 * t)) & body & ~fat  # grows towards the apex (inferior slices)

    # --- ventricles -------------------------------------------------------------------------------------------
    t_apex = rng.uniform(0.95, 1.15)
    f = np.sqrt(np.clip(1.0 - (t / np.float32(t_apex)) ** rng.uniform(1.8, 2.6), 0.0, 1.0)).astype(np.float32)
    r0 = rng.uniform(20.0, 27.0)
    r = np.maximum(r0 * f, 0.3 * r0)  # LV cavity radius per slice (mm)
    w = rng.uniform(7.0, 11.0) * (0.8 + 0.2 * f)  # myocardial wall thickness per slice (mm)
    ecc, orient = rng.uniform(0.0, 0.15), rng.uniform(0, math.pi)
    cx = rng.uniform(-12, 12) + rng.uniform(-8, 8) * t
    cy = rng.uniform(-12, 6) + rng.uniform(-8, 8) * t
    u, v = pv.rotate_plane(x - cx, y - cy, orient)
    theta = np.arctan2(v, u)
    harm = 1.0 + sum(np.float32(rng.uniform(0, 0.05)) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * math.pi)))
                     for k in (2, 3))
    rho_lv = np.sqrt((u / (r * (1 + ecc))) ** 2 + (v / (r * (1 - ecc))) ** 2) / harm
    rho_out = np.sqrt((u / ((r + w) * (1 + ecc))) ** 2 + (v / ((r + w) * (1 - ecc))) ** 2) / harm
    lv = rho_lv <= 1.0
    outer = rho_out <= 1.0
    myo = outer & ~lv

    psi = math.pi + 0.3 + rng.uniform(-0.4, 0.4)  # LV -> RV direction (image left, slightly up)
    t_rv = t_apex * rng.uniform(0.75, 0.9)
    f_rv = np.sqrt(np.clip(1.0 - (t / np.float32(t_rv)) ** 2, 0.0, 1.0)).astype(np.float32)
    d_rv = (r0 + w) * rng.uniform(0.75, 0.95)
    ru, rv_ = pv.rotate_plane(x - (cx + d_rv * math.cos(psi)), y - (cy + d_rv * math.sin(psi)), psi)
    rad, tan = (r0 + w) * rng.uniform(0.75, 0.95) * f_rv + 1e-3, (r0 + w) * rng.uniform(1.35, 1.6) * f_rv + 1e-3
    rho_rv = np.sqrt((ru / rad) ** 2 + (rv_ / tan) ** 2)
    rv = (rho_rv <= 1.0) & ~outer
    rv_wall_mm = rng.uniform(2.5, 4.0)
    rv_wall = (rho_rv <= 1.0 + rv_wall_mm / rad) & ~rv & ~outer & (f_rv > 0.05)

    pap_r = max(rng.uniform(3.5, 5.0), 0.75 * max(sx, sy))
    pap = np.zeros((Z, Y, X), dtype=bool)
    pap_centres = []
    for sign in (-1, 1):
        alpha = psi + math.pi + sign * rng.uniform(0.6, 1.0)
        pr = rng.uniform(0.5, 0.65) * r
        pcx, pcy = cx + pr * math.cos(alpha), cy + pr * math.sin(alpha)
        pap_centres.append((pcx, pcy))
        pap |= (((x - pcx) ** 2 + (y - pcy) ** 2) <= pap_r ** 2) & (t < 0.7)
    pap &= lv

    peri = (rho_out <= 1.0 + rng.uniform(3, 5) / (r0 + w)) & ~outer & ~rv & ~rv_wall
    peri &= np.cos(theta - np.float32(rng.uniform(0, 2 * math.pi))) > 0.2  # fat covers part of the heart only
    ao_c = (cx + rng.uniform(10, 30), cy + r0 + rng.uniform(35, 50))
    aorta = (((x - ao_c[0]) ** 2 + (y - ao_c[1]) ** 2) <= rng.uniform(9, 13) ** 2) & body

    heart = outer | rv | rv_wall | peri
    # --- label -----------------------------------------------------------------------------------------------
    label = np.zeros((Z, Y, X), dtype=np.uint8)
    label[rv] = 1
    label[myo] = 2
    label[lv] = 3
    label[pap] = 4
    if not (label == 4).any() and angle != 0.0:  # rotated grid: nearest voxel centre on the basal slice
        d2 = np.broadcast_to((x - pap_centres[0][0]) ** 2 + (y - pap_centres[0][1]) ** 2, (1, Y, X))[0]
        iy, ix = np.unravel_index(int(np.argmin(d2)), (Y, X))
        label[0, iy, ix] = 4
    if not (label == 4).any():  # guarantee the rare class: nearest voxel to a muscle centre on the basal slice
        iy = int(np.clip(np.floor(pap_centres[0][1] / sy + Y / 2.0), 0, Y - 1))
        ix = int(np.clip(np.floor(pap_centres[0][0] / sx + X / 2.0), 0, X - 1))
        label[0, iy, ix] = 4

    # --- intensities -----------------------------------------------------------------------------------------
    alt = pv.ALT_LEVELS if variant is not None and variant.intensity == "alt" else {}

    def lvl(mean: float, jitter: float = 0.06, tissue: str = "") -> np.float32:
        return np.float32(alt.get(tissue, mean) + rng.uniform(-jitter, jitter))

    img = np.full((Z, Y, X), lvl(0.03, 0.02), dtype=np.float32)
    img[np.broadcast_to(body, img.shape)] = lvl(0.36, tissue="body")
    img[np.broadcast_to(fat, img.shape)] = lvl(0.75, tissue="fat")
    img[np.broadcast_to(lungs, img.shape) & ~heart] = lvl(0.06, 0.03, "lung")
    img[liver & ~heart & ~lungs] = lvl(0.42, tissue="liver")
    img[np.broadcast_to(aorta, img.shape) & ~heart] = lvl(0.85, tissue="aorta")
    img[peri] = lvl(0.78, tissue="peri")
    img[rv_wall] = lvl(0.3, tissue="rv_wall")
    img[label == 1] = lvl(0.86, tissue="RV")
    img[label == 2] = lvl(0.3, tissue="MYO")
    img[label == 3] = lvl(0.92, tissue="LV")
    img[label == 4] = lvl(0.34, tissue="PAP")
    img = pv.apply_gamma(gaussian_filter(img, sigma=(0, 0.7, 0.7), mode="nearest"), variant, vrng)
    img *= pf.bias_field(rng, z, y, x, (Z * sz / 2, Y * sy / 2, X * sx / 2), 0.25)
    img = pf.rician(rng, img, rng.uniform(0.02, 0.05)) * np.float32(rng.uniform(150, 400))

    origin = (-X * sx / 2 + rng.uniform(-30, 30), -Y * sy / 2 + rng.uniform(-30, 30), rng.uniform(-60, 40))
    geometry = Geometry.from_shape((Z, Y, X), (sx, sy, sz), origin, pv.direction(angle))
    return img.astype(np.float32), label, geometry


# ----------------------------------------------------------------------------------------------------------------
# atrium
# ----------------------------------------------------------------------------------------------------------------
def _tube(z: np.ndarray, y: np.ndarray, x: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within ``radius`` (mm) of the polyline through ``points`` (``(n, 3)`` z, y, x in mm)."""
    inside = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=bool)
    for a, b in zip(points[:-1], points[1:]):
        d = (b - a).astype(np.float32)
        dd = float(d @ d) + 1e-9
        s = np.clip(((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / np.float32(dd), 0.0, 1.0)
        dist2 = (z - a[0] - s * d[0]) ** 2 + (y - a[1] - s * d[1]) ** 2 + (x - a[2] - s * d[2]) ** 2
        inside |= dist2 <= radius * radius
    return inside


def atrium_case(rng: np.random.Generator, size: Sequence[int] = DEFAULT_SIZE["atrium"]
                ) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One synthetic LA-like volume.

    Args:
        rng: the case's generator.
        size: ``(Z, Y, X)``.

    Returns:
        ``(image, label, geometry)``: ``(Z, Y, X)`` float32 z-scored intensities, uint8 labels in {0, 1}
        (:data:`ATRIUM_LABELS`), and the grid (1 mm isotropic at the default size, random origin, identity direction).
    """
    Z, Y, X = (int(s) for s in size)
    d0 = DEFAULT_SIZE["atrium"]
    sz, sy, sx = d0[0] / Z, d0[1] / Y, d0[2] / X
    z, y, x = pf.grid((Z, Y, X), (sz, sy, sx))
    half = np.array([Z * sz, Y * sy, X * sx], dtype=np.float64) / 2

    # LA body: ellipsoid with a smooth-noise surface
    c = rng.uniform(-3, 3, 3) + np.array([0.0, -2.0, 0.0])
    axes = np.array([rng.uniform(9, 12), rng.uniform(11, 15), rng.uniform(13, 18)])
    yaw = rng.uniform(-0.5, 0.5)
    u, v = pv.rotate_plane(x - np.float32(c[2]), y - np.float32(c[1]), yaw)
    w = z - np.float32(c[0])
    rho = np.sqrt((w / axes[0]) ** 2 + (v / axes[1]) ** 2 + (u / axes[2]) ** 2)
    noise = pf.smooth_noise(rng, (z, y, x), waves=6, wavelength=(12.0, 30.0))
    la = rho <= 1.0 + 0.18 * noise

    # pulmonary veins: 2-4 thin, bent tubes leaving the posterior-lateral surface
    n_veins = int(rng.integers(2, 5))
    sides = [-1, 1, -1, 1][:n_veins]
    min_r = 0.55 * max(sx, sy, sz)
    for side in sides:
        dvec = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.3, 0.8), side * rng.uniform(0.6, 1.0)])
        dvec /= np.linalg.norm(dvec)
        start = c + 0.7 * axes * dvec
        bend = rng.normal(scale=0.35, size=3)
        length = rng.uniform(12, 22)
        mid = start + 0.5 * length * dvec
        end = mid + 0.5 * length * (dvec + bend) / np.linalg.norm(dvec + bend)
        la |= _tube(z, y, x, np.stack([start, mid, end]), max(rng.uniform(1.6, 2.6), min_r))
    interior = np.zeros_like(la)
    interior[1:-1, 1:-1, 1:-1] = True
    la &= interior | (Z < 3) | (Y < 3) | (X < 3)  # keep the foreground off the border when there is room

    # background: LV (bright, anterior-inferior), descending aorta (posterior tube), lungs (dark)
    lv_c = c + np.array([rng.uniform(6, 12), -axes[1] - rng.uniform(10, 16), rng.uniform(-8, 8)])
    lv_ax = np.array([rng.uniform(10, 14), rng.uniform(9, 12), rng.uniform(12, 16)])
    lv = (((z - lv_c[0]) / lv_ax[0]) ** 2 + ((y - lv_c[1]) / lv_ax[1]) ** 2 + ((x - lv_c[2]) / lv_ax[2]) ** 2) <= 1
    ao_c = (c[1] + axes[1] + rng.uniform(6, 12), c[2] + rng.uniform(-10, 10))
    aorta = ((y - np.float32(ao_c[0])) ** 2 + (x - np.float32(ao_c[1])) ** 2) <= rng.uniform(6, 9) ** 2
    lungs = (np.abs(x) > half[2] * rng.uniform(0.7, 0.85)) & (y > -half[1] * 0.2)
    atrial_wall = (rho <= 1.0 + 0.18 * noise + 2.0 / axes.min()) & ~la

    def lvl(mean: float, jitter: float = 0.06) -> np.float32:
        return np.float32(mean + rng.uniform(-jitter, jitter))

    texture = pf.smooth_noise(rng, (z, y, x), waves=5, wavelength=(6.0, 20.0))
    img = lvl(0.35) + np.float32(0.06) * texture
    img = np.broadcast_to(img, (Z, Y, X)).astype(np.float32)
    img[np.broadcast_to(lungs, img.shape)] = lvl(0.08, 0.03)
    img[np.broadcast_to(aorta, img.shape)] = lvl(0.85)
    img[lv & ~la] = lvl(0.78)
    img[atrial_wall] = lvl(0.22)
    img[la] = lvl(0.8)
    img = gaussian_filter(img, sigma=0.6, mode="nearest")
    img *= pf.bias_field(rng, z, y, x, tuple(half), 0.3)
    img = pf.rician(rng, img, rng.uniform(0.03, 0.07))
    img = (img - img.mean()) / np.float32(img.std() + 1e-6)

    label = la.astype(np.uint8)
    origin = tuple(float(-h + rng.uniform(-20, 20)) for h in half[::-1])
    geometry = Geometry.from_shape((Z, Y, X), (sx, sy, sz), origin)
    return img.astype(np.float32), label, geometry


# ----------------------------------------------------------------------------------------------------------------
# dataset writer
# ----------------------------------------------------------------------------------------------------------------
def _int_arg(flag: str, value: Any, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise DataError(f"{flag}: expected an integer >= {low}, found {value!r}")
    return int(value)


def phantom_case(kind: str, seed: int, index: int, size: Sequence[int] | None = None,
                 variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Case ``index`` of a phantom dataset (a pure function of ``kind, seed, index, size, variant``)."""
    rng = np.random.default_rng([int(seed), KINDS.index(kind), int(index)])
    size = tuple(size) if size is not None else DEFAULT_SIZE[kind]
    if kind != "cardiac":
        if variant is not None and not variant.is_default:
            raise DataError("--spacing/--oblique/--intensity: only the cardiac phantom has variants")
        return atrium_case(rng, size)
    return cardiac_case(rng, size, variant, np.random.default_rng([int(seed), KINDS.index(kind), int(index), 1]))


def make_phantoms(kind: str, cases: int, labeled: int, out: str | Path, seed: int = 0, test_cases: int = 4,
                  size: Sequence[int] | None = None, file_ending: str = ".nii.gz",
                  variant: Variant | None = None) -> Path:
    """Write a synthetic nnU-Net v2 raw dataset.

    Layout::

        out/dataset.json
        out/imagesTr/<kind>_<iii>_0000<ext>   i = 0 .. cases-1
        out/labelsTr/<kind>_<iii><ext>        i = 0 .. labeled-1 (the other training cases are unlabeled)
        out/imagesTs/<kind>_<iii>_0000<ext>   i = cases .. cases+test_cases-1
        out/labelsTs/<kind>_<iii><ext>

    Args:
        kind: ``"cardiac"`` or ``"atrium"``.
        cases: training cases (>= 1).
        labeled: how many of them get label files (1 .. cases); the first ones in sorted order.
        out: a new or empty folder.
        seed: integer >= 0; the same seed gives byte-identical files.
        test_cases: held-out cases with labels (>= 0).
        size: ``(Z, Y, X)`` override of the default size (each >= 1, Y and X >= 8).
        file_ending: one of :data:`~actionpp.data.io.IMAGE_SUFFIXES`.
        variant: cardiac only: spacing / oblique / intensity changes (:class:`Variant`); None: default phantoms.

    Returns:
        ``out`` as a :class:`Path`.

    Raises:
        DataError: naming the flag of an invalid argument, or ``out`` if it exists and is not an empty folder.
    """
    if kind not in KINDS:
        raise DataError(f"--kind: expected one of {', '.join(KINDS)}, found {kind!r}")
    cases = _int_arg("--cases", cases, 1)
    labeled = _int_arg("--labeled", labeled, 1)
    if labeled > cases:
        raise DataError(f"--labeled: expected at most --cases ({cases}), found {labeled}")
    test_cases = _int_arg("--test-cases", test_cases, 0)
    seed = _int_arg("--seed", seed, 0)
    if size is not None:
        try:
            size = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise DataError(f"--size: expected 3 integers Z Y X, found {size!r}") from None
        if len(size) != 3 or size[0] < 1 or min(size[1:]) < 8:
            raise DataError(f"--size: expected 3 integers Z Y X (Z >= 1, Y and X >= 8), found {list(size)}")
    if not isinstance(file_ending, str) or file_ending.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"--file-ending: expected one of {', '.join(IMAGE_SUFFIXES)}, found {file_ending!r}")
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: expected a new or empty folder, found a file")
        n = sum(1 for _ in out.iterdir())
        if n:
            raise DataError(f"{out}: expected a new or empty folder, found {n} existing entr{'y' if n == 1 else 'ies'} "
                            f"(not overwriting)")
    out.mkdir(parents=True, exist_ok=True)

    for i in range(cases + test_cases):
        image, label, geometry = phantom_case(kind, seed, i, size, variant)
        name = f"{kind}_{i:03d}"
        split = "Tr" if i < cases else "Ts"
        write_image(image, geometry, out / f"images{split}" / f"{name}_0000{file_ending}", overwrite=False)
        if i < labeled or i >= cases:
            write_image(label, geometry, out / f"labels{split}" / f"{name}{file_ending}", overwrite=False)

    meta = {
        "name": f"ACTIONpp phantom {kind}",
        "description": f"Synthetic {kind} phantoms made by actionpp.data.phantoms (seed {seed}); "
                       f"{labeled} of {cases} training cases labeled.",
        "channel_names": {"0": "MRI"},
        "labels": dict(CARDIAC_LABELS if kind == "cardiac" else ATRIUM_LABELS),
        "numTraining": cases,
        "numTest": test_cases,
        "file_ending": file_ending,
        "actionpp_phantom": {"kind": kind, "seed": seed, "cases": cases, "labeled": labeled,
                             "test_cases": test_cases, "size": list(size or DEFAULT_SIZE[kind]),
                             **({"variant": variant.to_dict()} if variant is not None else {})},
    }
    tmp = out / ".dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "dataset.json")
    return out
