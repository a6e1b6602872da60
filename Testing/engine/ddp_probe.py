"""Run under ``torchrun --nproc_per_node=2``: one DDP forward/backward of iteration 0 on each rank's batch, as
``Trainer.train_step`` does it, and save the loss and the (averaged) gradients of rank 0 to ``OUT/rank<r>.pt``.
Used by test_distributed.py, which recomputes the same in one process. ``ddp_probe.py OUT fail``: a training in
which rank 1's second step raises (rank 0 is then stopped by torchrun), to see where that error goes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import LABELS  # noqa: E402
from test_distributed import probe_config, probe_dataset  # noqa: E402

from actionpp.trainer import Trainer, step_seed  # noqa: E402


def main(out: Path) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(probe_config(out / "run"), probe_dataset())
    rank = trainer.dist.rank
    assert trainer.dist.world == 2 and set(trainer.ds.labels) == set(LABELS)
    seed = step_seed(trainer.cfg.seed, 0, rank)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    trainer.learner.train()
    loss, _ = trainer.model(trainer.batches[0], 0, g)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in trainer.learner.student.named_parameters() if p.grad is not None}
    from actionpp.losses.ascl import ASCLoss

    ascl = ASCLoss(4, 16, torch.eye(4, 16), queue_size=64)
    rows = torch.randn(5 + 3 * rank, 16, generator=torch.Generator().manual_seed(rank))  # ranks differ in count
    ascl(rows, rows, torch.arange(rows.shape[0]) % 4, 0.1)
    torch.save({"loss": float(loss), "grads": grads, "rows": rows, "queue": ascl.queue.clone(),
                "queue_labels": ascl.queue_labels.clone(), "centroids": ascl.centroids.clone()},
               out / f"rank{rank}.pt")
    # as actionpp.trainer.train does: leave the group together (a rank tearing gloo down while its peer is still
    # writing can abort the process: "terminate called without an active exception", seen once in CI)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def fail_on_rank_one(out: Path) -> None:
    from dataclasses import replace

    original = Trainer.train_step

    def step(self, batch, it):
        if self.dist.rank == 1 and it == 1:
            raise RuntimeError("injected failure on rank 1")
        return original(self, batch, it)

    Trainer.train_step = step
    Trainer(replace(probe_config(out / "run"), iterations=4), probe_dataset()).run()


if __name__ == "__main__":
    (fail_on_rank_one if sys.argv[2:] == ["fail"] else main)(Path(sys.argv[1]))
