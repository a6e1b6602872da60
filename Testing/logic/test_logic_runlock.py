"""The logic and the batch script refuse a run folder that another engine process is writing (a REAL process holds
the engine's OS lock), naming that process, before anything is launched or written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from actionpp_logic_testing import ENGINE_ENV, MODULE_DIR, requireEngine

from ACTIONppLogic import jobs
from ACTIONppLogic.jobs import JobBusyError, TrainingJob

HOLD = "import sys, time; from actionpp.runlock import RunLock; lock = RunLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); time.sleep(120)"


@pytest.fixture
def heldRun(tmp_path):
    """A run folder (config + checkpoint) whose lock another process holds; yields (folder, that process's pid)."""
    requireEngine()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "config.json").write_text(json.dumps({"data": str(tmp_path / "dataset"), "iterations": 10}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                              env=ENGINE_ENV)
    assert holder.stdout.readline().strip() == "held"
    yield run, holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def test_training_job_refuses_a_folder_in_use_and_launches_nothing(heldRun, tmp_path):
    run, pid = heldRun
    assert jobs.runFolderHolder(run) == str(pid)
    job = TrainingJob(tmp_path / "dataset", run, python=sys.executable, baseEnv={})
    with pytest.raises(JobBusyError, match=rf"in use by process {pid}\b"):
        job.start()
    assert job.state == jobs.IDLE and job.pid is None and not (run / "train.log").exists()
    adopted = TrainingJob.fromRunFolder(run, python=sys.executable, baseEnv={})
    with pytest.raises(JobBusyError, match=rf"in use by process {pid}\b"):
        adopted.resume()
    assert adopted.pid is None and not (run / "train.log").exists()


def test_free_folder_has_no_holder(tmp_path):
    requireEngine()
    assert jobs.runFolderHolder(tmp_path / "nothing") is None
    jobs.checkRunFolderFree(tmp_path)  # no lock file: free


def test_batch_refuses_a_folder_in_use_in_one_line(heldRun, tmp_path):
    run, pid = heldRun
    (tmp_path / "dataset").mkdir()
    batch = MODULE_DIR / "Scripts" / "ACTIONppBatch.py"
    result = subprocess.run([sys.executable, str(batch), "--data", tmp_path / "dataset",
                             "--out", run], capture_output=True, text=True, timeout=120, env=ENGINE_ENV)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by process {pid}" in lines[0] and str(run) in lines[0]
