"""``ACTIONppBatch.py`` end to end under plain Python + slicer-core: a folder of volumes and .seg.nrrd files is
loaded, exported, trained on (real engine, tiny) and a folder is segmented; failures are one line and non-zero."""

from __future__ import annotations

import json

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
from actionpp_logic_testing import ENGINE_ENV, MODULE_DIR, TINY_TRAINING, requireEngine  # noqa: E402

from ACTIONppLogic import mrml  # noqa: E402

BATCH = MODULE_DIR / "Scripts" / "ACTIONppBatch.py"
SHAPE = (4, 32, 32)


def _batch(*args, timeout=240):
    return subprocess.run([sys.executable, str(BATCH), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENGINE_ENV)


def _writeFolder(ctx, mk, folder, labeled, unlabeled):
    """``labeled`` volumes with ``.seg.nrrd`` files and ``unlabeled`` volumes alone, written by storage nodes."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:32, :32]
    for i in range(labeled + unlabeled):
        rng = np.random.default_rng(i)
        blob = np.broadcast_to(((yy - 16 - i) ** 2 + (xx - 15) ** 2) < 60, SHAPE).copy()
        volume = mk.volume(ctx.scene, (blob * 1.0 + rng.normal(0, 0.2, SHAPE)).astype(np.float32), f"case{i}",
                           spacing=(1.0, 1.0, 5.0))
        mrml.writeVolume(volume, folder / f"case{i}.nrrd")
        if i < labeled:
            segmentation = mk.segmentation(ctx, volume, [("blob", blob)])
            mrml.writeSegmentation(segmentation, folder / f"case{i}.seg.nrrd")


@pytest.mark.slow
def test_batch_trains_on_a_folder_of_volumes_and_segments_a_folder(ctx, mk, tmp_path):
    requireEngine()
    _writeFolder(ctx, mk, tmp_path / "data", labeled=2, unlabeled=1)
    _writeFolder(ctx, mk, tmp_path / "new scans", labeled=1, unlabeled=1)  # a .seg.nrrd there is ignored

    result = _batch("--", "--data", tmp_path / "data", "--out", tmp_path / "run", "--predict", tmp_path / "new scans",
                    "--pred-out", tmp_path / "pred", "--iterations", "4", "--method", "mean-teacher", "--device", "cpu",
                    "--checkpoint-every", "2", *TINY_TRAINING)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "exported 2 labeled + 1 unlabeled volumes" in result.stdout and "(classes: blob)" in result.stdout
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run_dataset" / "dataset.json").is_file()
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "case0.nrrd", "case0.seg.nrrd", "case1.nrrd", "case1.seg.nrrd", "predict.log"]
    segmentation = mrml.readSegmentation(ctx.scene, tmp_path / "pred" / "case1.seg.nrrd")
    assert [name for _, name in mrml.segmentNames(segmentation)] == ["blob"]


@pytest.mark.slow
def test_batch_trains_on_an_nnunet_dataset(phantoms, tmp_path):
    requireEngine()
    result = _batch("--data", phantoms, "--out", tmp_path / "run", "--iterations", "2", "--method", "supervised",
                    "--device", "cpu", "--rank", *TINY_TRAINING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "model.json").is_file() and not (tmp_path / "run_dataset").exists()
    ranking = json.loads((tmp_path / "run" / "ranking.json").read_text())
    assert len(ranking) == 1 and 0 <= ranking[0]["score"] <= 1  # the phantoms' one unlabeled case
    assert f"label next: {ranking[0]['case']}" in result.stdout

    again = _batch("--data", phantoms, "--out", tmp_path / "run2", "--iterations", "2", "--method", "supervised",
                   "--device", "cpu", "--init-from", tmp_path / "run", *TINY_TRAINING)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((tmp_path / "run2" / "model.json").read_text())["parent"] == str((tmp_path / "run").resolve())


def test_batch_failures_are_one_line_and_non_zero(ctx, mk, tmp_path):
    missing = _batch("--data", tmp_path / "nothing", "--out", tmp_path / "run")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"ACTIONppBatch: error: --data {tmp_path / 'nothing'}: expected a dataset folder or a folder of volumes, "
        "found nothing"]

    _writeFolder(ctx, mk, tmp_path / "unlabeled only", labeled=0, unlabeled=2)
    curation = _batch("--data", tmp_path / "unlabeled only", "--out", tmp_path / "run")
    assert curation.returncode == 1 and len(curation.stderr.strip().splitlines()) == 1
    assert "No labeled volume" in curation.stderr and not (tmp_path / "run").exists()

    usage = _batch("--data", tmp_path, "--out", tmp_path / "run", "--predict", tmp_path)
    assert usage.returncode == 2 and "--predict and --pred-out go together" in usage.stderr

