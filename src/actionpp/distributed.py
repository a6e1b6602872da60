"""Training on several processes with ``torchrun`` (``torch.distributed``): one process per GPU (NCCL) or per CPU
worker (gloo), on one node or many.

``torchrun --standalone --nproc_per_node=N -m actionpp train DATA --out RUN ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`setup` then joins the process group. What each part of a run does with ``N`` processes:

- **Batches** are drawn per rank (the generator of iteration ``i`` is seeded with ``(seed, i, rank)``), so the global
  batch is ``N`` times ``--batch-labeled`` + ``--batch-unlabeled``. With plain SGD on averaged gradients this is one
  step on an ``N`` times larger batch: keep ``--lr`` for the same per-step behaviour, or scale it with ``N`` (linear
  scaling) to go through the data faster (README, "Several GPUs").
- **Gradients** are averaged by ``DistributedDataParallel`` around the learner (one forward per step).
- **BatchNorm** statistics are computed per rank in the forward pass (no SyncBatchNorm: gloo has no CPU support for
  it), then the running statistics are averaged across ranks after every step (:func:`average_buffers`), so the
  student, and the EMA teacher that follows it, stay identical on every rank.
- **ASCL's queue and centroids are global**: each rank's keys are gathered before they are enqueued and the centroid
  sums are all-reduced (:func:`gather_rows`, :func:`all_reduce_sum`), so every rank holds the same queue, as one
  process with the global batch would.
- **Only rank 0 writes** ``events.jsonl``, checkpoints and ``model.pt``; an error on any rank is appended to
  ``events.jsonl`` as an ``error`` event naming the rank.
- **Resume** works with another number of processes: the checkpoint holds no per-rank state.

Everything here is a no-op in a single process.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def world_from_env() -> Context:
    """The launch as ``torchrun`` describes it in the environment (one process when not launched by it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Context(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str) -> tuple[Context, str]:
    """Join the process group when launched by ``torchrun``; returns the context and this rank's device string.

    CUDA (``device`` cuda/auto with GPUs) uses NCCL and GPU ``LOCAL_RANK``; otherwise gloo on the CPU.
    """
    ctx = world_from_env()
    if not ctx.active:
        return ctx, device
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        torch.cuda.set_device(ctx.local_rank)
        device = f"cuda:{ctx.local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    return ctx, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_text(text: str) -> str:
    """Rank 0's ``text`` on every rank (``text`` itself in one process)."""
    if not active():
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_main() -> bool:
    """Rank 0, or the only process."""
    return not active() or dist.get_rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (``tensor`` unchanged in one process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_rows(rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(N_r, D)`` and labels ``(N_r,)`` of every rank, concatenated in rank order (``N_r`` may differ)."""
    if not active():
        return rows, labels
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    most = int(max(c.item() for c in counts))
    padded_rows = torch.zeros(most, rows.shape[1], dtype=rows.dtype, device=rows.device)
    padded_rows[: rows.shape[0]] = rows
    padded_labels = torch.full((most,), -1, dtype=labels.dtype, device=labels.device)
    padded_labels[: labels.shape[0]] = labels
    all_rows = [torch.zeros_like(padded_rows) for _ in range(world)]
    all_labels = [torch.zeros_like(padded_labels) for _ in range(world)]
    dist.all_gather(all_rows, padded_rows)
    dist.all_gather(all_labels, padded_labels)
    n = [int(c.item()) for c in counts]
    return (torch.cat([r[:k] for r, k in zip(all_rows, n)]), torch.cat([y[:k] for y, k in zip(all_labels, n)]))


@torch.no_grad()
def average_buffers(module: torch.nn.Module, only: tuple[str, ...] | None = None) -> None:
    """Average floating-point buffers (BatchNorm running mean / variance) over ranks, in place; ``only``: just the
    module's own buffers with these names."""
    if not active():
        return
    world = dist.get_world_size()
    buffers = ([b for name, b in module.named_buffers(recurse=False) if name in only] if only is not None
               else list(module.buffers()))
    for buffer in buffers:
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world)


def average_gradients(parameters) -> None:
    """Average ``.grad`` over ranks (the pre-training stage's several modules; the main loop uses DDP)."""
    if not active():
        return
    world = dist.get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """``module`` under DDP with gradients averaged by DDP and buffers left to :func:`average_buffers`.

    DDP does not re-broadcast buffers before each forward (ours are averaged after each step instead). torch 2.13 names
    that ``forward_sync_buffers=False`` and deprecates ``broadcast_buffers``; older torch knows only the latter. The new
    spelling also copies rank 0's buffers to every rank once at construction, which changes nothing here: the ranks
    already hold the same buffers then (same seed or checkpoint; the pre-training stage averages its BatchNorm
    statistics over ranks). ``find_unused_parameters``: a method may leave
    parameters out of a step's graph (supervised and mean-teacher never call ``Model.embed``).
    """
    ddp = torch.nn.parallel.DistributedDataParallel
    no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                       else {"broadcast_buffers": False})
    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True,
               **no_forward_sync)
