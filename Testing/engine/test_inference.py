import numpy as np
import pytest

from pathlib import Path

from actionpp.data.io import DataError, Geometry, read_image, write_image
from actionpp.data.layout import Dataset
from actionpp.inference import Predictor, predict_paths
from actionpp.trainer import Trainer

from conftest import LABELS, disc_case, tiny_config

ODD = Geometry(spacing=(0.7, 1.3, 6.0), origin=(-12.5, 40.0, 3.25),
               direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0), size=(37, 29, 5))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    rng = np.random.default_rng(0)
    ds = Dataset(root=Path("."), format="nnunet", labels=dict(LABELS),
                 labeled=[disc_case("l0", rng), disc_case("l1", rng)], unlabeled=[])
    out = {}
    for dims in (2, 3):
        tmp = tmp_path_factory.mktemp(f"m{dims}")
        out[dims] = Trainer(tiny_config(tmp, method="supervised", dims=dims, iterations=1), ds, show_bar=False).run()
    return out


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_prediction_lies_on_the_input_grid(tmp_path, models, dims, ending):
    image = np.random.default_rng(1).normal(size=(5, 29, 37)).astype(np.float32)  # z, y, x; not a patch multiple
    src = write_image(image, ODD, tmp_path / f"case{ending}")
    dst = tmp_path / "out" / f"pred{ending}"
    predict_paths(models[dims], src, dst, device="cpu")
    label, geo = read_image(dst, kind="label")
    assert label.shape == image.shape and geo.matches(ODD)
    assert set(np.unique(label)) <= {0, 1, 2, 3}


def test_folder_prediction_and_refusal_to_overwrite(tmp_path, models):
    for name in ("a", "b"):
        write_image(np.zeros((5, 29, 37), np.float32) + (name == "b"), ODD, tmp_path / "in" / f"{name}_0000.nii.gz")
    written = predict_paths(models[2], tmp_path / "in", tmp_path / "pred", device="cpu", largest_component=True)
    assert sorted(p.name for p in written) == ["a.nii.gz", "b.nii.gz"]
    before = (tmp_path / "pred" / "a.nii.gz").read_bytes()
    with pytest.raises(DataError, match="a.nii.gz: output exists"):
        predict_paths(models[2], tmp_path / "in", tmp_path / "pred", device="cpu")
    assert (tmp_path / "pred" / "a.nii.gz").read_bytes() == before


def test_largest_component_keeps_one_island_per_class():
    from actionpp.inference import keep_largest_component

    label = np.zeros((1, 10, 10), np.uint8)
    label[0, 0:2, 0:2] = 1      # small island of class 1
    label[0, 5:9, 5:9] = 1      # large island of class 1
    label[0, 0:3, 7:9] = 2      # single island of class 2
    kept = keep_largest_component(label, [1, 2])
    assert kept[0, 0:2, 0:2].sum() == 0 and (kept[0, 5:9, 5:9] == 1).all() and (kept[0, 0:3, 7:9] == 2).all()
