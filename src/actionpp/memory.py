"""Memory planning: estimate peak memory before training or prediction, and propose a setting that fits.

Training: the network is built on PyTorch's ``meta`` device (shapes only, nothing allocated, no compute) and run
once on a batch of the chosen patch; forward hooks add up every layer's output. Autograd keeps about that much for
the backward pass and the backward pass needs about as much again for the activation gradients, so the student's
share is ``TRAIN_FACTOR`` times the activations of the whole batch, plus weights, gradients and momentum; the
teacher's no-grad pass adds its weights and a fraction of its activations. On CPU the dataset, which is held in
memory, is added. The estimate is compared with the memory the device has free now (CUDA: ``mem_get_info``; CPU: the
cgroup limit or ``MemAvailable``).

Prediction: sliding-window output is one float per class and voxel plus a count map; the estimate is made per
volume, before computing it.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from actionpp.config import Config

GIB = 2**30
TRAIN_FACTOR = 2.0
"""Student activations are counted this many times (saved for backward, and their gradients during it)."""
TEACHER_FRACTION = 0.5
"""Share of the teacher's no-grad activations alive at once (each layer's output is freed after the next)."""
OVERHEAD = 1.15
"""Allocator slack and temporary buffers not counted layer by layer."""
WINDOW_FACTOR = 5.0
"""A prediction window's activations, counted this many times: convolution scratch and layout reorders come on top
of the layer outputs; on CPU (oneDNN) they took up to 4.5 times the outputs, depending on the class count (3D UNet,
32x128x128 windows, 3 to 16 classes)."""


class MemoryPlanError(ValueError):
    """The chosen setting would not fit the device's memory; the message proposes one that does."""


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory of ``device`` now (None where it cannot be told, e.g. MPS)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    limits = []
    for path, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(path).read_text().strip()
            if limit != "max" and int(limit) < 2**60:
                limits.append(int(limit) - int(Path(used).read_text().strip()))
        except (OSError, ValueError):
            continue
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    return max(0, min(limits)) if limits else None


_COUNTS: dict[str, tuple[int, int]] = {}
"""Counts by (network settings, channels, classes, batch): a folder of volumes is planned with one count."""


def activation_elements(cfg: Config, in_channels: int, num_classes: int, batch: int) -> tuple[int, int]:
    """``(activation elements, parameters)`` of one forward pass of the network on ``batch`` patches (meta device)."""
    key = json.dumps([cfg.to_dict(), in_channels, num_classes, batch], sort_keys=True, default=str)
    if key not in _COUNTS:
        _COUNTS[key] = _count(cfg, in_channels, num_classes, batch)
    return _COUNTS[key]


