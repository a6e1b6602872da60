"""nnU-Net raw loading, validation errors, labeled_cases, find_images / case_name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from actionpp.data.io import DataError, Geometry, write_image
from actionpp.data.layout import Case, Dataset, case_name, find_images, load_dataset

LABELS = {"background": 0, "a": 1, "b": 2}
SHAPE = (2, 6, 7)


def _geom(i: int = 0, **kw) -> Geometry:
    d = dict(spacing=(0.8, 0.9, 3.0 + 0.5 * i), origin=(-10.0 + i, 5.0, 2.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    d.update(kw)
    return Geometry.from_shape(SHAPE, **d)


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).normal(size=SHAPE).astype(np.float32) + i


def _label(i: int) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[:, 1:3, 1:3] = 1
    lab[:, 3:5, 4:6] = 2
    lab[0, 0, 0] = i % 3
    return lab


def make_nnunet(root: Path, labeled=3, unlabeled=2, test=2, labels_ts=True, ending=".nii.gz") -> Path:
    """Cases c0..c{labeled-1} labeled, then unlabeled ones, test cases t0..; dataset.json last."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(labeled + unlabeled):
        write_image(_image(i), _geom(i), root / "imagesTr" / f"c{i}_0000{ending}")
        if i < labeled:
            write_image(_label(i), _geom(i), root / "labelsTr" / f"c{i}{ending}")
    for j in range(test):
        write_image(_image(100 + j), _geom(j), root / "imagesTs" / f"t{j}_0000{ending}")
        if labels_ts:
            write_image(_label(j), _geom(j), root / "labelsTs" / f"t{j}{ending}")
    meta = {"channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": labeled + unlabeled, "file_ending": ending}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# ----------------------------------------------------------------------------------------------------------------
def test_load_nnunet_splits_and_contents(tmp_path):
    root = make_nnunet(tmp_path / "ds")
    ds = load_dataset(root)
    assert isinstance(ds, Dataset) and ds.format == "nnunet" and ds.file_ending == ".nii.gz"
    assert [c.name for c in ds.labeled] == ["c0", "c1", "c2"]
    assert [c.name for c in ds.unlabeled] == ["c3", "c4"] and all(c.label is None for c in ds.unlabeled)
    assert [c.name for c in ds.test] == ["t0", "t1"] and all(c.label is not None for c in ds.test)
    assert ds.val == []
    assert ds.labels == LABELS and ds.num_classes == 3 and ds.class_names == ["background", "a", "b"]
    c = ds.labeled[1]
    assert isinstance(c, Case) and c.image.dtype == np.float32 and c.image.shape == SHAPE
    np.testing.assert_array_equal(c.image, _image(1))
    np.testing.assert_array_equal(c.label, _label(1))
    assert c.geometry.matches(_geom(1)) and c.image_path.name == "c1_0000.nii.gz" and c.label_path.name == "c1.nii.gz"
    assert ds.median_spacing == pytest.approx((0.8, 0.9, 4.0))  # z spacings 3.0..5.0
    assert "c1" in repr(c) and "array" not in repr(c)


def test_test_split_without_labels(tmp_path):
    ds = load_dataset(make_nnunet(tmp_path / "ds", labels_ts=False, unlabeled=0))
    assert [c.label for c in ds.test] == [None, None] and ds.unlabeled == []


def test_labeled_cases(tmp_path):
    root = make_nnunet(tmp_path / "ds", labeled=3, unlabeled=1)
    ds = load_dataset(root, labeled_cases=2)
    assert [c.name for c in ds.labeled] == ["c0", "c1"]
    assert [c.name for c in ds.unlabeled] == ["c2", "c3"]
    assert all(c.label is None and c.label_path is None for c in ds.unlabeled)
    with pytest.raises(DataError, match="--labeled-cases: expected at most 3"):
        load_dataset(root, labeled_cases=4)
    with pytest.raises(DataError, match="--labeled-cases"):
        load_dataset(root, labeled_cases=-1)


