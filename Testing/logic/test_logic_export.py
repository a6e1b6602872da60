"""Export of Slicer volumes + segmentations to the engine's nnU-Net raw layout, and the curation check."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is not installed (pip install slicer-core)")
import SimpleITK as sitk  # noqa: E402
from actionpp_logic_testing import boxes  # noqa: E402

from ACTIONppLogic import export  # noqa: E402
from ACTIONppLogic.export import CurationError, checkCuration, exportDataset  # noqa: E402

SHAPE = (6, 20, 24)  # z, y, x


def _image(seed=0):
    return np.random.default_rng(seed).normal(100, 20, SHAPE).astype(np.float32)


def _read(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def test_classes_mapped_by_name_not_order(ctx, mk, tmp_path):
    """Two volumes whose segmentations list the same names in different orders (and case) get the same values."""
    lvA, myoA, rvA = boxes(SHAPE, np.s_[1:4, 2:6, 2:6], np.s_[1:4, 8:12, 2:6], np.s_[2:5, 2:6, 10:16])
    lvB, myoB, rvB = boxes(SHAPE, np.s_[0:2, 10:15, 10:15], np.s_[3:6, 1:4, 1:4], np.s_[2:4, 14:18, 18:22])
    volA = mk.volume(ctx.scene, _image(0), "patient A")
    volB = mk.volume(ctx.scene, _image(1), "patient B")
    volC = mk.volume(ctx.scene, _image(2), "patient C")
    segA = mk.segmentation(ctx, volA, [("LV", lvA), ("Myo", myoA), ("RV", rvA)], "A seg")
    segB = mk.segmentation(ctx, volB, [("RV", rvB), ("lv ", lvB), ("myo", myoB)], "B seg")

    result = exportDataset([(volA, segA), (volB, segB), (volC, None)], tmp_path / "ds", ctx.segmentationsLogic)

    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "LV": 1, "Myo": 2, "RV": 3}
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".nrrd" and meta["channel_names"] == {"0": "image"}
    assert result.labeledCaseIds == ["patient_A", "patient_B"] and result.unlabeledCaseIds == ["patient_C"]
    assert sorted(p.name for p in (tmp_path / "ds" / "imagesTr").iterdir()) == [
        "patient_A_0000.nrrd", "patient_B_0000.nrrd", "patient_C_0000.nrrd"]
    assert sorted(p.name for p in (tmp_path / "ds" / "labelsTr").iterdir()) == ["patient_A.nrrd", "patient_B.nrrd"]
    for case, (lv, myo, rv) in (("patient_A", (lvA, myoA, rvA)), ("patient_B", (lvB, myoB, rvB))):
        label, _ = _read(tmp_path / "ds" / "labelsTr" / f"{case}.nrrd")
        expected = np.zeros(SHAPE, np.int16)
        expected[lv], expected[myo], expected[rv] = 1, 2, 3
        np.testing.assert_array_equal(label, expected)


def test_geometry_kept_voxel_for_voxel(ctx, mk, tmp_path):
    """Non-identity direction (axes permuted and flipped) and anisotropic spacing survive export exactly."""
    direction = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]  # i -> +A, j -> -R, k -> +S
    image = _image(3)
    vol = mk.volume(ctx.scene, image, "oblique", spacing=(0.7, 0.8, 3.0), origin=(12.5, -40.0, 7.0),
                    direction=direction)
    (mask,) = boxes(SHAPE, np.s_[2:5, 3:9, 4:20])
    seg = mk.segmentation(ctx, vol, [("tumour", mask)])

    exportDataset([(vol, seg)], tmp_path / "ds", ctx.segmentationsLogic)

    pixels, itkImage = _read(tmp_path / "ds" / "imagesTr" / "oblique_0000.nrrd")
    labels, itkLabel = _read(tmp_path / "ds" / "labelsTr" / "oblique.nrrd")
    np.testing.assert_array_equal(pixels, image)
    np.testing.assert_array_equal(labels, mask.astype(np.int16))
    # ITK works in LPS: RAS x and y change sign, in the origin and in the direction's rows.
    np.testing.assert_allclose(itkImage.GetSpacing(), (0.7, 0.8, 3.0), atol=1e-6)
    np.testing.assert_allclose(itkImage.GetOrigin(), (-12.5, 40.0, 7.0), atol=1e-6)
    lps = np.diag([-1, -1, 1]) @ np.array(direction, float)
    np.testing.assert_allclose(np.array(itkImage.GetDirection()).reshape(3, 3), lps, atol=1e-6)
    for get in ("GetSpacing", "GetOrigin", "GetDirection", "GetSize"):
        np.testing.assert_allclose(getattr(itkLabel, get)(), getattr(itkImage, get)(), atol=1e-6)


def test_segmentation_on_another_grid_is_mapped_onto_the_volume(ctx, mk, tmp_path):
    """A segmentation stored on a shifted grid (as after cropping) lands on the right voxels of the volume."""
    vol = mk.volume(ctx.scene, _image(4), "v", spacing=(1.0, 1.0, 2.0))
    shifted = mk.volume(ctx.scene, np.zeros((4, 10, 12), np.float32), "crop grid", spacing=(1.0, 1.0, 2.0),
                        origin=(5.0, 3.0, 4.0))  # i, j, k offsets 5, 3, 2 voxels
    (maskOnCrop,) = boxes((4, 10, 12), np.s_[1:3, 2:6, 3:9])
    seg = mk.segmentation(ctx, vol, [("organ", maskOnCrop)], grid=shifted)

    exportDataset([(vol, seg)], tmp_path / "ds", ctx.segmentationsLogic)

    labels, _ = _read(tmp_path / "ds" / "labelsTr" / "v.nrrd")
    expected = np.zeros(SHAPE, np.int16)
    expected[2 + 1:2 + 3, 3 + 2:3 + 6, 5 + 3:5 + 9] = 1
    np.testing.assert_array_equal(labels, expected)


def test_exported_dataset_loads_in_the_engine(ctx, mk, tmp_path):
    """The engine's own loader accepts the export: labeled and unlabeled cases, classes, same grids."""
    layout = pytest.importorskip("actionpp.data.layout", reason="the actionpp engine is not importable")
    a, b = boxes(SHAPE, np.s_[1:3, 2:8, 2:8], np.s_[3:5, 10:16, 10:16])
    vol1 = mk.volume(ctx.scene, _image(5), "one", spacing=(0.9, 0.9, 5.0),
                     direction=[[-1, 0, 0], [0, -1, 0], [0, 0, 1]])
    vol2 = mk.volume(ctx.scene, _image(6), "two", spacing=(0.9, 0.9, 5.0))
    seg1 = mk.segmentation(ctx, vol1, [("a", a), ("b", b)])
    exportDataset([(vol1, seg1), (vol2, None)], tmp_path / "ds", ctx.segmentationsLogic)

    dataset = layout.load_dataset(tmp_path / "ds")
    assert dataset.labels == {"background": 0, "a": 1, "b": 2}
    assert [c.name for c in dataset.labeled] == ["one"] and [c.name for c in dataset.unlabeled] == ["two"]


