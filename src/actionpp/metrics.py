"""Segmentation metrics in millimetres: Dice, Jaccard, HD95 and ASD per class (MONAI).

Distances use the voxel spacing (the official evaluation ignores it, method.md §6). Conventions for empty masks,
per class and case:

* prediction and ground truth both empty: Dice = Jaccard = 1, HD95 = ASD = 0;
* ground truth has the structure, prediction has none (``missed``): Dice = Jaccard = 0 and HD95 = ASD = the
  penalty P;
* prediction has the structure, ground truth has none (``spurious``): Dice = Jaccard = 0, HD95 = ASD = P.

The penalty P is the diagonal of the image in mm, P = sqrt(sum_i (n_i * s_i)^2) over the image axes (size n_i,
spacing s_i; s_i = 1 without spacing): no surface distance inside the image can exceed it, so a method that misses
a structure is never ranked above one that finds it badly. Distances stay in the means (no NaN dropping out), and
the summary counts the missed and spurious cases per class.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_dice, compute_iou

METRICS = ("dice", "jaccard", "hd95", "asd")


def _onehot(label: np.ndarray, classes: Sequence[int]) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(label).astype(np.int64))
    return torch.stack([t == c for c in classes]).unsqueeze(0).float()  # 1, K, *S


def _array_spacing(spacing: Sequence[float] | None, ndim: int) -> list[float] | None:
    """ITK (x, y, z) spacing -> the array's axis order (z, y, x), last ``ndim`` axes."""
    return None if spacing is None else [float(s) for s in tuple(spacing)[::-1][-ndim:]]


def distance_penalty(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """HD95/ASD given to a missed or spurious structure: the image diagonal sqrt(sum (n_i s_i)^2) in mm.

    Args:
        shape: array shape (z, y, x) or (y, x).
        spacing: voxel size in ITK (x, y, z) order, or None for voxel units.
    """
    sp = _array_spacing(spacing, len(shape)) or [1.0] * len(shape)
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))


def case_metrics(pred: np.ndarray, gt: np.ndarray, classes: dict[str, int],
                 spacing: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
    """Per foreground class metrics of one case.

    Args:
        pred, gt: integer label maps of the same shape (z, y, x).
        classes: name -> label value; background (value 0) is skipped.
        spacing: voxel size in mm in ITK (x, y, z) order, or None for voxels.

    Returns:
        name -> {"dice", "jaccard", "hd95", "asd": float, "missed": bool, "spurious": bool}.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    fg = {n: v for n, v in classes.items() if v != 0}
    values = list(fg.values())
    p, g = _onehot(pred, values), _onehot(gt, values)
    sp = _array_spacing(spacing, pred.ndim)
    penalty = distance_penalty(pred.shape, spacing)
    with warnings.catch_warnings():  # MONAI warns on empty masks; handled explicitly below
        warnings.simplefilter("ignore")
        dice, iou, hd, asd = _monai_metrics(p, g, sp)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(fg):
        p_empty, g_empty = not bool(p[0, k].any()), not bool(g[0, k].any())
        if p_empty and g_empty:
            row = {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}
        elif p_empty or g_empty:
            row = {"dice": 0.0, "jaccard": 0.0, "hd95": penalty, "asd": penalty}
        else:
            row = {"dice": float(dice[k]), "jaccard": float(iou[k]), "hd95": float(hd[k]), "asd": float(asd[k])}
        out[name] = {**row, "missed": p_empty and not g_empty, "spurious": g_empty and not p_empty}
    return out


def _monai_metrics(p: torch.Tensor, g: torch.Tensor, sp):
    return (compute_dice(p, g, include_background=True, ignore_empty=False)[0],
            compute_iou(p, g, include_background=True, ignore_empty=False)[0],
            compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp)[0],
            compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=sp)[0])


def summarize(per_case: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean over cases for each class and metric, the counts ``missed`` / ``spurious`` / ``cases`` per class,
    and a ``mean`` row (mean over classes of the class means; ``missed`` summed). Missed structures enter the
    distance means with their penalty (see the module docstring); a value that is not finite becomes None."""
    classes: list[str] = []
    for m in per_case.values():
        classes += [c for c in m if c not in classes]
    summary: dict[str, dict[str, Any]] = {}
    for c in classes:
        rows = [m[c] for m in per_case.values() if c in m]
        row: dict[str, Any] = {k: _mean([r[k] for r in rows]) for k in METRICS}
        row["missed"] = sum(bool(r.get("missed")) for r in rows)
        row["spurious"] = sum(bool(r.get("spurious")) for r in rows)
        row["cases"] = len(rows)
        summary[c] = row
    mean: dict[str, Any] = {k: _mean([summary[c][k] for c in classes]) for k in METRICS}
    mean["missed"] = sum(summary[c]["missed"] for c in classes)
    mean["spurious"] = sum(summary[c]["spurious"] for c in classes)
    summary["mean"] = mean
    return summary


def _mean(vals: list[Any]) -> float | None:
    vals = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def strict_json(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float replaced by None, for ``json.dumps(allow_nan=False)``."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: class, Dice, Jaccard, HD95 (mm), ASD (mm), missed cases (distances include penalties)."""
    f = lambda v, w, d: f"{'-':>{w}}" if v is None else f"{v:>{w}.{d}f}"  # noqa: E731
    lines = [f"{'class':<14}{'Dice':>8}{'Jaccard':>9}{'HD95':>9}{'ASD':>9}{'missed':>8}"]
    for c, r in summary.items():
        lines.append(f"{c:<14}{f(r['dice'], 8, 4)}{f(r['jaccard'], 9, 4)}{f(r['hd95'], 9, 3)}{f(r['asd'], 9, 3)}"
                     f"{r.get('missed', 0):>8d}")
    return "\n".join(lines)
