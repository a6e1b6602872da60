"""Runs that end badly end cleanly: a moved run resumes where it is, write errors and non-finite losses stop with
one line, and the last good checkpoint stays valid and resumable."""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actionpp import checkpoint
from actionpp.cli import main
from actionpp.data.loaders import IterationBatches
from actionpp.data.phantoms import make_phantoms
from actionpp.events import read_events

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--patch", "32", "32", "--batch-labeled", "2", "--batch-unlabeled", "2", "--channels", "8", "16",
        "--embed-dim", "8", "--ascl-queue", "32", "--anco-anchors", "4", "--anco-negatives", "8", "--anco-pool", "8",
        "--ascl-anchors-per-class", "4", "--device", "cpu", "--quiet", "--seed", "5",
        "--pretrain-iterations", "0"]  # these tests count checkpoint writes: no pre-training stage (its own file)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_phantoms("cardiac", 3, 2, tmp_path_factory.mktemp("ds") / "data", test_cases=0, size=(2, 32, 32))


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionpp: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def _interrupt_at(monkeypatch, iteration: int) -> None:
    """Make iteration ``iteration`` (0-based) raise KeyboardInterrupt, as a kill between checkpoints would."""
    original = IterationBatches.__getitem__

    def getitem(self, it):
        if it == iteration:
            raise KeyboardInterrupt
        return original(self, it)

    monkeypatch.setattr(IterationBatches, "__getitem__", getitem)


def test_a_copied_run_resumes_in_the_copy_and_never_touches_the_original(data, tmp_path, monkeypatch, capsys):
    run, copy = tmp_path / "run", tmp_path / "moved here" / "run copy"
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        assert main(["train", str(data), "--out", str(run), "--iterations", "4", "--checkpoint-every", "2",
                     *TINY]) == 130
    shutil.copytree(run, copy)
    before = _snapshot(run)
    assert main(["train", "--resume", "--out", str(copy), "--device", "cpu", "--quiet"]) == 0
    assert _snapshot(run) == before and not (run / "model.pt").exists()
    assert (copy / "model.pt").is_file() and checkpoint.load(copy / "checkpoints" / "last.pt")["iteration"] == 4
    starts = [e for e in read_events(copy / "events.jsonl") if e["event"] == "start"]
    assert [e["start_iteration"] for e in starts] == [0, 2]
    import json

    assert json.loads((copy / "config.json").read_text())["out"] == str(copy)


def _full_disk_on_call(monkeypatch, n: int) -> list[int]:
    """``torch.save`` writes some bytes and then fails with ENOSPC on its ``n``-th call."""
    real, calls = torch.save, []

    def save(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) == n:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    return calls