def _count(cfg: Config, in_channels: int, num_classes: int, batch: int) -> tuple[int, int]:
    from actionpp.nets import Model

    with torch.device("meta"):
        model = Model(cfg, in_channels, num_classes).eval()  # same shapes; no batch-statistics check on meta data
    total = [0]

    def count(_module, _inputs, output):
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        model(torch.empty((batch, in_channels, *cfg.patch), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return total[0], sum(p.numel() for p in model.parameters())


def training_bytes(cfg: Config, in_channels: int, num_classes: int, dataset_bytes: int = 0,
                   device: torch.device | str = "cpu") -> int:
    """Estimated peak bytes of a training step with ``cfg`` (plus the in-memory dataset on CPU)."""
    student_batch = cfg.batch_labeled + (cfg.batch_unlabeled if cfg.method != "supervised" else 0)
    per_item, params = activation_elements(cfg, in_channels, num_classes, 1)
    teacher_batch = cfg.batch_unlabeled + (cfg.batch_labeled if cfg.method == "actionpp" else 0)
    teacher = cfg.method != "supervised"
    bytes_per = 2 if cfg.amp and torch.device(device).type == "cuda" else 4
    acts = per_item * bytes_per * (student_batch * TRAIN_FACTOR + (teacher_batch * TEACHER_FRACTION if teacher else 0))
    weights = params * 4 * (3 + (1 if teacher else 0))  # weights, gradients, momentum; the teacher's weights
    queue = cfg.ascl_queue * cfg.embed_dim * 4 * 2 if cfg.method == "actionpp" else 0
    data = dataset_bytes if torch.device(device).type == "cpu" else 0
    return int(OVERHEAD * (acts + weights + queue) + data)


def _smaller(cfg: Config) -> Config | None:
    """The next setting to try: halve the batches first (down to 1), then shrink the in-plane patch."""
    if cfg.batch_labeled > 1 or cfg.batch_unlabeled > 1:
        return replace(cfg, batch_labeled=max(1, cfg.batch_labeled // 2),
                       batch_unlabeled=max(1 if cfg.method != "supervised" else 0, cfg.batch_unlabeled // 2))
    factor = 16 if cfg.network == "vnet" else 2 ** (len(cfg.channels) - 1)
    patch = list(cfg.patch)
    for axis in sorted(range(len(patch)), key=lambda a: -patch[a]):
        half = patch[axis] // 2 // factor * factor
        if half >= 2 * factor:  # a bottleneck of at least 2 x 2: BatchNorm trains even on a batch of 1
            patch[axis] = half
            return replace(cfg, patch=tuple(patch))
    return None


def format_size(n: float) -> str:
    """``1.5 GiB`` or ``300 MiB``."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


def _flags(cfg: Config) -> str:
    return (f"--patch {' '.join(map(str, cfg.patch))} --batch-labeled {cfg.batch_labeled} "
            f"--batch-unlabeled {cfg.batch_unlabeled}")


def plan_training(cfg: Config, in_channels: int, num_classes: int, dataset_bytes: int = 0,
                  device: torch.device | str = "cpu", available: int | None = None) -> int:
    """Return the estimated peak bytes of training with ``cfg`` on ``device``, or raise :class:`MemoryPlanError`
    proposing the largest smaller setting (batches halved, then the patch) whose estimate fits."""
    need = training_bytes(cfg, in_channels, num_classes, dataset_bytes, device)
    available = available_bytes(device) if available is None else available
    if available is None or need <= available:
        return need
    smaller, proposal = cfg, ""
    while (smaller := _smaller(smaller)) is not None:
        fits = training_bytes(smaller, in_channels, num_classes, dataset_bytes, device)
        if fits <= available:
            proposal = f"; try {_flags(smaller)} (about {format_size(fits)})"
            break
    if not proposal:
        proposal = "; no smaller patch or batch fits: use a device with more memory or fewer --channels"
    raise MemoryPlanError(f"{_flags(cfg)}: expected to fit the {format_size(available)} free on "
                          f"{torch.device(device)}, found an estimated peak of {format_size(need)}{proposal}")


def prediction_bytes(shape: tuple[int, ...], num_classes: int, cfg: Config, scores_on_device: bool = True) -> int:
    """Estimated peak bytes on the compute device of predicting one ``(Z, Y, X)`` volume.

    3D: the normalised image, the blended class scores and count map of the whole volume (unless they are kept on
    the CPU, ``scores_on_device=False``), the int64 label map, and one window of activations. 2D: slices are done 16
    at a time, so only that many slices of scores exist at once.
    """
    voxels = int(np.prod(shape))
    per_window, _ = activation_elements(cfg, 1, num_classes, 1)
    if cfg.dims == 2:
        chunk = min(16, shape[0]) * int(np.prod(shape[1:]))
        return int(OVERHEAD * (voxels * (4 + 8) + chunk * 4 * (num_classes + 1)) + WINDOW_FACTOR * per_window * 4 * 16)
    scores = voxels * 4 * (num_classes + 1) if scores_on_device else 0
    return int(OVERHEAD * (voxels * (4 + 8) + scores) + WINDOW_FACTOR * per_window * 4)


def prediction_host_bytes(shape: tuple[int, ...], num_classes: int, cfg: Config) -> int:
    """Peak bytes in host memory of predicting one volume when the scores are kept there (besides the device)."""
    voxels = int(np.prod(shape))
    scores = voxels * 4 * (num_classes + 1) if cfg.dims == 3 else 0
    return int(OVERHEAD * (voxels * (4 + 4 + 1) + scores))