# ---- curation ------------------------------------------------------------------------------------------------
def _errors(report):
    return [p.message for p in report.errors]


def test_curation_reports_problems_as_a_list(ctx, mk):
    scene = ctx.scene
    m1, m2 = boxes(SHAPE, np.s_[1:3, 2:6, 2:6], np.s_[3:5, 8:12, 8:12])
    v = [mk.volume(scene, _image(i), f"v{i}") for i in range(6)]

    good = checkCuration([(v[0], mk.segmentation(ctx, v[0], [("LV", m1), ("RV", m2)])), (v[1], None)])
    assert good.problems == [] and good.canTrain and good.labeled == 1 and good.unlabeled == 1
    assert good.classes == {"LV": 1, "RV": 2} and good.labels() == {"background": 0, "LV": 1, "RV": 2}

    nothing = checkCuration([])
    assert not nothing.canTrain and "No volume selected" in _errors(nothing)[0]

    unlabeled = checkCuration([(v[1], None), (v[2], None)])
    assert any("No labeled volume" in m for m in _errors(unlabeled))

    disagree = checkCuration([(v[0], mk.segmentation(ctx, v[0], [("LV", m1), ("RV", m2)], "s0")),
                              (v[1], mk.segmentation(ctx, v[1], [("LV", m1), ("Myo", m2)], "s1"))])
    (message,) = _errors(disagree)
    assert "disagree" in message and "'RV'" in message and "'Myo'" in message

    duplicate = checkCuration([(v[2], mk.segmentation(ctx, v[2], [("LV", m1), ("lv", m2)], "dup"))])
    assert any("two segments named" in m for m in _errors(duplicate))

    empty = checkCuration([(v[3], mk.segmentation(ctx, v[3], [], "no segments"))])
    assert any("has no segments" in m for m in _errors(empty))

    unpainted = checkCuration([(v[4], mk.segmentation(ctx, v[4], [("LV", np.zeros(SHAPE, bool))], "blank"))])
    assert any("is empty (no painted voxel)" in m for m in _errors(unpainted))

    far = mk.volume(scene, np.zeros((2, 4, 4), np.float32), "far away", origin=(500.0, 500.0, 500.0))
    (farMask,) = boxes((2, 4, 4), np.s_[:, 1:3, 1:3])
    elsewhere = checkCuration([(v[5], mk.segmentation(ctx, v[5], [("LV", farMask)], "elsewhere", grid=far))])
    assert any("does not overlap" in m and "cannot be mapped" in m for m in _errors(elsewhere))

    background = checkCuration([(v[1], mk.segmentation(ctx, v[1], [("Background", m1)], "bg"))])
    assert any("named 'Background'" in m for m in _errors(background))

    twice = checkCuration([(v[1], None), (v[1], None)])
    assert any("listed twice" in m for m in _errors(twice))

    assert all(isinstance(p, export.Problem) for r in (disagree, duplicate, empty) for p in r.problems)


