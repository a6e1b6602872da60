"""Job control: events.jsonl parsing, process-tree cancel, one job per scene, and a REAL training subprocess
(tiny phantoms) that is cancelled, resumes to the end, and fails with a readable log tail. (A run that finishes
with its progress parsed is in test_logic_core.py.)"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from actionpp_logic_testing import ENGINE_ENV, TINY_TRAINING, requireEngine

from ACTIONppLogic import engine, jobs
from ACTIONppLogic.jobs import (CANCELLED, FAILED, FINISHED, RUNNING, Curves, EventReader, Job, JobBusyError, JobSlots,
                                Progress, TrainingJob, TrainingSettings, applyEvent)

psutil = pytest.importorskip("psutil")


# ---- events.jsonl -----------------------------------------------------------------------------------------------
def test_event_reader_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.read() == []  # no file yet
    with open(path, "w") as f:
        f.write('{"event": "start", "total": 10}\n{"event": "iter", "itera')  # second line half written
        f.flush()
        assert [e["event"] for e in reader.read()] == ["start"]
        assert reader.read() == []
        f.write('tion": 1, "loss": 0.5}\nnot json\n["no event key"]\n')
        f.flush()
        events = reader.read()
    assert events == [{"event": "iter", "iteration": 1, "loss": 0.5}] and reader.badLines == 2
    path.write_text('{"event": "start", "total": 3}\n')  # replaced by a shorter file: start over
    assert reader.read() == [{"event": "start", "total": 3}]


def test_progress_and_curves_from_events_including_a_resume():
    progress, curves = Progress(), Curves()
    stream = [
        {"event": "start", "total": 6, "start_iteration": 0, "method": "actionpp", "device": "cpu", "labels": {"a": 1}},
        *[{"event": "iter", "iteration": i, "total": 6, "loss": 1.0 / i, "losses": {"sup": 0.5 / i}, "lr": 0.01,
           "tau": {"anco": 0.5}, "sec_per_iter": 2.0, "eta_s": 2.0 * (6 - i)} for i in (1, 2, 3)],
        {"event": "val", "iteration": 3, "dice": {"a": 0.4}, "mean_dice": 0.4},
        # cancelled after 3, resumed from the checkpoint at 2: iteration 3 is done again
        {"event": "start", "total": 6, "start_iteration": 2, "method": "actionpp", "device": "cpu"},
        *[{"event": "iter", "iteration": i, "total": 6, "loss": 1.0 / i, "losses": {"sup": 0.5 / i}, "lr": 0.01,
           "sec_per_iter": 2.0, "eta_s": 2.0 * (6 - i)} for i in (3, 4, 5, 6)],
        {"event": "val", "iteration": 6, "dice": {"a": 0.8}, "mean_dice": 0.8},
        {"event": "done", "iteration": 6, "model": "RUN/model.pt", "val_dice": 0.8},
        {"event": "mystery", "x": 1},
    ]
    for i, event in enumerate(stream):
        applyEvent(progress, curves, event)
        if i == 3:
            assert progress.iteration == 3 and progress.etaSeconds == 6.0 and progress.fraction == 0.5
            assert "Iteration 3/6" in progress.summary() and "ETA 6 s" in progress.summary()
    assert [i for i, _ in curves["loss"]] == [1, 2, 3, 4, 5, 6]
    assert curves["loss/sup"][-1] == (6, pytest.approx(0.5 / 6))
    # The validation at 3 came from the cancelled part of the run (iteration 3 was redone): it is dropped.
    assert curves["val_dice"] == [(6, 0.8)] and curves["val_dice/a"] == [(6, 0.8)]
    assert progress.done and progress.meanDice == 0.8 and progress.labels == {"a": 1}
    applyEvent(progress, curves, {"event": "error", "message": "CUDA out of memory"})
    assert progress.errorMessage == "CUDA out of memory"


def test_settings_become_engine_flags_and_cpu_hides_gpus(tmp_path):
    settings = TrainingSettings(method="mean-teacher", dims=3, iterations=50, device="cpu", patch=(16, 32, 32),
                                batchLabeled=1, seed=7, extraArgs=["--channels", "8", "16"])
    job = TrainingJob(tmp_path / "data", tmp_path / "run", settings, python="/opt/PythonSlicer",
                      baseEnv={"PYTHONPATH": "/somewhere", "CUDA_VISIBLE_DEVICES": "0"})
    assert job.command == ["/opt/PythonSlicer", "-m", "actionpp", "train", str(tmp_path / "data"), "--out",
                           str(tmp_path / "run"), "--method", "mean-teacher", "--device", "cpu", "--dims", "3",
                           "--iterations", "50", "--batch-labeled", "1", "--seed", "7", "--patch", "16", "32", "32",
                           "--channels", "8", "16"]
    assert job.env["CUDA_VISIBLE_DEVICES"] == ""
    root = engine.findEngineRoot()
    assert root is not None and (root / "actionpp" / "__init__.py").is_file()
    assert job.env["PYTHONPATH"].split(os.pathsep) == [str(root), "/somewhere"]
    gpu = TrainingJob(tmp_path / "d", tmp_path / "r", TrainingSettings(device="cuda"), baseEnv={})
    assert "CUDA_VISIBLE_DEVICES" not in gpu.env and gpu.logPath == tmp_path / "r" / "train.log"


def test_engine_found_in_clone_and_installed_layouts(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name: None)
    clone = tmp_path / "clone"
    (clone / "src" / "actionpp").mkdir(parents=True)
    (clone / "src" / "actionpp" / "__init__.py").write_text("")
    (clone / "ACTIONpp").mkdir()
    assert engine.findEngineRoot(clone / "ACTIONpp") == clone / "src"
    installed = tmp_path / "qt-scripted-modules"
    (installed / "actionpp").mkdir(parents=True)
    (installed / "actionpp" / "__init__.py").write_text("")
    assert engine.findEngineRoot(installed) == installed
    assert engine.findEngineRoot(tmp_path / "nowhere") is None


def test_a_run_folder_from_before_a_restart_can_be_adopted(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "config.json").write_text(json.dumps({"data": str(tmp_path / "dataset"), "iterations": 10}))
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"event": "start", "total": 10, "start_iteration": 0, "method": "actionpp", "device": "cpu"},
        {"event": "iter", "iteration": 4, "total": 10, "loss": 0.3}]) + "\n")
    job = TrainingJob.fromRunFolder(run, python="/opt/PythonSlicer", baseEnv={})
    assert job.state == CANCELLED and job.resumable and job.progress.iteration == 4 and job.curves["loss"] == [(4, 0.3)]
    assert job.command[:6] == ["/opt/PythonSlicer", "-m", "actionpp", "train", str(tmp_path / "dataset"), "--out"]
    with pytest.raises(jobs.JobError, match="expected the run's configuration"):
        TrainingJob.fromRunFolder(tmp_path / "nothing")


# ---- process control (no engine needed) -------------------------------------------------------------------------
SPAWNER = ("import subprocess, sys, time\n"
           "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
           "print('child', child.pid, flush=True)\n"
           "time.sleep(60)\n")


def _childPid(log, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith("child "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError("the child process never started")


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancel_kills_the_whole_process_tree_and_one_job_per_scene(tmp_path):
    slots, scene = JobSlots(), type("Scene", (), {})()
    job = Job([sys.executable, "-c", SPAWNER], tmp_path / "job.log")
    slots.claim(scene, job)
    job.start()
    child = _childPid(tmp_path / "job.log")
    other = Job([sys.executable, "-c", "pass"], tmp_path / "other.log")
    with pytest.raises(JobBusyError, match="already running"):
        slots.claim(scene, other)
    job.cancel()
    assert job.state == CANCELLED and _gone(job.pid) and _gone(child)
    assert job.logTail().splitlines()[-1] == "# cancelled"
    slots.claim(scene, other)  # the slot is free again
    assert slots.current(scene, "job") is other


def test_wait_and_exit_status(tmp_path):
    ok = Job([sys.executable, "-c", "print('hello')"], tmp_path / "ok.log").start()
    assert ok.wait(timeout=30) == FINISHED and ok.returncode == 0 and "hello" in ok.newLogText()
    bad = Job([sys.executable, "-c", "import sys; print('actionpp: error: data: expected X, found Y', file=sys.stderr);"
                                     " sys.exit(1)"], tmp_path / "bad.log").start()
    assert bad.wait(timeout=30) == FAILED and bad.errorMessage() == "actionpp: error: data: expected X, found Y"
    slow = Job([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "slow.log").start()
    assert slow.wait(timeout=0.3) == RUNNING
    slow.cancel()
    with pytest.raises(jobs.JobError, match="could not start"):
        Job([str(tmp_path / "no-such-python")], tmp_path / "x.log").start()


# ---- a real training subprocess ----------------------------------------------------------------------------------
def _tiny(iterations, checkpointEvery=2):
    return TrainingSettings(method="supervised", iterations=iterations, device="cpu", checkpointEvery=checkpointEvery,
                            extraArgs=TINY_TRAINING)


@pytest.mark.slow
def test_real_training_cancel_then_resume_to_the_end(phantoms, tmp_path):
    requireEngine()
    total = 200
    job = TrainingJob(phantoms, tmp_path / "run", _tiny(total), python=sys.executable, baseEnv=ENGINE_ENV).start()
    deadline = time.monotonic() + 120
    while job.poll() == RUNNING and not (job.progress.iteration >= 4 and job.checkpointPath.is_file()):
        assert time.monotonic() < deadline, job.logTail()
        time.sleep(0.02)
    assert job.state == RUNNING, f"the run ended before it could be cancelled:\n{job.logTail()}"
    pid = job.pid
    job.cancel()
    assert job.state == CANCELLED and _gone(pid)
    stoppedAt = job.progress.iteration
    assert 4 <= stoppedAt < total and job.resumable and not job.modelPath.exists()

    job.resume()
    assert job.command[-1] == "--resume" and job.state == RUNNING
    assert job.wait(timeout=180, pollInterval=0.1) == FINISHED, job.logTail()
    assert job.progress.done and job.progress.iteration == total and job.modelPath.is_file()
    iterations = [i for i, _ in job.curves["loss"]]
    assert iterations == sorted(set(iterations)) and iterations[-1] == total and iterations[0] == 1
    starts = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
              if '"start"' in line]
    assert len(starts) == 2 and 0 < starts[1]["start_iteration"] <= stoppedAt


@pytest.mark.slow
def test_real_training_failure_exposes_the_log_tail(tmp_path):
    requireEngine()
    (tmp_path / "not a dataset").mkdir()
    job = TrainingJob(tmp_path / "not a dataset", tmp_path / "run", _tiny(6), python=sys.executable,
                      baseEnv=ENGINE_ENV).start()
    assert job.wait(timeout=120) == FAILED
    assert job.errorMessage().startswith("actionpp: error:")
    tail = job.logTail()
    assert job.errorMessage() in tail and len(tail.splitlines()) <= jobs.LOG_TAIL_LINES
    assert not job.resumable
    with pytest.raises(jobs.JobError, match="expected a checkpoint to resume from"):
        job.resume()


@pytest.mark.slow
def test_progress_counts_the_whole_run_across_the_pretraining_stage(phantoms, tmp_path):
    requireEngine()
    settings = TrainingSettings(method="actionpp", iterations=4, device="cpu",
                                extraArgs=[*TINY_TRAINING, "--pretrain-iterations", "2", "--pretrain-window", "16"])
    job = TrainingJob(phantoms, tmp_path / "run", settings, python=sys.executable, baseEnv=ENGINE_ENV).start()
    assert job.wait(timeout=180, pollInterval=0.1) == FINISHED, job.logTail()
    # replay the engine's own events one by one, as a GUI timer could have seen them
    progress, curves, seen = Progress(), Curves(), []
    for event in EventReader(tmp_path / "run" / "events.jsonl").read():
        applyEvent(progress, curves, event)
        seen.append((progress.phase, progress.fraction, progress.summary(), progress.etaSeconds))
        if event["event"] == "iter" and event.get("phase") == "pretrain":
            # the whole run's ETA: the stage's own plus the 4 iterations at the stage's pace
            assert progress.etaSeconds == pytest.approx(event["eta_s"] + 4 * event["sec_per_iter"])
    fractions = [f for _, f, _, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # never restarts at the second stage
    assert [p for p, _, _, _ in seen].index("train") > 0 and seen[0][0] == "pretrain"
    assert any(s.startswith("Pre-training 1/2, then 4 iterations") for _, _, s, _ in seen)
    assert (progress.pretrainTotal, progress.trainTotal, progress.stepsDone) == (2, 4, 6)
    assert [i for i, _ in curves["pretrain/loss"]] == [1, 2] and [i for i, _ in curves["loss"]] == [1, 2, 3, 4]
    assert job.progress.fraction == 1.0 and job.progress.pretrainTotal == 2  # the job's own polling agrees
