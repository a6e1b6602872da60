import warnings

import numpy as np
import pytest
import torch

from actionpp.data.case import Case
from actionpp.data.io import Geometry
from actionpp.data.loaders import ComplementIndices, IterationBatches, _weak_augment, batch_loader, normalize

from conftest import tiny_config


def test_batches_are_a_pure_function_of_the_iteration(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path)
    a = IterationBatches(cfg, tiny_dataset.labeled, tiny_dataset.unlabeled)
    b = IterationBatches(cfg, tiny_dataset.labeled, tiny_dataset.unlabeled)
    x, y, z = a[5], b[5], a[6]
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(x["l_image"], z["l_image"])
    assert x["l_image"].shape == (2, 1, 32, 32) and x["l_label"].dtype == torch.int64
    assert x["u_image"].shape == (2, 1, 32, 32)


def test_worker_processes_give_the_same_batches(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path)
    batches = IterationBatches(cfg, tiny_dataset.labeled, tiny_dataset.unlabeled)
    inline = list(batch_loader(batches, 3, 5, workers=0))
    forked = list(batch_loader(batches, 3, 5, workers=1))
    assert all(torch.equal(p[k], q[k]) for p, q in zip(inline, forked) for k in p)


def test_3d_patches_and_labels_stay_aligned(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path, dims=3, patch=(4, 16, 16))
    batch = IterationBatches(cfg, tiny_dataset.labeled, [])[0]
    assert batch["l_image"].shape == (2, 1, 4, 16, 16) and "u_image" not in batch
    img, lab = batch["l_image"][:, 0], batch["l_label"]
    # the synthetic image is label + noise: class means must stay ordered after crops, flips and rotations
    means = [float(img[lab == c].mean()) for c in range(4) if (lab == c).any()]
    assert means == sorted(means)


def test_normalize_is_zscore():
    x = np.arange(10, dtype=np.float32)
    z = normalize(x)
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.std()) - 1) < 1e-5


def test_complement_indices_list_exactly_the_voxels_outside_the_foreground():
    rng = np.random.default_rng(0)
    for size, p in ((1, 0.0), (1, 1.0), (50, 0.0), (50, 1.0), (200, 0.03), (200, 0.5), (1000, 0.97)):
        mask = rng.random(size) < p
        fg = np.flatnonzero(mask).astype(np.int32)
        bg = ComplementIndices(fg, size)
        assert len(bg) == int((~mask).sum())
        assert [int(bg[k]) for k in range(len(bg))] == np.flatnonzero(~mask).tolist()
        with pytest.raises(IndexError):
            bg[len(bg)]


def _case(name, label, dtype=np.uint8):
    rng = np.random.default_rng(len(name))
    image = (label + rng.normal(0, 0.3, label.shape)).astype(np.float32)
    geo = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Case(name, image, label.astype(dtype), geo)


def test_3d_crops_from_cached_indices_equal_monai_searching_the_label_each_draw(tmp_path):
    """The fast path (foreground found once per case, background as its complement) must give the batches MONAI's own
    search gives: same centres from the same draws, including a case smaller than the patch (padded first), a case
    with no foreground and one with no background. The reference gets int64 labels: on a uint8 tensor MONAI 1.6.1's
    ``map_binary_to_indices`` counts every voxel as background (``torch.any`` keeps uint8 and ``~`` flips bits), so
    its negative crops could centre on the foreground; the fast path gets uint8 labels and must not inherit that."""
    rng = np.random.default_rng(1)
    big = np.zeros((10, 40, 36), np.int64)
    big[3:6, 10:20, 5:12] = 1
    big[7, 30:33, 20:30] = 2
    small = (rng.random((3, 12, 14)) < 0.2).astype(np.int64)  # smaller than the patch: padded before the crop
    labels = {"big": big, "small": small, "empty": np.zeros((6, 20, 20), np.int64),
              "full": np.ones((5, 18, 18), np.int64)}
    cfg = tiny_config(tmp_path, dims=3, patch=(4, 16, 16), batch_labeled=3)
    fast = IterationBatches(cfg, [_case(n, v) for n, v in labels.items()], [])
    slow = IterationBatches(cfg, [_case(n, v, np.int64) for n, v in labels.items()], [])
    slow.aug_l = _weak_augment(slow.patch, ["image", "label"], pos_neg=True)  # no CropIndices: MONAI searches
    tight = IterationBatches(cfg, [_case(n, v) for n, v in labels.items()], [])
    tight.aug_l.transforms[1].max_bytes = 3000  # room for about one case's indices: the others are dropped, found again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns that the empty and full cases cannot be balanced (both paths)
        for it in range(12):
            a, b, c = fast[it], slow[it], tight[it]
            assert all(torch.equal(a[k], b[k]) and torch.equal(c[k], b[k]) for k in a), it
    assert set(fast.aug_l.transforms[1].cache) == {0, 1, 2, 3}  # every case drawn, its indices kept
    kept = tight.aug_l.transforms[1].cache
    assert len(kept) < 4 and sum(2 * fg.nbytes for fg, _ in kept.values()) <= 3000
