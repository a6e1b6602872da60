"""Image I/O: geometry round trips, atomic writes, DataError on bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from actionpp.data.io import (
    IMAGE_SUFFIXES,
    DataError,
    Geometry,
    check_label_array,
    is_image_file,
    read_image,
    split_suffix,
    write_image,
)


def _rotated_geometry(shape=(3, 5, 7)) -> Geometry:
    a, b = 0.3, -0.2
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    d = (rz @ rx).ravel()
    return Geometry.from_shape(shape, spacing=(0.7, 0.85, 4.5), origin=(-101.25, 37.5, 12.0), direction=tuple(d))


def test_split_suffix_and_is_image_file():
    assert split_suffix("a/b/case_0000.nii.gz") == ("case_0000", ".nii.gz")
    assert split_suffix("CASE.NII.GZ") == ("CASE", ".NII.GZ")
    assert split_suffix("x.mha") == ("x", ".mha")
    assert split_suffix("x.h5") == ("x", ".h5")
    assert split_suffix("README") == ("README", "")
    assert is_image_file("a.nrrd") and is_image_file("a.nhdr") and is_image_file("b.mhd")
    assert not is_image_file("a.raw") and not is_image_file(".hidden.nii.gz") and not is_image_file("a.txt")


def test_geometry_dict_roundtrip_and_matches():
    g = _rotated_geometry()
    assert Geometry.from_dict(g.to_dict()) == g
    assert g.shape == (3, 5, 7) and g.size == (7, 5, 3)
    assert g.matches(Geometry.from_dict({**g.to_dict(), "origin": [-101.25 + 1e-3, 37.5, 12.0]}))
    assert not g.matches(Geometry.from_dict({**g.to_dict(), "spacing": [0.7, 0.85, 5.0]}))
    assert not g.matches(Geometry.from_dict({**g.to_dict(), "size": [7, 5, 4]}))
    assert "spacing" in g.mismatch(Geometry.from_dict({**g.to_dict(), "spacing": [0.7, 0.85, 5.0]}))
    with pytest.raises(DataError):
        Geometry.from_dict({"spacing": [1, 1]})


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"])
def test_roundtrip_geometry_and_values(tmp_path, suffix):
    g = _rotated_geometry()
    rng = np.random.default_rng(0)
    image = rng.normal(size=g.shape).astype(np.float32) * 100
    label = rng.integers(0, 4, size=g.shape).astype(np.int64)
    write_image(image, g, tmp_path / f"img{suffix}")
    write_image(label, g, tmp_path / f"lab{suffix}")
    im2, g2 = read_image(tmp_path / f"img{suffix}")
    lb2, g3 = read_image(tmp_path / f"lab{suffix}", kind="label")
    assert g2.matches(g) and g3.matches(g), (g2, g)
    assert im2.dtype == np.float32 and np.array_equal(im2, image)
    assert lb2.dtype == np.uint8 and np.array_equal(lb2, label)
    assert sitk.ReadImage(str(tmp_path / f"lab{suffix}")).GetPixelID() == sitk.sitkUInt8
    # no temp files left behind (detached data files of .mhd/.nhdr are expected)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_large_label_values_written_as_int16(tmp_path):
    g = Geometry.from_shape((2, 3, 4))
    label = np.full(g.shape, 300, dtype=np.int32)
    write_image(label, g, tmp_path / "l.nrrd")
    assert sitk.ReadImage(str(tmp_path / "l.nrrd")).GetPixelID() == sitk.sitkInt16
    out, _ = read_image(tmp_path / "l.nrrd", "label")
    assert out.dtype == np.int16 and (out == 300).all()


def test_write_creates_parent_and_respects_overwrite_flag(tmp_path):
    g = Geometry.from_shape((2, 3, 4))
    p = tmp_path / "a" / "b" / "x.nii.gz"
    write_image(np.zeros(g.shape, np.float32), g, p)
    assert p.is_file() and sorted(x.name for x in p.parent.iterdir()) == ["x.nii.gz"]
    with pytest.raises(DataError, match="x.nii.gz"):
        write_image(np.ones(g.shape, np.float32), g, p, overwrite=False)
    assert read_image(p)[0].max() == 0  # untouched
    assert sorted(x.name for x in p.parent.iterdir()) == ["x.nii.gz"]
    write_image(np.ones(g.shape, np.float32), g, p)  # default replaces atomically
    assert read_image(p)[0].min() == 1


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    g = Geometry.from_shape((2, 3, 4))
    write_image(np.zeros(g.shape, np.float32), g, tmp_path / "keep.mha")
    before = (tmp_path / "keep.mha").read_bytes()

    def boom(img, path, *args):
        open(path, "wb").write(b"half")  # a partial file in the temporary folder
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute:\nITK ERROR: disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(DataError, match="keep.mha: expected to write the image, found an error .*disk full"):
        write_image(np.ones(g.shape, np.float32), g, tmp_path / "keep.mha")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mha"] and (tmp_path / "keep.mha").read_bytes() == before


def test_write_shape_mismatch_and_bad_ending(tmp_path):
    g = Geometry.from_shape((2, 3, 4))
    with pytest.raises(ValueError):
        write_image(np.zeros((4, 3, 2), np.float32), g, tmp_path / "x.nii.gz")
    with pytest.raises(DataError, match="x.png"):
        write_image(np.zeros(g.shape, np.float32), g, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_2d_image_read_as_one_slice(tmp_path):
    img = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    img.SetSpacing((0.5, 0.75))
    sitk.WriteImage(img, str(tmp_path / "two.mha"))
    arr, g = read_image(tmp_path / "two.mha")
    assert arr.shape == (1, 3, 4) and g.size == (4, 3, 1) and g.spacing == (0.5, 0.75, 1.0)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_dataerror(tmp_path, suffix):
    g = Geometry.from_shape((4, 8, 8))
    p = tmp_path / f"t{suffix}"
    write_image(np.random.default_rng(1).normal(size=g.shape).astype(np.float32), g, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=str(p.name)) as e:
        read_image(p)
    assert "\n" not in str(e.value)


def test_garbage_and_missing_file(tmp_path):
    p = tmp_path / "bad.nrrd"
    p.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="bad.nrrd"):
        read_image(p)
    with pytest.raises(DataError, match="missing.nii.gz"):
        read_image(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_nan_and_inf_are_dataerror(tmp_path, suffix):
    # ITK's NIfTI reader silently turns NaN/inf into 0; read_image must still refuse them
    g = Geometry.from_shape((2, 3, 4))
    a = np.zeros(g.shape, np.float32)
    a[0, 0, 0], a[1, 2, 3] = np.nan, -np.inf
    write_image(a, g, tmp_path / f"nan{suffix}")
    with pytest.raises(DataError, match=r"nan\..*: expected finite intensities, found 2 NaN/inf"):
        read_image(tmp_path / f"nan{suffix}")


def test_4d_and_vector_images_are_dataerror(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False),
                    str(tmp_path / "four.nii.gz"))
    with pytest.raises(DataError, match="four.nii.gz: expected a 3D scalar image, found a 4D"):
        read_image(tmp_path / "four.nii.gz")
    vec = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.float32), isVector=True)
    sitk.WriteImage(vec, str(tmp_path / "vec.mha"))
    with pytest.raises(DataError, match="vec.mha: expected a 3D scalar image, found .*3 components"):
        read_image(tmp_path / "vec.mha")


def test_float_labels(tmp_path):
    g = Geometry.from_shape((2, 3, 4))
    a = np.zeros(g.shape, np.float32)
    a[0, 0, :2] = 2.0
    write_image(a, g, tmp_path / "f.mha")
    out, _ = read_image(tmp_path / "f.mha", "label")
    assert out.dtype == np.uint8 and out.max() == 2
    a[1, 1, 1] = 0.5
    write_image(a, g, tmp_path / "g.mha")
    with pytest.raises(DataError, match="g.mha: expected integer label values"):
        read_image(tmp_path / "g.mha", "label")
    assert check_label_array(np.array([[[-1, 5]]]), "x").dtype == np.int16


def test_image_suffixes_constant():
    assert IMAGE_SUFFIXES == (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
