"""SSL4MIS ACDC and UA-MT LA h5 layouts through load_dataset, using tiny fake layouts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from actionpp.data.h5formats import (
    ACDC_LABELS,
    LA_LABELS,
    LA_SUBFOLDER,
    acdc_patient_of,
    acdc_volume_of,
    la_id_of,
    write_acdc_h5_layout,
    write_la_h5_layout,
)
from actionpp.data.io import DataError
from actionpp.data.layout import load_dataset


def _vol(seed: int, shape=(3, 8, 6), classes=4):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.integers(0, classes, shape).astype(np.uint8)


def _acdc(tmp_path):
    names = {"train": ["patient099_frame01", "patient099_frame02", "patient038_frame01", "patient038_frame02",
                       "patient050_frame01"],
             "val": ["patient028_frame01"], "test": ["patient001_frame01", "patient001_frame02"]}
    vols = {n: _vol(i) for i, n in enumerate(sum(names.values(), []))}
    root = write_acdc_h5_layout(tmp_path / "ACDC", vols, names["train"], names["val"], names["test"])
    return root, vols


def test_name_helpers():
    assert acdc_volume_of("patient099_frame01_slice_15") == "patient099_frame01"
    assert acdc_volume_of("patient099_frame01") is None
    assert acdc_patient_of("patient099_frame02") == "patient099"
    assert la_id_of("ABC123") == "ABC123"
    assert la_id_of(f"../data/{LA_SUBFOLDER}/ABC123/mri_norm2.h5") == "ABC123"
    assert la_id_of("../data/ABC123/") == "ABC123"


def test_acdc_roundtrip(tmp_path):
    root, vols = _acdc(tmp_path)
    ds = load_dataset(root)
    assert ds.format == "acdc-h5" and ds.labels == ACDC_LABELS and ds.class_names == ["background", "RV", "Myo", "LV"]
    assert [c.name for c in ds.labeled] == ["patient099_frame01", "patient099_frame02", "patient038_frame01",
                                            "patient038_frame02", "patient050_frame01"]
    assert ds.unlabeled == [] and [c.name for c in ds.val] == ["patient028_frame01"] and len(ds.test) == 2
    c = ds.labeled[2]
    np.testing.assert_array_equal(c.image, vols[c.name][0])
    np.testing.assert_array_equal(c.label, vols[c.name][1])
    assert c.image.dtype == np.float32 and c.geometry.spacing == (1.0, 1.0, 1.0) and c.geometry.shape == (3, 8, 6)
    assert all(x.label is not None for x in ds.val + ds.test)


def test_acdc_labeled_cases_counts_patients(tmp_path):
    root, _ = _acdc(tmp_path)
    ds = load_dataset(root, labeled_cases=2)  # patient099 (2 frames) + patient038 (2 frames)
    assert [c.name for c in ds.labeled] == ["patient099_frame01", "patient099_frame02", "patient038_frame01",
                                            "patient038_frame02"]
    assert [c.name for c in ds.unlabeled] == ["patient050_frame01"] and ds.unlabeled[0].label is None
    with pytest.raises(DataError, match="--labeled-cases: expected at most 3"):
        load_dataset(root, labeled_cases=4)


def test_acdc_bad_inputs(tmp_path):
    root, vols = _acdc(tmp_path)
    bad = root / "data" / "patient050_frame01.h5"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="patient050_frame01.h5: expected a readable HDF5 file"):
        load_dataset(root)
    bad.unlink()
    with pytest.raises(DataError, match="patient050_frame01.h5: expected an h5 volume, found nothing"):
        load_dataset(root)
    with h5py.File(bad, "w") as f:
        f["image"] = vols["patient050_frame01"][0]
    with pytest.raises(DataError, match="patient050_frame01.h5: expected datasets 'image' and 'label', found image"):
        load_dataset(root)
    bad.unlink()
    with h5py.File(bad, "w") as f:
        f["image"] = vols["patient050_frame01"][0]
        f["label"] = np.full((3, 8, 6), 5, np.uint8)
    with pytest.raises(DataError, match="patient050_frame01.h5: expected label values in .*found unexpected value"):
        load_dataset(root)
    bad.unlink()
    with h5py.File(bad, "w") as f:
        f["image"] = np.full((3, 8, 6), np.nan, np.float32)
        f["label"] = np.zeros((3, 8, 6), np.uint8)
    with pytest.raises(DataError, match="patient050_frame01.h5: expected finite intensities"):
        load_dataset(root)


def test_acdc_bad_slice_list(tmp_path):
    root, _ = _acdc(tmp_path)
    (root / "train_slices.list").write_text("patient099_frame01\n")
    with pytest.raises(DataError, match="train_slices.list: expected slice names"):
        load_dataset(root)


@pytest.mark.parametrize("subfolder,style", [(True, "id"), (False, "id"), (True, "path")])
def test_la_roundtrip_and_transpose(tmp_path, subfolder, style):
    vols = {f"ID{i}": _vol(i, shape=(4, 6, 5), classes=2) for i in range(5)}
    root = write_la_h5_layout(tmp_path / "LA", vols, train=["ID3", "ID0", "ID1"], test=["ID2", "ID4"],
                              subfolder=subfolder, list_style=style)
    # on disk the arrays are (x, y, z)
    base = root / LA_SUBFOLDER if subfolder else root
    with h5py.File(base / "ID3" / "mri_norm2.h5", "r") as f:
        assert f["image"].shape == (5, 6, 4)
    ds = load_dataset(root, labeled_cases=2)
    assert ds.format == "la-h5" and ds.labels == LA_LABELS and ds.val == []
    assert [c.name for c in ds.labeled] == ["ID3", "ID0"] and [c.name for c in ds.unlabeled] == ["ID1"]
    assert [c.name for c in ds.test] == ["ID2", "ID4"]
    c = ds.labeled[0]
    assert c.image.shape == (4, 6, 5) and c.geometry.size == (5, 6, 4)
    np.testing.assert_array_equal(c.image, vols["ID3"][0])
    np.testing.assert_array_equal(c.label, vols["ID3"][1])
    assert c.geometry.spacing == (0.625, 0.625, 0.625) and ds.median_spacing == (0.625, 0.625, 0.625)


def test_la_missing_and_corrupt(tmp_path):
    vols = {f"ID{i}": _vol(i, shape=(4, 6, 5), classes=2) for i in range(2)}
    root = write_la_h5_layout(tmp_path / "LA", vols, train=["ID0", "ID1", "ID9"])
    with pytest.raises(DataError, match="ID9/mri_norm2.h5: expected the h5 volume of 'ID9' listed in train.list"):
        load_dataset(root)
    (root / "train.list").write_text("ID0\nID1\n")
    (root / LA_SUBFOLDER / "ID1" / "mri_norm2.h5").write_bytes(b"garbage")
    with pytest.raises(DataError, match="ID1/mri_norm2.h5: expected a readable HDF5 file"):
        load_dataset(root)


def test_loading_h5_writes_nothing(tmp_path):
    root, _ = _acdc(tmp_path)
    snap = lambda: {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}  # noqa: E731
    before = snap()
    load_dataset(root, labeled_cases=1)
    assert snap() == before
