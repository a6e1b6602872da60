"""Segmentation metrics in millimetres: Dice, Jaccard, HD95 and ASD per class (MONAI).

Distances use the voxel spacing (the official evaluation ignores it, method.md §6). Conventions for empty masks,
per class: prediction and ground truth both empty -> Dice = Jaccard = 1, HD95 = ASD = 0; exactly one empty ->
Dice = Jaccard = 0 and HD95 = ASD = NaN (undefined; skipped by the summary means, counted in ``n_missing``).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_dice, compute_iou


def _onehot(label: np.ndarray, classes: Sequence[int]) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(label).astype(np.int64))
    return torch.stack([t == c for c in classes]).unsqueeze(0).float()  # 1, K, *S


def case_metrics(pred: np.ndarray, gt: np.ndarray, classes: dict[str, int],
                 spacing: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Per foreground class metrics of one case.

    Args:
        pred, gt: integer label maps of the same shape (z, y, x).
        classes: name -> label value; background (value 0) is skipped.
        spacing: voxel size in mm in ITK (x, y, z) order, or None for voxels.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    fg = {n: v for n, v in classes.items() if v != 0}
    values = list(fg.values())
    p, g = _onehot(pred, values), _onehot(gt, values)
    sp = None if spacing is None else [float(s) for s in tuple(spacing)[::-1][-pred.ndim:]]
    with warnings.catch_warnings():  # MONAI warns on empty masks; handled explicitly below
        warnings.simplefilter("ignore")
        dice, iou, hd, asd = _monai_metrics(p, g, sp)
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(fg):
        p_empty, g_empty = not bool(p[0, k].any()), not bool(g[0, k].any())
        if p_empty and g_empty:
            out[name] = {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}
        elif p_empty or g_empty:
            out[name] = {"dice": 0.0, "jaccard": 0.0, "hd95": math.nan, "asd": math.nan}
        else:
            out[name] = {"dice": float(dice[k]), "jaccard": float(iou[k]), "hd95": float(hd[k]), "asd": float(asd[k])}
    return out


def _monai_metrics(p: torch.Tensor, g: torch.Tensor, sp):
    return (compute_dice(p, g, include_background=True, ignore_empty=False)[0],
            compute_iou(p, g, include_background=True, ignore_empty=False)[0],
            compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp)[0],
            compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=sp)[0])


def summarize(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean over cases for each class and metric (NaN skipped), plus a ``mean`` row over classes."""
    classes: list[str] = []
    for m in per_case.values():
        classes += [c for c in m if c not in classes]
    summary: dict[str, dict[str, float]] = {}
    for c in classes:
        row = {}
        for metric in ("dice", "jaccard", "hd95", "asd"):
            vals = [m[c][metric] for m in per_case.values() if c in m and not math.isnan(m[c][metric])]
            row[metric] = float(np.mean(vals)) if vals else math.nan
        row["n_missing"] = sum(1 for m in per_case.values() if c in m and math.isnan(m[c]["hd95"]))
        summary[c] = row
    summary["mean"] = {k: float(np.nanmean([summary[c][k] for c in classes])) if classes else math.nan
                       for k in ("dice", "jaccard", "hd95", "asd")}
    return summary


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A plain-text table: class, Dice, Jaccard, HD95 (mm), ASD (mm)."""
    lines = [f"{'class':<14}{'Dice':>8}{'Jaccard':>9}{'HD95':>9}{'ASD':>9}"]
    for c, r in summary.items():
        lines.append(f"{c:<14}{r['dice']:>8.4f}{r['jaccard']:>9.4f}{r['hd95']:>9.3f}{r['asd']:>9.3f}")
    return "\n".join(lines)
