"""The engine side of the labeling loop: continue from a model (``--init-from``), rank images by the model's
uncertainty (``actionpp rank``), and the voxel-wise uncertainty map (``predict --uncertainty``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import LABELS, disc_case, tiny_config

from actionpp.cli import main
from actionpp.data.io import read_image, write_image
from actionpp.data.layout import Dataset
from actionpp.inference import Predictor, uncertainty_path
from actionpp.rank import class_volumes_ml, entropy_map, volume_score, volume_term
from actionpp.trainer import Trainer


def _dataset(labels, seed=0):
    rng = np.random.default_rng(seed)
    from pathlib import Path

    return Dataset(root=Path("."), format="nnunet", labels=dict(labels),
                   labeled=[disc_case(f"l{i}", rng) for i in range(2)],
                   unlabeled=[disc_case(f"u{i}", rng, labeled=False) for i in range(2)], test=[])


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A tiny supervised model trained on the nested-disc task (classes outer, inner, core): 60 iterations make it
    confident on clean images (a few seconds on one core)."""
    tmp = tmp_path_factory.mktemp("parent")
    cfg = tiny_config(tmp, method="supervised", iterations=60, lr=0.1, val_fraction=0.0)
    Trainer(cfg, _dataset(LABELS)).run()
    return tmp / "run"


def _weights(run):
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def test_continue_from_a_model_starts_from_its_weights_and_records_the_parent(parent, tmp_path):
    cfg = tiny_config(tmp_path, method="mean-teacher", iterations=1, init_from=str(parent), val_fraction=0.0,
                      pretrain_iterations=3)
    trainer = Trainer(cfg, _dataset(LABELS))
    trainer._initialise_from_parent()
    before, student = _weights(parent), trainer.learner.student.state_dict()
    for key in before:
        torch.testing.assert_close(student[key], before[key], msg=key)
    teacher = trainer.learner.teacher
    assert teacher is not None
    trainer.run()  # the pre-training stage is skipped: the run starts from the parent
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e.get("phase") == "pretrain"]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["parent"] == str(parent.resolve()) and meta["config"]["init_from"] == str(parent)


def test_classes_are_matched_by_name_and_an_added_class_gets_a_new_output_row(parent, tmp_path):
    from actionpp.warmstart import class_indexed_keys

    reordered = {"background": 0, "core": 1, "extra": 2, "outer": 3, "inner": 4}
    cfg = tiny_config(tmp_path, method="supervised", iterations=1, init_from=str(parent), val_fraction=0.0)
    trainer = Trainer(cfg, _dataset(reordered))
    trainer._initialise_from_parent()
    assert trainer.added_classes == ["extra"]
    keys = class_indexed_keys(cfg, 1, len(reordered))
    assert keys and all(k.startswith("net.") for k in keys)  # the output layer's rows, nothing else
    old, new = _weights(parent), trainer.learner.student.state_dict()
    kept = [(value, LABELS[name]) for name, value in reordered.items() if name in LABELS]
    for key, dims in keys.items():
        newIndex, oldIndex = [slice(None)] * new[key].dim(), [slice(None)] * new[key].dim()
        for dim in dims:
            newIndex[dim] = [v for v, _ in kept]
            oldIndex[dim] = [u for _, u in kept]
        if len(dims) == 1:
            torch.testing.assert_close(new[key][tuple(newIndex)], old[key][tuple(oldIndex)], msg=key)
        else:  # class x class: compare the kept block element by element
            for (v1, u1) in kept:
                for (v2, u2) in kept:
                    torch.testing.assert_close(new[key][v1, v2], old[key][u1, u2], msg=key)
    for key in set(old) - set(keys):
        torch.testing.assert_close(new[key], old[key], msg=key)


