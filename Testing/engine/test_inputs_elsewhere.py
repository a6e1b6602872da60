"""Inputs from elsewhere: unusual path names, symbolic links, dataset.json file lists, case ids that collide on a
case-insensitive file system."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from actionpp.cli import main
from actionpp.data.io import DataError, Geometry, write_image
from actionpp.data.layout import find_images, load_dataset
from actionpp.data.phantoms import make_phantoms

TINY = ["--patch", "32", "32", "--batch-labeled", "2", "--batch-unlabeled", "2", "--channels", "8", "16",
        "--method", "supervised", "--device", "cpu", "--quiet", "--iterations", "2"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return make_phantoms("cardiac", 3, 2, tmp_path_factory.mktemp("ds") / "data", test_cases=1, size=(2, 32, 32))


def _names(ds) -> list[list[str]]:
    return [[c.name for c in part] for part in (ds.labeled, ds.unlabeled, ds.test)]


def test_spaces_and_non_ascii_in_every_path(phantoms, tmp_path, capsys):
    odd = tmp_path / "données ü 数据" / "my data set"
    shutil.copytree(phantoms, odd)
    run, pred = tmp_path / "runs é" / "run 1", tmp_path / "préd ñ 予測"
    assert main(["train", str(odd), "--out", str(run), *TINY]) == 0, capsys.readouterr().err
    assert main(["predict", str(run), str(odd / "imagesTs"), "--out", str(pred), "--device", "cpu"]) == 0
    assert main(["evaluate", str(pred), str(odd / "labelsTs"), "--out", str(pred / "métriques.json")]) == 0
    assert json.loads((pred / "métriques.json").read_text(encoding="utf-8"))["summary"]


def test_symlinked_dataset_and_image_folders_load(phantoms, tmp_path):
    link = tmp_path / "linked dataset"
    link.symlink_to(phantoms, target_is_directory=True)
    assert _names(load_dataset(link)) == _names(load_dataset(phantoms))
    mixed = tmp_path / "mixed"  # a dataset whose big folders live elsewhere
    mixed.mkdir()
    shutil.copy(phantoms / "dataset.json", mixed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (mixed / sub).symlink_to(phantoms / sub, target_is_directory=True)
    assert _names(load_dataset(mixed)) == _names(load_dataset(phantoms))


def _listed(root: Path, phantoms: Path, entries: dict) -> Path:
    shutil.copytree(phantoms, root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["dataset"] = entries
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_dataset_json_file_list_inside_the_dataset_is_read(phantoms, tmp_path):
    ds = load_dataset(_listed(tmp_path / "d", phantoms, {
        "one": {"images": ["imagesTr/cardiac_000_0000.nii.gz"], "label": "labelsTr/cardiac_000.nii.gz"},
        "two": {"images": ["imagesTr/../imagesTr/cardiac_002_0000.nii.gz"]}}))
    assert _names(ds)[:2] == [["one"], ["two"]] and ds.labeled[0].label is not None


@pytest.mark.parametrize("bad", ["../elsewhere/x_0000.nii.gz", "imagesTr/../../x_0000.nii.gz", "/etc/x.nii.gz"])
def test_dataset_json_entries_outside_the_dataset_are_refused(phantoms, tmp_path, bad):
    root = _listed(tmp_path / "d", phantoms, {
        "one": {"images": ["imagesTr/cardiac_000_0000.nii.gz"], "label": "labelsTr/cardiac_000.nii.gz"},
        "two": {"images": [bad]}})
    with pytest.raises(DataError, match="outside") as e:
        load_dataset(root)
    msg = str(e.value)
    assert "\n" not in msg and str(root / "dataset.json") in msg and repr(bad) in msg and "'two'" in msg


def test_dataset_json_label_outside_is_refused_too(phantoms, tmp_path):
    root = _listed(tmp_path / "d", phantoms, {
        "one": {"images": ["imagesTr/cardiac_000_0000.nii.gz"], "label": str(phantoms / "labelsTr" / "x.nii.gz")}})
    with pytest.raises(DataError, match="the label of 'one' inside the dataset folder"):
        load_dataset(root)


def test_case_ids_that_collide_after_case_folding_are_refused(phantoms, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(phantoms, root)
    src = root / "imagesTr" / "cardiac_002_0000.nii.gz"
    shutil.copy(src, root / "imagesTr" / "CARDIAC_002_0000.nii.gz")
    with pytest.raises(DataError, match="differ in more than letter case") as e:
        load_dataset(root)
    assert "CARDIAC_002_0000.nii.gz" in str(e.value) and "cardiac_002_0000.nii.gz" in str(e.value)

    folder = tmp_path / "predict me"
    for name in ("Scan.nrrd", "scan.nrrd", "other.nrrd"):
        write_image(np.zeros((1, 4, 4), np.float32), Geometry.from_shape((1, 4, 4)), folder / name)
    with pytest.raises(DataError, match="'Scan' and 'scan'|'scan' and 'Scan'") as e:
        find_images(folder)
    assert "\n" not in str(e.value)
