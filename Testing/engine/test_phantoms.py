"""Synthetic phantom datasets: determinism, class balance, layout, refusal to overwrite."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from actionpp.data.io import DataError
from actionpp.data.layout import load_dataset
from actionpp.data.phantoms import ATRIUM_LABELS, CARDIAC_LABELS, make_phantoms, phantom_case

TINY = {"cardiac": (4, 32, 32), "atrium": (8, 24, 24)}


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["cardiac", "atrium"])
def test_deterministic_per_seed(tmp_path, kind):
    a = make_phantoms(kind, 2, 1, tmp_path / "a", seed=3, test_cases=1, size=TINY[kind])
    b = make_phantoms(kind, 2, 1, tmp_path / "b", seed=3, test_cases=1, size=TINY[kind])
    c = make_phantoms(kind, 2, 1, tmp_path / "c", seed=4, test_cases=1, size=TINY[kind])
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb  # byte-identical
    assert fa.keys() == fc.keys()
    assert fa[f"imagesTr/{kind}_000_0000.nii.gz"] != fc[f"imagesTr/{kind}_000_0000.nii.gz"]
    img3, lab3, _ = phantom_case(kind, 3, 0, TINY[kind])
    img4, lab4, _ = phantom_case(kind, 4, 0, TINY[kind])
    assert not np.array_equal(img3, img4) and not np.array_equal(lab3, lab4)


def test_cardiac_layout_and_load(tmp_path):
    out = make_phantoms("cardiac", 4, 2, tmp_path / "ds", seed=0, test_cases=2, size=TINY["cardiac"])
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["cardiac_000.nii.gz", "cardiac_001.nii.gz"]
    assert len(list((out / "imagesTr").iterdir())) == 4
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == ["cardiac_004.nii.gz", "cardiac_005.nii.gz"]
    ds = load_dataset(out)
    assert ds.labels == CARDIAC_LABELS and ds.num_classes == 5
    assert [c.name for c in ds.labeled] == ["cardiac_000", "cardiac_001"]
    assert [c.name for c in ds.unlabeled] == ["cardiac_002", "cardiac_003"]
    assert len(ds.test) == 2 and all(c.label is not None for c in ds.test)
    for c in ds.labeled + ds.test:
        assert c.image.shape == TINY["cardiac"] and np.isfinite(c.image).all()
        frac = np.bincount(c.label.ravel(), minlength=5) / c.label.size
        assert (frac > 0).all(), (c.name, frac)  # every class in every labeled case
        assert 0 < frac[4] < 0.02 and frac[0] == frac.max()
    sx, sy, sz = ds.median_spacing
    assert sx == sy and sz > 3 * sx


def test_cardiac_default_size_balance_and_speed():
    t0 = time.perf_counter()
    for i in range(3):
        img, lab, geom = phantom_case("cardiac", 0, i)
        assert img.shape == (10, 128, 128) and img.dtype == np.float32 and lab.dtype == np.uint8
        frac = np.bincount(lab.ravel(), minlength=5) / lab.size
        assert (frac > 0).all() and 0.0005 < frac[4] < 0.01 and frac[0] > 0.5
        assert 1.3 < geom.spacing[0] < 1.7 and 8 <= geom.spacing[2] <= 10
        # tapering: LV+MYO area at the base larger than at the apex
        heart = np.isin(lab, (2, 3, 4)).sum(axis=(1, 2))
        assert heart[0] > heart[-1]
        # not a thresholding task: background has voxels as bright as the LV cavity
        lv_med = np.median(img[lab == 3])
        assert (img[lab == 0] > lv_med).sum() > 100
    assert time.perf_counter() - t0 < 3.0  # ~10 ms per case; generous for a shared CI machine


def test_atrium_layout_and_balance(tmp_path):
    out = make_phantoms("atrium", 3, 1, tmp_path / "ds", seed=1, test_cases=1, size=TINY["atrium"], file_ending=".nrrd")
    ds = load_dataset(out)
    assert ds.labels == ATRIUM_LABELS and ds.file_ending == ".nrrd"
    assert len(ds.labeled) == 1 and len(ds.unlabeled) == 2 and ds.test[0].label is not None
    for c in ds.labeled + ds.test:
        frac = c.label.mean()
        assert 0.005 < frac < 0.3
    img, lab, geom = phantom_case("atrium", 0, 0)
    assert img.shape == (48, 64, 64) and geom.spacing == (1.0, 1.0, 1.0)
    assert abs(float(img.mean())) < 1e-3 and abs(float(img.std()) - 1) < 1e-3  # z-scored
    assert 0.01 < lab.mean() < 0.2


def test_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="ds: expected a new or empty folder, found 1 existing entry"):
        make_phantoms("cardiac", 2, 1, out, size=TINY["cardiac"])
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="found a file"):
        make_phantoms("cardiac", 2, 1, tmp_path / "f", size=TINY["cardiac"])
    empty = tmp_path / "empty"
    empty.mkdir()
    make_phantoms("cardiac", 1, 1, empty, size=TINY["cardiac"], test_cases=0)
    assert (empty / "dataset.json").is_file() and not (empty / "imagesTs").exists()


@pytest.mark.parametrize("kwargs,flag", [
    (dict(kind="heart"), "--kind"),
    (dict(cases=0), "--cases"),
    (dict(labeled=0), "--labeled"),
    (dict(labeled=5), "--labeled"),
    (dict(test_cases=-1), "--test-cases"),
    (dict(seed=-2), "--seed"),
    (dict(size=(4, 32)), "--size"),
    (dict(file_ending=".png"), "--file-ending"),
])
def test_argument_validation(tmp_path, kwargs, flag):
    args = dict(kind="cardiac", cases=3, labeled=2, out=tmp_path / "ds", size=TINY["cardiac"])
    args.update(kwargs)
    with pytest.raises(DataError, match=f"^{flag}: expected"):
        make_phantoms(**args)
    assert not (tmp_path / "ds").exists()


def test_cardiac_variant_spacing_oblique_intensity(tmp_path):
    from actionpp.data.phantom_variants import Variant
    from actionpp.data.phantoms import phantom_case

    base_img, base_lab, base_geo = phantom_case("cardiac", 5, 0)
    v = Variant(spacing=(1.4, 9.0), oblique=40.0, intensity="alt")
    img, lab, geo = phantom_case("cardiac", 5, 0, variant=v)
    assert geo.spacing == pytest.approx((1.4, 1.4, 9.0))
    assert geo.direction[1] != 0.0 and geo.direction[8] == 1.0            # rotated about z, not identity
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}
    # the LV -> RV direction turns by the oblique angle (30..50 degrees) against the default phantom's
    def lv_rv_angle(label):
        c = [np.argwhere(label == k)[:, 1:].mean(axis=0) for k in (3, 1)]
        return np.degrees(np.arctan2(*(c[1] - c[0])))
    turn = (lv_rv_angle(lab) - lv_rv_angle(base_lab) + 180) % 360 - 180
    assert 25 < abs(turn) < 55
    # alt contrast: LV blood no longer much brighter than RV blood relative to myocardium
    ratio = lambda im, lb: np.median(im[lb == 3]) / np.median(im[lb == 2])  # noqa: E731
    assert ratio(img, lab) < 0.8 * ratio(base_img, base_lab)
    out = make_phantoms("cardiac", 2, 1, tmp_path / "d", seed=5, test_cases=0, variant=v)
    assert json.loads((out / "dataset.json").read_text())["actionpp_phantom"]["variant"]["oblique"] == 40.0
    with pytest.raises(DataError, match="--spacing"):
        Variant(spacing=(1.4,))
    with pytest.raises(DataError, match="only the cardiac"):
        phantom_case("atrium", 0, 0, (8, 16, 16), variant=v)
