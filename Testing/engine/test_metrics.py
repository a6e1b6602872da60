import math

import numpy as np

from actionpp.metrics import case_metrics, summarize


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


def test_empty_mask_conventions_and_summary():
    gt = np.zeros((2, 6, 6), int)
    gt[0, 1:3, 1:3] = 2
    pred = np.zeros_like(gt)
    m = case_metrics(pred, gt, {"bg": 0, "a": 1, "b": 2}, spacing=(1, 1, 1))
    assert m["a"] == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}  # absent in both
    assert m["b"]["dice"] == 0.0 and math.isnan(m["b"]["hd95"])            # missed entirely
    s = summarize({"c1": m, "c2": m})
    assert s["b"]["n_missing"] == 2 and math.isclose(s["mean"]["dice"], 0.5)
