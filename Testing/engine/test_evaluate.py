import json

import numpy as np
import pytest

from actionpp.data.io import DataError, Geometry, write_image
from actionpp.evaluate import evaluate_paths

GEO = Geometry(spacing=(2.0, 1.0, 5.0), size=(10, 10, 1))


def _pair(tmp_path, shift=1, pred_geo=GEO):
    gt = np.zeros((1, 10, 10), np.uint8)
    gt[0, 2:6, 2:6] = 1
    pred = np.roll(gt, shift, axis=2)
    write_image(gt, GEO, tmp_path / "gt" / "c1.nii.gz")
    write_image(pred, pred_geo, tmp_path / "pred" / "c1.nii.gz")


def test_folder_metrics_in_mm_and_json(tmp_path, capsys):
    _pair(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "LA": 1}}))
    out = evaluate_paths(tmp_path / "pred", tmp_path / "gt", tmp_path / "dataset.json", tmp_path / "m.json")
    assert out["per_case"]["c1"]["LA"]["dice"] == pytest.approx(0.75)
    assert out["summary"]["LA"]["hd95"] == pytest.approx(2.0)  # one voxel along x = 2 mm
    assert json.loads((tmp_path / "m.json").read_text())["summary"]["LA"]["dice"] == pytest.approx(0.75)
    assert "LA" in capsys.readouterr().out


def test_geometry_mismatch_and_missing_case_are_one_line_errors(tmp_path):
    _pair(tmp_path, pred_geo=Geometry(spacing=(1.0, 1.0, 5.0), size=(10, 10, 1)))
    with pytest.raises(DataError, match="c1.nii.gz: expected the geometry"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    write_image(np.zeros((1, 10, 10), np.uint8), GEO, tmp_path / "gt" / "c2.nii.gz")
    with pytest.raises(DataError, match="missing c2"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt")
