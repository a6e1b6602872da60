import json
import math

import numpy as np

from actionpp.metrics import case_metrics, distance_penalty, strict_json, summarize


def test_dice_jaccard_and_mm_distances_by_hand():
    gt = np.zeros((1, 10, 10), int)
    gt[0, 2:6, 2:6] = 1           # 16 voxels
    pred = np.zeros_like(gt)
    pred[0, 2:6, 3:7] = 1         # shifted one voxel along x; overlap 12
    m = case_metrics(pred, gt, {"bg": 0, "a": 1}, spacing=(2.0, 1.0, 5.0))["a"]
    assert math.isclose(m["dice"], 2 * 12 / 32)
    assert math.isclose(m["jaccard"], 12 / 20, rel_tol=1e-6)
    assert math.isclose(m["hd95"], 2.0)   # one voxel along x is 2 mm
    m1 = case_metrics(pred, gt, {"bg": 0, "a": 1}, spacing=None)["a"]
    assert math.isclose(m1["hd95"], 1.0)


def test_empty_mask_conventions_penalty_and_summary():
    gt = np.zeros((2, 6, 6), int)
    gt[0, 1:3, 1:3] = 2
    pred = np.zeros_like(gt)
    sp = (1.0, 2.0, 3.0)                                  # x, y, z
    diag = math.sqrt((2 * 3.0) ** 2 + (6 * 2.0) ** 2 + (6 * 1.0) ** 2)
    assert math.isclose(distance_penalty(gt.shape, sp), diag)
    m = case_metrics(pred, gt, {"bg": 0, "a": 1, "b": 2}, spacing=sp)
    assert m["a"] == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "missed": False, "spurious": False}
    assert m["b"] == {"dice": 0.0, "jaccard": 0.0, "hd95": diag, "asd": diag, "missed": True, "spurious": False}
    s = summarize({"c1": m, "c2": m})
    assert s["b"]["missed"] == 2 and s["b"]["cases"] == 2 and s["a"]["missed"] == 0
    assert math.isclose(s["b"]["hd95"], diag) and math.isclose(s["mean"]["hd95"], diag / 2)
    assert math.isclose(s["mean"]["dice"], 0.5) and s["mean"]["missed"] == 2


def test_spurious_structure_is_penalised_not_counted_missed():
    gt = np.zeros((1, 8, 8), int)
    pred = gt.copy()
    pred[0, 2:4, 2:4] = 1
    m = case_metrics(pred, gt, {"bg": 0, "a": 1}, spacing=None)["a"]
    assert m["spurious"] and not m["missed"] and m["dice"] == 0.0
    assert math.isclose(m["hd95"], math.sqrt(1 + 64 + 64))


def test_missing_a_structure_never_beats_finding_it_badly():
    """The distance mean must rank a method that misses the rare class below one that finds it far off."""
    gt = np.zeros((1, 32, 32), int)
    gt[0, 2:6, 2:6] = 1
    gt[0, 20:30, 20:30] = 2
    found_far = gt.copy()
    found_far[0, 2:6, 2:6] = 0
    found_far[0, 26:30, 2:6] = 1                             # rare class found 24 px away
    missed = gt.copy()
    missed[0, 2:6, 2:6] = 0                                  # rare class missed
    cls = {"bg": 0, "rare": 1, "big": 2}
    far = summarize({"c": case_metrics(found_far, gt, cls)})
    miss = summarize({"c": case_metrics(missed, gt, cls)})
    assert miss["mean"]["hd95"] > far["mean"]["hd95"] > 0
    assert miss["rare"]["missed"] == 1 and far["rare"]["missed"] == 0


def test_strict_json_replaces_non_finite_values():
    out = strict_json({"a": [1.0, math.nan], "b": {"c": math.inf}, "d": "x"})
    assert out == {"a": [1.0, None], "b": {"c": None}, "d": "x"}
    json.dumps(out, allow_nan=False)
    assert summarize({})["mean"]["dice"] is None
