"""Training batches: a labeled and an unlabeled stream, each batch a pure function of the iteration number.

``IterationBatches[i]`` draws the cases, slices/patches and MONAI augmentations of iteration ``i`` from a generator
seeded with ``(seed, i)``. Resuming at iteration ``i`` therefore sees exactly the batches an uninterrupted run would,
and a ``DataLoader`` with worker processes (``cfg.workers``) gives the same batches as loading in-process.

2D mode samples a slice along axis 0 (the through-plane axis) and crops/pads it to ``cfg.patch``; 3D mode crops a
patch, centred on a foreground voxel half of the time for labeled cases (MONAI ``RandCropByPosNegLabeld``), so small
structures are seen often enough. MONAI would search the whole label for its foreground and background voxels at every
draw (about 0.6 s for a 160 x 384 x 384 label); :class:`CropIndices` finds the foreground once per case and gives the
background as its complement without listing it, so the same centres come out of the same random draws. Labeled and
unlabeled samples get the same weak augmentation (flips, in-plane 90-degree rotations, intensity scale/shift); the
strong view of the unlabeled branch is made later on the device.

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

__all__ = ["IterationBatches", "batch_loader", "normalize", "ComplementIndices", "CropIndices"]


class ComplementIndices:
    """The ascending flat indices in ``range(size)`` that are not in ``fg``, without listing them: ``len`` and ``[k]``.

    With ``g_i = fg_i - i`` (non-decreasing for ascending, distinct ``fg``), the ``k``-th index outside ``fg`` is
    ``k + #{i : g_i <= k}``: one binary search per lookup, memory that of ``fg``. It stands in for the background
    index array of MONAI's ``generate_pos_neg_label_crop_centers``, which uses only ``len`` and integer indexing (it
    converts a ``Sequence`` to an array, so this class is deliberately not one).

    Args:
        fg: ``(F,)`` ascending, distinct flat indices in ``[0, size)``.
        size: number of voxels.
    """

    def __init__(self, fg: np.ndarray, size: int) -> None:
        self.gaps = fg - np.arange(len(fg), dtype=fg.dtype)
        self.size = int(size)

    def __len__(self) -> int:
        return self.size - len(self.gaps)

    def __getitem__(self, k: int) -> np.int64:
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} background voxels")
        return np.int64(k + int(np.searchsorted(self.gaps, k, side="right")))


class CropIndices:
    """Dict transform: adds ``fg_indices``/``bg_indices`` (the keys given to ``RandCropByPosNegLabeld``) for the case
    named by the sample's ``case`` key (popped), computed from its label on first sight and kept.

    Foreground as MONAI's ``map_binary_to_indices`` without an image: the flat indices of nonzero voxels of the
    ``(1, *S)`` label, int32 when the volume allows (4 bytes per foreground voxel, the background costs nothing). The
    label must be the one the crop sees (after any padding): place this right before the crop. Each data-loading
    worker keeps its own copy, at most ``max_bytes`` of indices: past that the cases seen longest ago are dropped and
    found again when drawn (``np.flatnonzero``, still a fraction of MONAI's search).
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self.cache: dict[int, tuple[np.ndarray, ComplementIndices]] = {}

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        case = d.pop("case")
        if case not in self.cache:
            flat = np.asarray(d["label"]).reshape(-1)
            fg = np.flatnonzero(flat).astype(np.int32 if flat.size < 2**31 else np.int64)
            held = lambda: sum(2 * f.nbytes for f, _ in self.cache.values())  # noqa: E731 - foreground + gaps
            while self.cache and 2 * fg.nbytes + held() > self.max_bytes:
                del self.cache[next(iter(self.cache))]  # the case seen longest ago
            self.cache[case] = (fg, ComplementIndices(fg, flat.size))
        d["fg_indices"], d["bg_indices"] = self.cache[case]
        return d


def _weak_augment(patch: Sequence[int], keys: list[str], pos_neg: bool, indices: CropIndices | None = None) -> Compose:
    """Pad, crop (foreground-centred half of the time with ``pos_neg``; ``indices`` supplies the crop's voxel lists,
    else MONAI searches the label at every draw), pad, flips, 90-degree rotations, intensity scale and shift."""
    dims = len(patch)
    crop = ([RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch, pos=1, neg=1, num_samples=1,
                                    allow_smaller=True, fg_indices_key="fg_indices", bg_indices_key="bg_indices")]
            if pos_neg else [RandSpatialCropd(keys, roi_size=patch, random_size=False)])
    if pos_neg and indices is not None:
        crop.insert(0, indices)  # not Randomizable: the seeds Compose hands to the random transforms do not change
    flips = [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(dims)]
    rot = [RandRotate90d(keys, prob=0.5, spatial_axes=(dims - 2, dims - 1))] if patch[-1] == patch[-2] else []
    return Compose([SpatialPadd(keys, spatial_size=patch), *crop, SpatialPadd(keys, spatial_size=patch), *flips, *rot,
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
        self.aug_l = _weak_augment(self.patch, ["image", "label"], pos_neg=cfg.dims == 3, indices=CropIndices())
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
            if self.cfg.dims == 3:
                sample["case"] = i  # for CropIndices
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
