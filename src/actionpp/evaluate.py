"""``actionpp evaluate``: metrics of predicted label files against ground truth, matched by case name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from actionpp.data.io import DataError, read_image
from actionpp.data.layout import case_name, find_images
from actionpp.metrics import case_metrics, format_table, strict_json, summarize


def _labels(path: str | Path | None, values: set[int]) -> dict[str, int]:
    if path is None:
        return {str(v): v for v in sorted(values | {0})}
    try:
        labels = json.loads(Path(path).read_text())["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: expected a dataset.json with a 'labels' mapping ({type(e).__name__})") from None
    return {str(k): int(v) for k, v in labels.items()}


def evaluate_paths(pred: str | Path, gt: str | Path, labels: str | Path | None = None,
                   out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Per case and per class Dice, Jaccard, HD95 and ASD (mm); prints a summary table; optionally writes JSON.

    Missed structures (truth present, prediction empty) get the image-diagonal distance penalty and are counted
    per class as ``missed`` (see :mod:`actionpp.metrics`); the JSON file is strict (null, never NaN)."""
    preds = {case_name(p): p for p in find_images(pred)}
    gts = {case_name(p): p for p in find_images(gt)}
    missing = sorted(set(gts) - set(preds)) if Path(gt).is_dir() else []
    if missing:
        raise DataError(f"{pred}: expected a prediction for every ground-truth case, missing {', '.join(missing[:5])}")
    pairs = list(zip(preds.values(), gts.values())) if Path(gt).is_file() else [(preds[k], gts[k]) for k in gts]
    loaded = []
    for p, g in pairs:
        p_arr, p_geo = read_image(p, kind="label")
        g_arr, g_geo = read_image(g, kind="label")
        if not p_geo.matches(g_geo):
            raise DataError(f"{p}: expected the geometry of {g}, found a different size/spacing/origin/direction")
        loaded.append((case_name(g), p_arr, g_arr, g_geo))
    classes = _labels(labels, {int(v) for _, _, g_arr, _ in loaded for v in np.unique(g_arr)})
    per_case = {name: case_metrics(p_arr, g_arr, classes, geo.spacing) for name, p_arr, g_arr, geo in loaded}
    result = strict_json({"per_case": per_case, "summary": summarize(per_case)})
    if not quiet:
        print(format_table(result["summary"]))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