def test_other_file_ending(tmp_path):
    ds = load_dataset(make_nnunet(tmp_path / "ds", ending=".mha", test=0))
    assert ds.file_ending == ".mha" and len(ds.labeled) == 3 and ds.test == []


def test_loading_writes_nothing(tmp_path):
    root = make_nnunet(tmp_path / "ds")
    before = _snapshot(root)
    load_dataset(root, labeled_cases=1)
    assert _snapshot(root) == before


# ----------------------------------------------------------------------------------------------------------------
# every bad input: a one-line DataError naming the offending file
# ----------------------------------------------------------------------------------------------------------------
def _edit_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    (root / "dataset.json").write_text(json.dumps(meta))


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _break_json_syntax(r):
    (r / "dataset.json").write_text("{not json")
    return "dataset.json", "expected valid JSON"


def _break_json_keys(r):
    _edit_json(r, file_ending=None)
    return "dataset.json", "found no file_ending"


def _break_multichannel(r):
    _edit_json(r, channel_names={"0": "T1", "1": "T2"})
    return "dataset.json", "multi-channel input is not supported yet"


def _break_label_values(r):
    lab = _label(1)
    lab[1, 1, 1], lab[0, 5, 6] = 7, 9
    write_image(lab, _geom(1), r / "labelsTr" / "c1.nii.gz")
    return "c1.nii.gz", "unexpected value(s) 7, 9"


def _break_labels_mapping(r):
    _edit_json(r, labels={"background": 0, "a": 1, "b": 3})
    return "dataset.json", "expected label values 0..C-1"


def _break_spacing(r):
    write_image(_label(0), _geom(0, spacing=(0.8, 0.9, 9.0)), r / "labelsTr" / "c0.nii.gz")
    return "c0.nii.gz", "spacing"


def _break_origin(r):
    write_image(_label(0), _geom(0, origin=(0.0, 0.0, 0.0)), r / "labelsTr" / "c0.nii.gz")
    return "c0.nii.gz", "origin"


def _break_direction(r):
    write_image(_label(0), _geom(0, direction=(0, 1, 0, 1, 0, 0, 0, 0, -1)), r / "labelsTr" / "c0.nii.gz")
    return "c0.nii.gz", "direction"


def _break_size(r):
    g = Geometry.from_shape((2, 6, 8), spacing=_geom(0).spacing, origin=_geom(0).origin)
    write_image(np.zeros((2, 6, 8), np.uint8), g, r / "labelsTr" / "c0.nii.gz")
    return "c0.nii.gz", "size"


def _break_label_without_image(r):
    write_image(_label(0), _geom(0), r / "labelsTr" / "zz.nii.gz")
    return "zz.nii.gz", "expected a matching image"


def _break_test_label_without_image(r):
    write_image(_label(0), _geom(0), r / "labelsTs" / "zz.nii.gz")
    return "zz.nii.gz", "expected a matching image"


def _break_images_tr_missing(r):
    for p in (r / "imagesTr").iterdir():
        p.unlink()
    (r / "imagesTr").rmdir()
    return "imagesTr", "expected the training image folder"


def _break_file_ending(r):
    write_image(_image(9), _geom(0), r / "imagesTr" / "c9_0000.nrrd")
    return "c9_0000.nrrd", "expected file ending '.nii.gz'"


def _break_no_channel_tag(r):
    write_image(_image(9), _geom(0), r / "imagesTr" / "c9.nii.gz")
    return "c9.nii.gz", "_0000"


def _break_second_channel(r):
    write_image(_image(9), _geom(0), r / "imagesTr" / "c0_0001.nii.gz")
    return "c0_0001.nii.gz", "multi-channel input is not supported yet"


def _break_truncated_image(r):
    _truncate(r / "imagesTr" / "c3_0000.nii.gz")
    return "c3_0000.nii.gz", "truncated"


def _break_truncated_label(r):
    _truncate(r / "labelsTr" / "c2.nii.gz")
    return "c2.nii.gz", "truncated"


def _break_garbage_image(r):
    (r / "imagesTr" / "c1_0000.nii.gz").write_bytes(b"this is not an image")
    return "c1_0000.nii.gz", "expected a complete NIfTI file"


