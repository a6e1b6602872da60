"""The model registry: runs with model.json + model.pt are listed, the others skipped with a reason."""

from __future__ import annotations

import json
import os

import pytest

from ACTIONppLogic.registry import listModels, readModel


def _run(folder, name, meta=None, model=True, checkpoint=False, config=True, mtime=None):
    run = folder / name
    run.mkdir(parents=True)
    if config:
        (run / "config.json").write_text("{}")
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.pt").write_bytes(b"x")
    if meta is not None:
        (run / "model.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    if model:
        (run / "model.pt").write_bytes(b"x")
    return run


def test_registry_lists_complete_runs_newest_first_and_says_why_others_are_skipped(tmp_path):
    labels = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    _run(tmp_path, "old", {"labels": labels, "method": "supervised", "dims": 2, "created": "2026-01-02T10:00:00+00:00",
                           "val_dice": None, "iterations": 100})
    _run(tmp_path, "new", {"labels": labels, "method": "actionpp", "dims": 3, "created": "2026-03-04T11:22:33+00:00",
                           "val_dice": 0.8712, "iterations": 2000})
    _run(tmp_path, "cancelled", checkpoint=True, model=False)
    _run(tmp_path, "just started", model=False)
    _run(tmp_path, "broken", "{not json")
    _run(tmp_path, "no weights", {"labels": labels}, model=False)
    _run(tmp_path, "no labels", {"method": "actionpp"})
    (tmp_path / "stray.txt").write_text("not a run")

    models, skipped = listModels(tmp_path)

    assert [m.name for m in models] == ["new", "old"]
    new = models[0]
    assert new.path == tmp_path / "new" and new.labels == labels and new.method == "actionpp" and new.dims == 3
    assert new.valDice == pytest.approx(0.8712) and new.iterations == 2000 and new.classNames == ["RV", "MYO", "LV"]
    assert new.describe().startswith("actionpp · 3D · 2000 it · val Dice 0.871 · ")
    assert new.describe().endswith("RV, MYO, LV") and "no validation" in models[1].describe()
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"cancelled", "just started", "broken", "no weights", "no labels"}
    assert "can be resumed" in reasons["cancelled"]
    assert [s.resumable for s in skipped if s.path.name == "cancelled"] == [True]
    assert "no checkpoint yet" in reasons["just started"]
    assert "unreadable" in reasons["broken"]
    assert "model.pt missing" in reasons["no weights"]
    assert "expected 'labels'" in reasons["no labels"]


def test_registry_of_a_missing_folder_is_empty(tmp_path):
    assert listModels(tmp_path / "nothing") == ([], [])
    with pytest.raises(ValueError, match="not a training run"):
        readModel(tmp_path)


def test_created_date_falls_back_to_file_time(tmp_path):
    run = _run(tmp_path, "r", {"labels": {"background": 0, "a": 1}})
    os.utime(run / "model.json", (0, 86400 * 365))
    assert readModel(run).created.startswith("1971-01-0")
