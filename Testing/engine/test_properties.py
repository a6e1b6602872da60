"""Property-based tests (hypothesis): the image readers' validation and the config parser either accept an input
and keep it intact, or refuse it with the engine's one-line error, for any input, never with another exception."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from actionpp.config import Config, ConfigError  # noqa: E402
from actionpp.data.io import (IMAGE_SUFFIXES, DataError, Geometry, check_image_array, check_label_array,  # noqa: E402
                              read_image, split_suffix, write_image)
from actionpp.data.layout import case_name, check_labels_mapping  # noqa: E402

# database=None: nothing is written into the checkout; tmp_path is shared by a test's examples, which is intended
FAST = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FILES = settings(max_examples=30, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])

stems = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0"), min_size=1,
                max_size=12).filter(lambda s: s not in (".", "..") and not s.startswith("."))


def _one_line(e: Exception) -> None:
    assert "\n" not in str(e) and str(e)


# ---- names ------------------------------------------------------------------------------------------------------
@FAST
@given(stems, st.sampled_from(IMAGE_SUFFIXES), st.booleans())
def test_split_suffix_and_case_name_round_trip(stem, suffix, tagged):
    name = stem + ("_0000" if tagged else "") + suffix
    assert split_suffix(name) == (stem + ("_0000" if tagged else ""), suffix)
    assert case_name(name) == stem or (stem.endswith("_0000") and not tagged)


# ---- arrays -----------------------------------------------------------------------------------------------------
arrays = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.int64, np.bool_]),
                    hnp.array_shapes(min_dims=3, max_dims=3, max_side=4))


@FAST
@given(arrays)
def test_image_arrays_are_accepted_exactly_when_finite_in_float32(arr):
    try:
        out = check_image_array(arr, "img.nrrd")
    except DataError as e:
        _one_line(e)
        assert str(e).startswith("img.nrrd: expected finite intensities")
        with np.errstate(over="ignore"):
            assert not np.isfinite(arr.astype(np.float32)).all()
    else:
        assert out.dtype == np.float32 and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr.astype(np.float32))


@FAST
@given(arrays)
def test_label_arrays_keep_their_values_or_name_the_file(arr):
    try:
        out = check_label_array(arr, "lab.nrrd")
    except DataError as e:
        _one_line(e)
        assert str(e).startswith("lab.nrrd: expected")
        assert arr.dtype.kind == "f" or arr.min() < -2**31 or arr.max() > 2**31 - 1
    else:
        assert out.dtype.kind in "iu" and np.array_equal(out.astype(np.float64), arr.astype(np.float64))


@FAST
@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(-2, 6), st.booleans(), st.floats(), st.text(),
                                                      st.lists(st.integers(0, 3), max_size=2)), max_size=6))
def test_label_mappings_are_consecutive_from_zero_or_refused(labels):
    try:
        out = check_labels_mapping(labels, "dataset.json")
    except DataError as e:
        _one_line(e)
        assert str(e).startswith("dataset.json: expected")
    else:
        assert sorted(out.values()) == list(range(len(out))) and len(out) >= 2


finite = st.floats(-1e4, 1e4, allow_nan=False)


@FAST
@given(st.lists(st.one_of(finite, st.floats(), st.text(max_size=3), st.none()), min_size=0, max_size=4),
       st.lists(st.one_of(finite, st.floats()), min_size=3, max_size=3))
def test_geometry_is_valid_or_refused_naming_the_field(spacing, origin):
    try:
        g = Geometry(spacing, origin, size=(2, 3, 4))
    except DataError as e:
        _one_line(e)
        assert str(e).startswith("geometry: expected")
    else:
        assert all(s > 0 and math.isfinite(s) for s in g.spacing) and all(math.isfinite(o) for o in g.origin)
        assert Geometry.from_dict(g.to_dict()) == g and g.matches(g)


# ---- files ------------------------------------------------------------------------------------------------------
@FILES
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, max_side=5), elements=finite),
       st.tuples(*[st.floats(0.1, 9.0)] * 3), st.tuples(*[finite] * 3),
       st.sampled_from([".nii.gz", ".nrrd", ".mha", ".nii"]))
def test_written_images_read_back_on_the_same_grid(tmp_path, arr, spacing, origin, ending):
    geometry = Geometry.from_shape(arr.shape, spacing, origin)
    path = write_image(arr, geometry, tmp_path / f"x{ending}")
    back, g = read_image(path)
    np.testing.assert_array_equal(back, arr)
    assert g.matches(geometry)


def _nifti(tmp_path: Path) -> bytes:
    path = write_image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), Geometry.from_shape((2, 3, 4)),
                       tmp_path / "seed.nii")
    return path.read_bytes()


@FILES
@given(st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6),
       st.sampled_from(["image", "label"]))
def test_corrupted_nifti_headers_read_or_fail_in_one_line(tmp_path, edits, kind):
    data = bytearray(_nifti(tmp_path))
    for offset, value in edits:
        data[offset] = value
    bad = tmp_path / "bad.nii"
    bad.write_bytes(bytes(data))
    try:
        arr, g = read_image(bad, kind)
    except DataError as e:
        _one_line(e)
        assert str(e).startswith(str(bad))
    else:
        assert arr.ndim == 3 and arr.shape == g.shape


@FILES
@given(st.binary(max_size=600), st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]))
def test_arbitrary_bytes_are_refused_naming_the_file(tmp_path, blob, ending):
    path = tmp_path / f"junk{ending}"
    path.write_bytes(blob)
    try:
        read_image(path)
    except DataError as e:
        _one_line(e)
        assert str(e).startswith(str(path))


# ---- config -----------------------------------------------------------------------------------------------------
anything = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(), st.text(max_size=6),
                     st.lists(st.integers(-2, 64), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                  max_size=2))
NAMES = [f.name for f in fields(Config)]


@FAST
@given(st.dictionaries(st.sampled_from(NAMES + ["bogus_key"]), anything, max_size=4))
def test_config_from_any_mapping_is_valid_or_one_line_error_naming_the_field(values):
    try:
        cfg = Config.from_dict(values)
    except ConfigError as e:
        _one_line(e)
        msg = str(e)
        named = {k for k in values if f"--{k.replace('_', '-')}" in msg or k in msg}
        assert named, f"{msg!r} names none of {sorted(values)}"
    else:
        again = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg


@FAST
@given(st.text(max_size=60), st.sampled_from([".json", ".yaml"]))
def test_config_files_with_any_text_load_or_fail_in_one_line(tmp_path, text, suffix):
    pytest.importorskip("yaml")
    path = tmp_path / f"c{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        Config.load(path)
    except ConfigError as e:
        _one_line(e)
        assert str(path) in str(e) or str(e).startswith("--")


def test_nifti_with_bitpix_smaller_than_its_datatype_is_refused(tmp_path):
    """A float32 NIfTI whose bitpix says 8 and whose data is cut to what bitpix promises: one line, no crash."""
    data = bytearray(_nifti(tmp_path))
    data[72:74] = struct.pack("<h", 8)
    (vox_offset,) = struct.unpack("<f", data[108:112])
    bad = tmp_path / "bitpix.nii"
    bad.write_bytes(bytes(data[:int(vox_offset) + 24]))
    with pytest.raises(DataError, match="bitpix.nii: expected .* bytes of NIfTI float data"):
        read_image(bad)


def test_nii_gz_is_read_even_with_a_nii_beside_it(tmp_path):
    """Found by the round-trip property: ITK's reader returned x.nii's voxels when asked for x.nii.gz."""
    geometry = Geometry.from_shape((1, 1, 2))
    write_image(np.full((1, 1, 2), 5, np.float32), geometry, tmp_path / "x.nii")
    write_image(np.full((1, 1, 2), 7, np.float32), geometry, tmp_path / "x.nii.gz")
    assert read_image(tmp_path / "x.nii.gz")[0].ravel().tolist() == [7, 7]
    assert read_image(tmp_path / "x.nii")[0].ravel().tolist() == [5, 5]


def test_numpy_numbers_become_plain_python_numbers():
    cfg = Config(iterations=np.int64(5), patch=(np.int32(32), np.int64(32)), lr=np.float32(0.5))
    assert type(cfg.iterations) is int and type(cfg.lr) is float and all(type(p) is int for p in cfg.patch)
    json.dumps(cfg.to_dict())  # what the run folder's config.json needs
