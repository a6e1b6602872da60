"""Training batches: a labeled and an unlabeled stream, each batch a pure function of the iteration number.

``IterationBatches[i]`` draws the cases, slices/patches and MONAI augmentations of iteration ``i`` from a generator
seeded with ``(seed, i)``. Resuming at iteration ``i`` therefore sees exactly the batches an uninterrupted run would,
and a ``DataLoader`` with worker processes (``cfg.workers``) gives the same batches as loading in-process.

2D mode samples a slice along axis 0 (the through-plane axis) and crops/pads it to ``cfg.patch``; 3D mode crops a
patch, centred on a foreground voxel half of the time for labeled cases (MONAI ``RandCropByPosNegLabeld``), so small
structures are seen often enough. Labeled and unlabeled samples get the same weak augmentation (flips, in-plane
90-degree rotations, intensity scale/shift); the strong view of the unlabeled branch is made later on the device.

The volumes come from a :class:`~actionpp.data.volumes.VolumeStore` (``--cache``: held in memory, memory-mapped from
``RUN/cache`` or read from the dataset at each draw); every mode hands the same z-scored arrays to the same draws.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.transforms import (Compose, RandCropByPosNegLabeld, RandFlipd, RandRotate90d, RandScaleIntensityd,
                              RandShiftIntensityd, RandSpatialCropd, SpatialPadd)

from actionpp.config import Config
from actionpp.data.layout import Case
from actionpp.data.volumes import VolumeStore, normalize

__all__ = ["IterationBatches", "batch_loader", "normalize"]


def _weak_augment(patch: Sequence[int], keys: list[str], pos_neg: bool) -> Compose:
    dims = len(patch)
    crop = (RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch, pos=1, neg=1, num_samples=1,
                                   allow_smaller=True)
            if pos_neg else RandSpatialCropd(keys, roi_size=patch, random_size=False))
    flips = [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(dims)]
    rot = [RandRotate90d(keys, prob=0.5, spatial_axes=(dims - 2, dims - 1))] if patch[-1] == patch[-2] else []
    return Compose([SpatialPadd(keys, spatial_size=patch), crop, SpatialPadd(keys, spatial_size=patch), *flips, *rot,
                    RandScaleIntensityd("image", factors=0.1, prob=0.5),
                    RandShiftIntensityd("image", offsets=0.1, prob=0.5)])


class IterationBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``i`` is the whole batch of iteration ``i``.

    Items are dicts with ``l_image`` (Bl, 1, *P) float32, ``l_label`` (Bl, *P) int64 and, when there are unlabeled
    cases and ``batch_unlabeled > 0``, ``u_image`` (Bu, 1, *P).
    """

    def __init__(self, cfg: Config, labeled: list[Case] | VolumeStore, unlabeled: list[Case] | VolumeStore,
                 length: int | None = None, rank: int | None = None):
        """``labeled``/``unlabeled``: stores, or lists of cases (then held in memory, z-scored). ``rank``: under
        ``torchrun``, this process's rank (its batches differ from the other ranks')."""
        self.cfg = cfg
        self.rank = rank
        self.patch = tuple(cfg.patch)
        self.labeled = labeled if isinstance(labeled, VolumeStore) else VolumeStore(labeled, "memory")
        self.unlabeled = (unlabeled if isinstance(unlabeled, VolumeStore)
                          else VolumeStore(unlabeled, "memory", with_labels=False))
        self.length = length if length is not None else cfg.iterations
        self.aug_l = _weak_augment(self.patch, ["image", "label"], pos_neg=cfg.dims == 3)
        self.aug_u = _weak_augment(self.patch, ["image"], pos_neg=False)

    def __len__(self) -> int:
        return self.length

    def _draw(self, pool: VolumeStore, rng: np.random.Generator, aug: Compose) -> tuple[np.ndarray, np.ndarray | None]:
        i = int(rng.integers(len(pool)))
        z = int(rng.integers(pool.depths[i])) if self.cfg.dims == 2 else None
        image, label = pool.take(i, z)
        sample = {"image": image[None]}
        if label is not None:
            sample["label"] = label[None]
        aug.set_random_state(seed=int(rng.integers(2**31 - 1)))
        out = aug(sample)
        out = out[0] if isinstance(out, list) else out
        img = np.asarray(out["image"], dtype=np.float32)
        lab = None if label is None else np.asarray(out["label"])[0].astype(np.int64)
        return img, lab

    def __getitem__(self, iteration: int) -> dict[str, torch.Tensor]:
        key = [self.cfg.seed, int(iteration)] + ([self.rank] if self.rank is not None else [])
        rng = np.random.default_rng(key)
        drawn = [self._draw(self.labeled, rng, self.aug_l) for _ in range(self.cfg.batch_labeled)]
        batch = {"l_image": torch.from_numpy(np.stack([d[0] for d in drawn])),
                 "l_label": torch.from_numpy(np.stack([d[1] for d in drawn]))}
        if self.unlabeled and self.cfg.batch_unlabeled > 0:
            drawn = [self._draw(self.unlabeled, rng, self.aug_u) for _ in range(self.cfg.batch_unlabeled)]
            batch["u_image"] = torch.from_numpy(np.stack([d[0] for d in drawn]))
        return batch


def batch_loader(batches: IterationBatches, start: int, stop: int, workers: int) -> torch.utils.data.DataLoader:
    """Iterate the batches of iterations ``start .. stop-1`` in order (``workers`` background processes)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, stop), num_workers=workers,
                                       persistent_workers=False, pin_memory=False)
