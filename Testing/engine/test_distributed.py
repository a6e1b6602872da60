"""torchrun with 2 gloo processes on CPU: one event log, one model, gradients averaged as one process computing both
ranks' batches would, a global ASCL queue, and resume of a 2-process run in 1 process. Precision: bf16 autocast on
CPU, with the contrastive log-sum-exps kept in float32."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LABELS, disc_case, tiny_config

from actionpp.config import Config
from actionpp.data.layout import Dataset

HERE = Path(__file__).resolve().parent
TINY = ["--patch", "32", "32", "--batch-labeled", "2", "--batch-unlabeled", "1", "--channels", "8", "16",
        "--embed-dim", "16", "--ascl-queue", "64", "--ascl-anchors-per-class", "8", "--anco-anchors", "8",
        "--anco-negatives", "16", "--anco-pool", "8", "--ascl-precision", "float32", "--device", "cpu", "--quiet"]


def probe_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(root=Path("."), format="nnunet", labels=dict(LABELS),
                   labeled=[disc_case(f"l{i}", rng) for i in range(2)],
                   unlabeled=[disc_case(f"u{i}", rng, labeled=False) for i in range(2)], test=[])


def probe_config(out: Path) -> Config:
    return tiny_config(out.parent, out=str(out), method="mean-teacher", val_fraction=0.0)


def _torchrun(*args, env=None, **kwargs):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from actionpp.data.phantoms import make_phantoms

    return make_phantoms("cardiac", 4, 2, tmp_path_factory.mktemp("ddp") / "data", seed=0, test_cases=1,
                         size=(4, 32, 32))


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_two_processes_write_one_log_and_a_model_that_predicts(phantoms, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun("-m", "actionpp", "train", phantoms, "--out", run, "--method", "actionpp", "--iterations", "4",
                     "--checkpoint-every", "2", *TINY)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "FutureWarning" not in output, output  # torch 2.13 deprecates DDP's broadcast_buffers
    events = [e for e in _events(run) if e.get("phase") != "pretrain"]  # pre-training has its own start/iters
    assert [e["event"] for e in events].count("start") == 1 and [e["event"] for e in events].count("done") == 1
    assert [e["iteration"] for e in events if e["event"] == "iter"] == [1, 2, 3, 4]
    assert [e["iteration"] for e in _events(run) if e.get("phase") == "pretrain" and e["event"] == "iter"] == [1]
    from actionpp.cli import main

    assert main(["predict", str(run), str(phantoms / "imagesTs"), "--out", str(tmp_path / "pred"),
                 "--device", "cpu"]) == 0
    assert len(list((tmp_path / "pred").iterdir())) == 1


def test_gradients_are_averaged_as_one_process_computing_both_batches(tmp_path):
    proc = _torchrun(HERE / "ddp_probe.py", tmp_path)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    from actionpp.trainer import Trainer, step_seed

    torch.set_num_threads(1)
    reference = Trainer(probe_config(tmp_path / "reference"), probe_dataset())
    assert not reference.dist.active
    from actionpp.data.loaders import IterationBatches

    losses, grads = [], {}
    for rank in (0, 1):
        batches = IterationBatches(reference.cfg, reference.train_cases, reference.ds.unlabeled, rank=rank)
        seed = step_seed(reference.cfg.seed, 0, rank)
        torch.manual_seed(seed)
        reference.learner.train()
        loss, _ = reference.learner(batches[0], 0, torch.Generator().manual_seed(seed))
        reference.learner.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        for name, p in reference.learner.student.named_parameters():
            if p.grad is not None:
                grads[name] = grads.get(name, 0) + p.grad / 2
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["loss"] for r in ranks] == pytest.approx(losses, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1])  # the two ranks really had different batches
    assert set(ranks[0]["grads"]) == set(grads)
    for name, g in grads.items():
        torch.testing.assert_close(ranks[0]["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(ranks[1]["grads"][name], ranks[0]["grads"][name])  # the same on both ranks
    # ASCL: both ranks enqueue every rank's keys (5 + 8 rows, rank order) and share the centroids.
    import torch.nn.functional as F

    both = F.normalize(torch.cat([ranks[0]["rows"], ranks[1]["rows"]]), dim=1)
    for r in ranks:
        torch.testing.assert_close(r["queue"][:13], both)
        assert (r["queue_labels"][:13] >= 0).all() and (r["queue_labels"][13:] == -1).all()
    torch.testing.assert_close(ranks[0]["centroids"], ranks[1]["centroids"])


def test_a_two_process_run_resumes_in_one_process(phantoms, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun("-m", "actionpp", "train", phantoms, "--out", run, "--method", "actionpp", "--iterations", "60",
                     "--checkpoint-every", "2", *TINY)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if (run / "events.jsonl").is_file() and any(e["event"] == "checkpoint" for e in _events(run)):
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    stopped = max(e["iteration"] for e in _events(run) if e["event"] == "checkpoint")
    assert 2 <= stopped < 60 and not (run / "model.pt").exists()
    from actionpp.cli import main

    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    starts = [e for e in _events(run) if e["event"] == "start" and e.get("phase") != "pretrain"]
    assert starts[-1]["start_iteration"] >= stopped and (run / "model.pt").is_file()


def test_bf16_autocast_trains_on_cpu_and_the_contrastive_terms_stay_float32(tmp_path):
    from actionpp.losses.ascl import ASCLoss
    from actionpp.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, method="actionpp", precision="bf16", iterations=1), probe_dataset())
    assert trainer.autocast_dtype is torch.bfloat16 and not trainer.scaler.is_enabled()
    logs = trainer.train_step(trainer.batches[0], 0)
    assert np.isfinite(logs["loss"])

    torch.manual_seed(0)
    loss = ASCLoss(4, 16, torch.randn(4, 16), queue_size=64)
    s, t = torch.randn(32, 16), torch.randn(32, 16)
    y = torch.randint(0, 4, (32,))
    exact = loss(s, t, y, 0.07)
    loss.queue.zero_(), loss.queue_labels.fill_(-1), loss.ptr.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(s, t, y, 0.07)
    assert float(mixed) == pytest.approx(float(exact), rel=1e-6)  # the loss is computed in float32 inside
    naive = torch.logsumexp((s.bfloat16() @ t.bfloat16().T) / 0.07, 1).float()  # what bf16 logits would give
    assert (naive - torch.logsumexp((s @ t.T) / 0.07, 1)).abs().max() > 1e-2


def test_an_error_on_another_rank_reaches_the_event_log(tmp_path):
    """Rank 1 fails at its second step: its error is in rank 0's events.jsonl, naming the rank, and torchrun fails."""
    proc = _torchrun(HERE / "ddp_probe.py", tmp_path, "fail")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, output
    errors = [e for e in _events(tmp_path / "run") if e["event"] == "error"]
    assert any(e.get("rank") == 1 and "injected failure on rank 1" in e["message"] for e in errors), errors