def test_curation_warnings_do_not_block(ctx, mk):
    m1, m2 = boxes(SHAPE, np.s_[1:3, 2:6, 2:6], np.s_[0:0, 0:0, 0:0])
    vol = mk.volume(ctx.scene, _image(7), "only labeled")
    report = checkCuration([(vol, mk.segmentation(ctx, vol, [("LV", m1), ("RV", m2)]))])
    assert report.canTrain
    warnings = [p.message for p in report.warnings]
    assert any("Segment 'RV'" in w and "is empty" in w for w in warnings)
    assert any("No unlabeled volume" in w for w in warnings)


def test_export_refuses_errors_and_existing_files(ctx, mk, tmp_path):
    vol = mk.volume(ctx.scene, _image(8), "v")
    with pytest.raises(CurationError, match="No labeled volume") as info:
        exportDataset([(vol, None)], tmp_path / "a", ctx.segmentationsLogic)
    assert info.value.problems and not (tmp_path / "a").exists()

    (mask,) = boxes(SHAPE, np.s_[1:3, 2:6, 2:6])
    seg = mk.segmentation(ctx, vol, [("LV", mask)])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="expected an empty or new folder"):
        exportDataset([(vol, seg)], tmp_path / "b", ctx.segmentationsLogic)
    assert (tmp_path / "b" / "mine.txt").read_text() == "user data"


def test_export_leaves_the_scene_as_it_was(ctx, mk, tmp_path):
    (mask,) = boxes(SHAPE, np.s_[1:3, 2:6, 2:6])
    vol = mk.volume(ctx.scene, _image(9), "v")
    seg = mk.segmentation(ctx, vol, [("LV", mask)])
    before = ctx.scene.GetNumberOfNodes()
    exportDataset([(vol, seg)], tmp_path / "ds", ctx.segmentationsLogic)
    assert ctx.scene.GetNumberOfNodes() == before
    assert vol.GetStorageNode() is None  # the user's node keeps its own storage settings (none here)