def test_continuing_refuses_missing_classes_and_other_networks(parent, tmp_path):
    fewer = {"background": 0, "outer": 1, "inner": 2}
    cfg = tiny_config(tmp_path, method="supervised", init_from=str(parent))
    with pytest.raises(ValueError, match=r"--init-from .*must all be in the dataset, found no 'core'"):
        Trainer(cfg, _dataset(fewer))._initialise_from_parent()
    wider = tiny_config(tmp_path, method="supervised", init_from=str(parent), channels=(8, 16, 64))
    with pytest.raises(ValueError, match=r"--init-from .*shape .*pass the model's --network/--dims/--channels"):
        Trainer(wider, _dataset(LABELS))._initialise_from_parent()
    with pytest.raises(ValueError, match="found no model.pt"):
        Trainer(tiny_config(tmp_path, init_from=str(tmp_path)), _dataset(LABELS))._initialise_from_parent()


def test_entropy_and_score_follow_their_definitions():
    certain = torch.zeros(3, 2, 2, 2)
    certain[0] = 1.0
    assert entropy_map(certain).max() == 0  # nothing but sure background
    assert volume_score(certain) == {"score": 0.0, "entropy": 0.0, "volume": None, "voxels": 0}
    even = torch.full((3, 2, 2, 2), 1 / 3)
    np.testing.assert_allclose(entropy_map(even), 1.0, rtol=1e-6)
    mixed = torch.zeros(4, 1, 1, 2)
    mixed[:, 0, 0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # counted: background below 0.95
    mixed[:, 0, 0, 1] = torch.tensor([0.97, 0.01, 0.01, 0.01])  # not counted
    row = volume_score(mixed)
    assert row["voxels"] == 1 and row["entropy"] == pytest.approx(math.log(2) / math.log(4), rel=1e-5)
    assert row["score"] == row["entropy"]  # no expected volumes: the entropy term alone
    # with expected volumes the score is the mean of the two terms
    both = volume_score(mixed, voxel_ml=1.0, expected={"a": 0.51}, labels={"background": 0, "a": 1})
    assert both["volume"] == pytest.approx(0.0, abs=1e-6)  # class a's soft volume 0.5 + 0.01 mL is its median
    assert both["score"] == pytest.approx(row["entropy"] / 2, rel=1e-5)


def _blob(mm: float, spacing: float) -> torch.Tensor:
    """Probabilities ``2, Z, Y, X`` of a sure cube of side ``mm`` on an isotropic ``spacing`` grid (64 mm box)."""
    n, k = round(64 / spacing), round(mm / spacing)
    probs = torch.zeros(2, n, n, n)
    probs[0] = 1.0
    probs[:, :k, :k, :k] = torch.tensor([0.0, 1.0])[:, None, None, None]
    return probs


def test_volume_term_grows_with_the_distance_from_the_median_and_ignores_the_grid():
    labels = {"background": 0, "organ": 1}
    median = 20.0 ** 3 / 1000  # a 20 mm cube, in mL
    term = lambda mm, sp: volume_term(_blob(mm, sp), sp ** 3 / 1000, {"organ": median}, labels)  # noqa: E731
    at, half, tenth, missed, double = term(20, 2), term(16, 2), term(8, 2), term(0, 2), term(26, 2)
    assert at == pytest.approx(0.0, abs=1e-9)
    assert 0 < half < tenth < missed < 1 and double > 0.3  # a missed structure scores highest
    assert term(20, 1) == pytest.approx(at, abs=1e-9) and term(16, 1) == pytest.approx(half, rel=1e-6)
    assert volume_term(_blob(0, 2), 0.008, {}, labels) == 0.0  # nothing known: no term


def test_class_volumes_are_physical_and_count_a_missing_class_as_zero():
    a = np.zeros((2, 4, 4), np.int64)
    a[0, :2, :2] = 1  # 4 voxels of class 1
    a[1, 0, 0] = 2  # 1 voxel of class 2
    b = np.zeros((2, 4, 4), np.int64)
    b[:, :, :] = 1  # 32 voxels of class 1, no class 2
    vols = class_volumes_ml({"background": 0, "one": 1, "two": 2}, [(a, (10.0, 10.0, 10.0)), (b, (1.0, 2.0, 5.0))])
    assert vols["one"] == {"median": pytest.approx(2.16), "min": pytest.approx(0.32), "max": pytest.approx(4.0),
                           "cases": 2}
    assert vols["two"]["min"] == 0.0 and vols["two"]["max"] == pytest.approx(1.0)
    assert "background" not in vols and class_volumes_ml({"background": 0, "one": 1}, []) == {}


def test_the_model_records_its_labeled_class_volumes_and_the_ranking_uses_them(parent, tmp_path):
    meta = json.loads((parent / "model.json").read_text())
    expected = class_volumes_ml(LABELS, [(c.label, c.geometry.spacing) for c in _dataset(LABELS).labeled])
    assert meta["class_volumes_ml"] == expected and set(expected) == set(LABELS) - {"background"}
    assert Predictor.load(parent).class_volumes == meta["class_volumes_ml"]
    # a confidently missed structure: a blank image is called background everywhere with low entropy; the volume
    # term puts it first, where the entropy term alone would put it last
    rng = np.random.default_rng(3)
    folder = tmp_path / "images"
    for name in ("clean0", "clean1"):
        case = disc_case(name, rng)
        write_image(case.image, case.geometry, folder / f"{name}_0000.nii.gz")
    write_image(np.zeros_like(case.image), case.geometry, folder / "blank_0000.nii.gz")
    from actionpp.rank import rank_images

    ranking = rank_images(parent, folder)
    blank = next(row for row in ranking if row["case"] == "blank")
    assert ranking[0]["case"] == "blank" and blank["volume"] > 0.75  # halving a structure gives ~0.45
    assert blank["entropy"] <= min(row["entropy"] for row in ranking)
    broken = dict(json.loads((parent / "model.json").read_text()), class_volumes_ml={"outer": 3})
    bundle = torch.load(parent / "model.pt", weights_only=True)
    torch.save({**bundle, **broken, "state_dict": bundle["state_dict"]}, tmp_path / "broken.pt")
    with pytest.raises(Exception, match=r"broken.pt: expected class_volumes_ml"):
        Predictor.load(tmp_path / "broken.pt")


def test_rank_puts_the_harder_images_first_and_predict_writes_uncertainty(parent, tmp_path, capsys):
    predictor = Predictor.load(parent)
    rng = np.random.default_rng(5)
    folder = tmp_path / "unlabeled"
    names = []
    for i, noise in enumerate([0.0, 0.0, 1.0, 0.0, 0.6]):  # cases 2 and 4 made harder on purpose
        case = disc_case(f"case{i}", rng)
        image = case.image + rng.normal(0, noise, case.image.shape).astype(np.float32)
        write_image(image, case.geometry, folder / f"case{i}_0000.nii.gz")
        names.append(f"case{i}")
    assert predictor.labels == LABELS
    out = tmp_path / "ranking.json"
    assert main(["rank", str(parent), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    ranking = json.loads(out.read_text())
    assert [row["case"] for row in ranking[:2]] == ["case2", "case4"]
    assert sorted(row["case"] for row in ranking) == names
    assert all(0 <= row["score"] <= 1 for row in ranking) and ranking[0]["score"] > ranking[-1]["score"]
    assert "case2" in capsys.readouterr().out.splitlines()[1]  # the printed table, most uncertain first
    assert main(["rank", str(parent), str(folder), "--out", str(out)]) == 1  # never replaces a file

    pred = tmp_path / "pred"
    assert main(["predict", str(parent), str(folder), "--out", str(pred), "--device", "cpu", "--uncertainty"]) == 0
    label, geometry = read_image(pred / "case2.nii.gz", kind="label")
    unsure, unsureGeometry = read_image(uncertainty_path(pred / "case2.nii.gz"))
    assert unsure.dtype == np.float32 and unsure.shape == label.shape and unsureGeometry == geometry
    assert 0 <= unsure.min() and unsure.max() <= 1 and unsure.max() > 0
