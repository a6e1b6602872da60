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


def test_missed_case_is_counted_penalised_and_json_is_strict(tmp_path):
    _pair(tmp_path)
    gt2 = np.zeros((1, 10, 10), np.uint8)
    gt2[0, 1:4, 1:4] = 1
    write_image(gt2, GEO, tmp_path / "gt" / "c2.nii.gz")
    write_image(np.zeros_like(gt2), GEO, tmp_path / "pred" / "c2.nii.gz")      # structure missed in c2
    out = evaluate_paths(tmp_path / "pred", tmp_path / "gt", out=tmp_path / "m.json", quiet=True)
    diag = (20.0 ** 2 + 10.0 ** 2 + 5.0 ** 2) ** 0.5                           # 10 x 2mm, 10 x 1mm, 1 x 5mm
    assert out["per_case"]["c2"]["1"]["missed"] is True
    assert out["per_case"]["c2"]["1"]["hd95"] == pytest.approx(diag)
    assert out["summary"]["1"]["missed"] == 1
    assert out["summary"]["1"]["hd95"] == pytest.approx((2.0 + diag) / 2)     # penalty enters the mean
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_geometry_mismatch_and_missing_case_are_one_line_errors(tmp_path):
    _pair(tmp_path, pred_geo=Geometry(spacing=(1.0, 1.0, 5.0), size=(10, 10, 1)))
    with pytest.raises(DataError, match="c1.nii.gz: expected the geometry"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    write_image(np.zeros((1, 10, 10), np.uint8), GEO, tmp_path / "gt" / "c2.nii.gz")
    with pytest.raises(DataError, match="missing c2"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt")
