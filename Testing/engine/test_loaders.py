import numpy as np
import torch

from actionpp.data.loaders import IterationBatches, batch_loader, normalize

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