def test_full_disk_while_checkpointing_is_one_line_and_last_pt_stays_valid(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _full_disk_on_call(m, 2)  # the checkpoint at iteration 2 is written, the one at 4 hits a full disk
        assert main(["train", str(data), "--out", str(run), "--iterations", "4", "--checkpoint-every", "2",
                     *TINY]) == 1
    err = _one_error_line(capsys)
    assert str(run / "checkpoints" / "last.pt") in err and "No space left on device" in err
    assert checkpoint.load(run / "checkpoints" / "last.pt")["iteration"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # no temporary left behind
    assert read_events(run / "events.jsonl")[-1]["event"] == "error"
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu", "--quiet"]) == 0
    assert (run / "model.pt").is_file()


def test_unwritable_events_file_names_the_file(data, tmp_path, monkeypatch, capsys):
    from actionpp import events

    run = tmp_path / "run"
    real_emit = events.EventLog.emit

    def emit(self, event, **fields):
        if event == "iter":
            self._fh.close()
            self._fh = open(os.devnull, "r")  # the next write fails like a revoked permission would
        return real_emit(self, event, **fields)

    monkeypatch.setattr(events.EventLog, "emit", emit)
    assert main(["train", str(data), "--out", str(run), "--iterations", "2", *TINY]) == 1
    err = _one_error_line(capsys)
    assert str(run / "events.jsonl") in err


def test_file_too_large_from_the_os_is_one_line(data, tmp_path):
    """A real ``RLIMIT_FSIZE`` (SIGXFSZ ignored, so writes fail with EFBIG) stops ``actionpp train`` cleanly."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "actionpp", "train", str(data), "--out", str(run), "--iterations",
                          "2", *TINY], capture_output=True, text=True, env=env, preexec_fn=limit, timeout=120)
    assert out.returncode == 1, out.stderr
    err = out.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("actionpp: error:"), err
    assert "last.pt" in err and "File too large" in err
    assert not (run / "checkpoints" / "last.pt").exists()


def _nan_at(monkeypatch, iteration: int) -> None:
    original = IterationBatches.__getitem__

    def getitem(self, it):
        batch = original(self, it)
        if it == iteration:
            batch["l_image"] = torch.full_like(batch["l_image"], float("nan"))
        return batch

    monkeypatch.setattr(IterationBatches, "__getitem__", getitem)


def _check_stopped_at_3_and_resumes(run: Path, capsys) -> str:
    err = _one_error_line(capsys)
    assert "iteration 3:" in err and "last.pt (iteration 2) is intact" in err
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["iteration"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in saved["learner"].values() if v.is_floating_point())
    assert read_events(run / "events.jsonl")[-1]["event"] == "error"
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu", "--quiet"]) == 0
    final = checkpoint.load(run / "model.pt")
    assert final["iterations"] == 4
    assert all(bool(np.isfinite(v.numpy()).all()) for v in final["state_dict"].values() if v.is_floating_point())
    return err


def test_non_finite_batch_stops_naming_iteration_and_tensor_and_resume_works(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _nan_at(m, 2)
        assert main(["train", str(data), "--out", str(run), "--iterations", "4", "--checkpoint-every", "2",
                     *TINY]) == 1
    assert "NaN/inf in l_image" in _check_stopped_at_3_and_resumes(run, capsys)


def test_non_finite_loss_terms_are_named_and_resume_works(data, tmp_path, monkeypatch, capsys):
    from actionpp.methods import Learner

    real = Learner.forward

    def forward(self, batch, it, g):
        loss, logs = real(self, batch, it, g)
        if it == 2:  # ASCL and AnCo blow up at iteration 3
            logs = {**logs, "anco": logs["anco"] * float("inf"), "ascl": logs["ascl"] * float("nan")}
            loss = loss + logs["ascl"]
        return loss, logs

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(Learner, "forward", forward)
        assert main(["train", str(data), "--out", str(run), "--iterations", "4", "--checkpoint-every", "2",
                     *TINY]) == 1
    err = _check_stopped_at_3_and_resumes(run, capsys)
    assert "anco=inf" in err and "ascl=nan" in err and "sup=" not in err


class _Payload:
    """Pickles as a call of ``os.mkdir``: what a hostile checkpoint could run on load."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_checkpoint_holding_code_is_refused_and_the_code_never_runs(tmp_path, capsys):
    marker = tmp_path / "code ran"
    torch.save({"iteration": 1, "learner": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(checkpoint.CheckpointError, match="evil.pt: not a readable ActionPP checkpoint"):
        checkpoint.load(tmp_path / "evil.pt")
    from actionpp.data.io import Geometry, write_image

    image = write_image(np.zeros((1, 8, 8), np.float32), Geometry.from_shape((1, 8, 8)), tmp_path / "in" / "a.nrrd")
    assert main(["predict", str(tmp_path / "evil.pt"), str(image), "--out", str(tmp_path / "a.nrrd")]) == 1
    assert "evil.pt" in _one_error_line(capsys) and not marker.exists()


def test_config_json_is_replaced_atomically(tmp_path, monkeypatch):
    from actionpp.config import Config

    path = tmp_path / "config.json"
    Config(iterations=7).save(path)
    real_write = os.fdopen

    def failing_fdopen(fd, *a, **kw):
        fh = real_write(fd, *a, **kw)
        fh.write = lambda text: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        return fh

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    with pytest.raises(OSError) as e:
        Config(iterations=9).save(path)
    assert e.value.filename == str(path) and e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert Config.load(path).iterations == 7 and [p.name for p in tmp_path.iterdir()] == ["config.json"]