def _break_garbage_test_label(r):
    (r / "labelsTs" / "t0.nii.gz").write_bytes(b"\x1f\x8b" + bytes(50))
    return "t0.nii.gz", "expected a complete NIfTI file"


def _break_nan(r):
    im = _image(4)
    im[0, 0, :3] = np.nan
    write_image(im, _geom(4), r / "imagesTr" / "c4_0000.nii.gz")
    return "c4_0000.nii.gz", "3 NaN/inf"


def _break_4d(r):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, *SHAPE), np.float32), isVector=False),
                    str(r / "imagesTs" / "t1_0000.nii.gz"))
    return "t1_0000.nii.gz", "expected a 3D scalar image"


def _break_zero_labeled(r):
    for p in (r / "labelsTr").iterdir():
        p.unlink()
    return "labelsTr", "at least one label file"


def _break_not_a_dataset(r):
    (r / "dataset.json").unlink()
    return str(r.name), "expected a dataset folder with dataset.json"


BREAKERS = [_break_json_syntax, _break_json_keys, _break_multichannel, _break_label_values, _break_labels_mapping,
            _break_spacing, _break_origin, _break_direction, _break_size, _break_label_without_image,
            _break_test_label_without_image, _break_images_tr_missing, _break_file_ending, _break_no_channel_tag,
            _break_second_channel, _break_truncated_image, _break_truncated_label, _break_garbage_image,
            _break_garbage_test_label, _break_nan, _break_4d,
            _break_zero_labeled, _break_not_a_dataset]


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.__name__[7:] for b in BREAKERS])
def test_bad_input_is_one_line_dataerror_naming_the_file(tmp_path, breaker):
    root = make_nnunet(tmp_path / "ds", labeled=3, unlabeled=2, test=2)
    culprit, words = breaker(root)
    before = _snapshot(root)
    with pytest.raises(DataError) as e:
        load_dataset(root)
    msg = str(e.value)
    assert culprit in msg and words in msg, msg
    assert "\n" not in msg and ": expected " in msg
    assert _snapshot(root) == before


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nope: expected a dataset folder, found nothing"):
        load_dataset(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------------------------
def test_case_name():
    assert case_name("a/b/heart_007_0000.nii.gz") == "heart_007"
    assert case_name("scan.nrrd") == "scan"
    assert case_name("x_0001.mha") == "x_0001"
    assert case_name("_0000.nii") == "_0000"


def test_find_images(tmp_path):
    g = _geom()
    for name in ("b_0000.nii.gz", "a.nrrd", "c.mhd", ".hidden.nii.gz"):
        write_image(_image(0), g, tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    found = find_images(tmp_path)
    assert [p.name for p in found] == ["a.nrrd", "b_0000.nii.gz", "c.mhd"]
    assert [case_name(p) for p in found] == ["a", "b", "c"]
    assert find_images(tmp_path / "a.nrrd") == [tmp_path / "a.nrrd"]
    with pytest.raises(DataError, match="notes.txt"):
        find_images(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="missing"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: expected image files"):
        find_images(tmp_path / "empty")
    write_image(_image(0), g, tmp_path / "b_0001.nii.gz")
    with pytest.raises(DataError, match="b_0001.nii.gz: .*multi-channel"):
        find_images(tmp_path)
    (tmp_path / "b_0001.nii.gz").unlink()
    write_image(_image(0), g, tmp_path / "a.mha")
    with pytest.raises(DataError, match="same case 'a'"):
        find_images(tmp_path)


def test_find_images_skips_slicer_segmentations(tmp_path):
    import numpy as np

    from actionpp.data.io import Geometry, write_image
    from actionpp.data.layout import find_images

    geo = Geometry(spacing=(1.0, 1.0, 1.0), size=(4, 4, 2))
    write_image(np.zeros((2, 4, 4), np.float32), geo, tmp_path / "ct.nrrd")
    write_image(np.zeros((2, 4, 4), np.uint8), geo, tmp_path / "ct.seg.nrrd")
    assert [p.name for p in find_images(tmp_path)] == ["ct.nrrd"]
