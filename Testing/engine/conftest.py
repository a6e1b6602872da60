"""Shared fixtures of the engine tests: tiny synthetic datasets, CPU, a single thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actionpp.config import Config
from actionpp.data.io import Geometry
from actionpp.data.layout import Case, Dataset

torch.set_num_threads(1)

LABELS = {"background": 0, "outer": 1, "inner": 2, "core": 3}


def disc_case(name: str, rng: np.random.Generator, labeled: bool = True, z: int = 4, n: int = 32) -> Case:
    """Nested discs per slice (classes 1 > 2 > 3 in area) plus noise: a task a tiny net learns in a few steps."""
    yy, xx = np.mgrid[:n, :n]
    label = np.zeros((z, n, n), np.int64)
    for k in range(z):
        cy, cx = rng.integers(n // 3, 2 * n // 3, 2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        label[k][r2 < (n / 3.5) ** 2] = 1
        label[k][r2 < (n / 6) ** 2] = 2
        label[k][r2 < (n / 14) ** 2] = 3
    image = (label * 1.0 + rng.normal(0, 0.3, label.shape)).astype(np.float32)
    geo = Geometry(spacing=(1.5, 1.5, 8.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
                   size=(n, n, z))
    return Case(name, image, label if labeled else None, geo)


@pytest.fixture
def tiny_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(root=Path("."), format="nnunet", labels=dict(LABELS),
                   labeled=[disc_case(f"l{i}", rng) for i in range(2)],
                   unlabeled=[disc_case(f"u{i}", rng, labeled=False) for i in range(3)],
                   test=[disc_case("t0", rng)])


def tiny_config(tmp_path: Path, **kw) -> Config:
    """A config small enough for a few CPU iterations in well under a second each."""
    base = dict(out=str(tmp_path / "run"), dims=2, patch=(32, 32), channels=(8, 16, 32), iterations=4,
                batch_labeled=2, batch_unlabeled=2, device="cpu", checkpoint_every=2, embed_dim=16, anco_anchors=16,
                anco_negatives=32, anco_pool=16, ascl_queue=64, ascl_anchors_per_class=8, seed=3,
                ascl_precision="float32",  # the same numbers on every CPU ("auto" depends on the hardware)
                pretrain_iterations=0)  # the pre-training tests ask for it
    base.update(kw)
    if base["dims"] == 3 and "patch" not in kw:
        base["patch"] = (4, 32, 32)
    return Config(**base)
