"""One writer per run folder, with real processes: the lock names its holder and dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actionpp.data.phantoms import make_phantoms
from actionpp.events import read_events
from actionpp.runlock import LOCK_NAME, RunLock, RunLockedError, holder

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--patch", "32", "32", "--batch-labeled", "2", "--batch-unlabeled", "2", "--channels", "8", "16",
        "--embed-dim", "8", "--ascl-queue", "32", "--anco-anchors", "4", "--anco-negatives", "8", "--anco-pool", "8",
        "--ascl-anchors-per-class", "4", "--device", "cpu", "--quiet",
        "--pretrain-iterations", "0"]  # a long run must reach its first checkpoint quickly
HOLD = "import sys, time; from actionpp.runlock import RunLock; lock = RunLock(sys.argv[1]).acquire(); print('held', " \
       "flush=True); time.sleep(120)"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _holder_process(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def _actionpp(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actionpp", *args], capture_output=True, text=True, env=_env(),
                          timeout=120, **kw)


def test_lock_names_the_holding_process_and_dies_with_it(tmp_path):
    run = tmp_path / "run"
    other = _holder_process(run)
    try:
        assert holder(run) == str(other.pid)
        with pytest.raises(RunLockedError, match=rf"in use by process {other.pid}\b"):
            RunLock(run, retry_seconds=0.1).acquire()
    finally:
        other.send_signal(signal.SIGKILL)  # no clean-up code runs: the kernel drops the lock
        other.wait()
    assert holder(run) is None
    with RunLock(run) as lock:
        assert lock.held and (run / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert holder(run) is None


def test_holder_never_creates_anything(tmp_path):
    assert holder(tmp_path / "nowhere") is None and not (tmp_path / "nowhere").exists()


def test_second_train_and_resume_on_a_folder_in_use_are_refused(tmp_path):
    data = make_phantoms("cardiac", 3, 2, tmp_path / "data", test_cases=0, size=(2, 32, 32))
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "actionpp", "train", str(data), "--out", str(run),
                              "--iterations", "100000", "--checkpoint-every", "1", *TINY],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").is_file():  # running, with a checkpoint to resume from
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for args in (["train", "--resume", "--out", str(run)], ["train", str(data), "--out", str(run)]):
            second = _actionpp(*args, *TINY)
            assert second.returncode == 1
            err = second.stderr.strip()
            assert "\n" not in err and err.startswith("actionpp: error:")
            assert f"in use by process {first.pid}" in err and str(run) in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    starts = [e for e in read_events(run / "events.jsonl") if e["event"] == "start"]
    assert len(starts) == 1  # the refused processes wrote nothing
    assert holder(run) is None  # the killed writer's lock went with it


def test_runlock_imports_without_torch():
    """The Slicer logic imports it in Slicer's own Python, where torch must not be loaded."""
    probe = "import sys; sys.modules['torch'] = None; sys.modules['numpy'] = None; import actionpp.runlock; print('ok')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
