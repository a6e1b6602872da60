"""Engine subprocesses: training and prediction jobs, their progress, cancel and resume.

A job is one ``python -m actionpp <subcommand> ...`` process, started in its own process group/session with stdout
and stderr appended to a log file, so the GUI never reads a pipe and never blocks. Training progress comes from the
run folder's ``events.jsonl`` (architecture.md, "Run folder"), read incrementally by :meth:`TrainingJob.poll`.
In the GUI a timer calls ``poll()``; a batch script calls :meth:`Job.wait`.

Nothing here imports VTK, Qt or Slicer.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from . import engine
from .processes import LOG_TAIL_LINES, engineErrorLine, killProcessTree, popenKeywords, readLogTail  # noqa: F401
from .progress import Curves, EventReader, Progress, applyEvent, formatDuration  # noqa: F401 - re-exported

IDLE = "idle"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"



class JobError(RuntimeError):
    """A job cannot be started, resumed or waited for in its current state."""


class JobBusyError(JobError):
    """Another job of the same kind is already running for this scene."""


class Job:
    """One engine subprocess with its log file.

    ``state`` goes idle -> running -> finished | failed | cancelled. ``poll()`` must be called (by a GUI timer or
    :meth:`wait`) to notice the end of the process.
    """

    kind = "job"

    def __init__(self, command: list[str], logPath, env: dict[str, str] | None = None, cwd=None):
        self.command = list(command)
        self.logPath = Path(logPath)
        self.env = env
        self.cwd = cwd
        self.state = IDLE
        self.returncode: int | None = None
        self.startTime: float | None = None
        self.endTime: float | None = None
        self._process: subprocess.Popen | None = None
        self._log = None
        self._logOffset = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> "Job":
        if self.running:
            raise JobError(f"{self.kind} is already running (pid {self.pid})")
        self.logPath.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.logPath, "ab")
        commandLine = shlex.join(self.command).replace("\r", "\\r").replace("\n", "\\n")  # one line
        self._log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {commandLine}\n".encode())
        self._log.flush()
        try:
            self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                             stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, **popenKeywords())
        except OSError as exc:
            self._closeLog(f"# could not start: {exc}")
            self.state = FAILED
            raise JobError(f"could not start '{self.command[0]}': {exc}") from exc
        self.state = RUNNING
        self.returncode = None
        self.startTime, self.endTime = time.time(), None
        return self

    def poll(self):
        """Update ``state`` from the process; returns the state."""
        if self.state == RUNNING and self._process is not None:
            rc = self._process.poll()
            if rc is not None:
                self._finish(rc)
        return self.state

    def _finish(self, rc: int) -> None:
        self.returncode = rc
        self.endTime = time.time()
        self.state = FINISHED if rc == 0 else FAILED
        self._closeLog(f"# exit status {rc}")

    def cancel(self) -> None:
        """Kill the process tree; the job ends ``cancelled`` (no-op unless running)."""
        if self.state != RUNNING or self._process is None:
            return
        killProcessTree(self._process.pid)
        try:
            self.returncode = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self.returncode = self._process.wait()
        self.state = CANCELLED
        self.endTime = time.time()
        self._closeLog("# cancelled")

    def wait(self, timeout: float | None = None, pollInterval: float = 0.2, callback=None) -> str:
        """Block until the job ends (or ``timeout`` seconds pass); return the state.

        ``callback(job)`` runs after every poll (batch progress printing).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.poll()
            if callback is not None:
                callback(self)
            if state != RUNNING:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                return state
            time.sleep(pollInterval)

    def _closeLog(self, note: str = "") -> None:
        if self._log is not None:
            if note:
                self._log.write((note + "\n").encode())
            self._log.close()
            self._log = None

    # -- log --------------------------------------------------------------------------------------------------
    def logTail(self, lines: int = LOG_TAIL_LINES) -> str:
        return readLogTail(self.logPath, lines)

    def newLogText(self) -> str:
        """Log text written since the previous call (for the GUI's log box)."""
        try:
            with open(self.logPath, "rb") as f:
                f.seek(self._logOffset)
                data = f.read()
        except OSError:
            return ""
        # Keep an unfinished last line (no newline yet) for the next call.
        end = data.rfind(b"\n") + 1 if self.state == RUNNING else len(data)
        self._logOffset += end
        return data[:end].decode("utf-8", errors="replace")

    def errorMessage(self) -> str:
        """One line that says why the job failed ("" unless failed)."""
        if self.state != FAILED:
            return ""
        line = engineErrorLine(readLogTail(self.logPath, 200))
        return line or f"the process exited with status {self.returncode}"


# ---- training --------------------------------------------------------------------------------------------------
@dataclass
class TrainingSettings:
    """The GUI's training choices, turned into engine flags by :meth:`toArgs` (None: engine default)."""

    method: str = "actionpp"
    dims: int | None = None
    iterations: int | None = None
    device: str = "auto"
    """auto | cpu | cuda | cuda:N; "cpu" also hides every GPU from the process."""
    patch: tuple[int, ...] | None = None
    batchLabeled: int | None = None
    batchUnlabeled: int | None = None
    seed: int | None = None
    checkpointEvery: int | None = None
    initFrom: str | None = None
    """A trained model (run folder or model.pt) to continue from (``--init-from``); None: start from scratch."""
    extraArgs: list[str] = field(default_factory=list)
    """Further engine flags, passed through unchanged (e.g. ``["--channels", "8", "16"]``)."""

    def toArgs(self) -> list[str]:
        args = ["--method", self.method, "--device", self.device]
        for flag, value in (("--dims", self.dims), ("--iterations", self.iterations),
                            ("--batch-labeled", self.batchLabeled), ("--batch-unlabeled", self.batchUnlabeled),
                            ("--seed", self.seed), ("--checkpoint-every", self.checkpointEvery)):
            if value is not None:
                args += [flag, str(value)]
        if self.patch:
            args += ["--patch", *[str(p) for p in self.patch]]
        if self.initFrom:
            args += ["--init-from", str(self.initFrom)]
        return args + [str(a) for a in self.extraArgs]


class TrainingJob(Job):
    """``actionpp train DATA --out RUN [flags]``: progress from ``RUN/events.jsonl``, log in ``RUN/train.log``.

    ``resume()`` relaunches the same command with ``--resume`` after a cancel or a failure; progress and curves
    continue from the checkpoint's iteration.
    """

    kind = "training"

    def __init__(self, dataPath, runDir, settings: TrainingSettings | None = None, python: str | None = None,
                 baseEnv: dict[str, str] | None = None, args: list[str] | None = None):
        self.dataPath = Path(dataPath)
        self.runDir = Path(runDir)
        self.settings = settings or TrainingSettings()
        self.args = list(args) if args is not None else self.settings.toArgs()
        self.python = python or engine.defaultPython()
        env = engine.engineEnvironment(baseEnv, device=self.settings.device if args is None else _deviceIn(self.args))
        command = engine.engineCommand(self.python, "train", str(self.dataPath), "--out", str(self.runDir), *self.args)
        super().__init__(command, self.runDir / "train.log", env=env)
        self.progress = Progress()
        self.curves = Curves()
        self._events = EventReader(self.runDir / "events.jsonl")

    @classmethod
    def fromRunFolder(cls, runDir, python: str | None = None, baseEnv: dict[str, str] | None = None,
                      args: list[str] | None = None) -> "TrainingJob":
        """A job for an existing run (e.g. from before a restart), to resume; the dataset comes from config.json."""
        runDir = Path(runDir)
        try:
            config = json.loads((runDir / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise JobError(f"{runDir / 'config.json'}: expected the run's configuration, found {exc}") from exc
        job = cls(config.get("data", ""), runDir, python=python, baseEnv=baseEnv, args=args or [])
        job.state = CANCELLED if not (runDir / "model.pt").exists() else FINISHED
        job.poll()
        return job

    @property
    def checkpointPath(self) -> Path:
        return self.runDir / "checkpoints" / "last.pt"

    @property
    def resumable(self) -> bool:
        return self.state in (CANCELLED, FAILED) and self.checkpointPath.is_file()

    def start(self) -> "TrainingJob":
        checkRunFolderFree(self.runDir)
        super().start()
        return self

    def resume(self) -> "TrainingJob":
        """Relaunch with ``--resume`` (only after cancel/failure and when ``checkpoints/last.pt`` exists)."""
        if self.running:
            raise JobError("training is still running")
        if not self.checkpointPath.is_file():
            raise JobError(f"{self.checkpointPath}: expected a checkpoint to resume from, found none "
                           "(the run stopped before its first checkpoint; start a new training)")
        if "--resume" not in self.command:
            self.command.append("--resume")
        self.progress.done = False
        self.progress.errorMessage = ""
        return self.start()

    def poll(self):
        for event in self._events.read():
            applyEvent(self.progress, self.curves, event)
        state = super().poll()
        if state != RUNNING:
            for event in self._events.read():  # what the process wrote just before exiting
                applyEvent(self.progress, self.curves, event)
        if state == FINISHED and not self.progress.done and not self.modelPath.is_file():
            # Exit 0 without a "done" event or a model: the engine did not finish the run.
            self.state = FAILED
        return self.state

    def errorMessage(self) -> str:
        if self.state != FAILED:
            return ""
        return self.progress.errorMessage or super().errorMessage()

    @property
    def modelPath(self) -> Path:
        return self.runDir / "model.pt"


def runFolderHolder(runDir) -> str | None:
    """PID (text) of the engine process writing ``runDir``, or None if no process holds its lock.

    Uses the engine's torch-free ``actionpp.runlock`` (the OS lock the engine holds for the whole run); without an
    importable engine it answers None, and the engine itself still refuses a second writer.
    """
    engine.ensureEngineOnPath()
    try:
        from actionpp.runlock import holder
    except ImportError:
        return None
    return holder(runDir)


def checkRunFolderFree(runDir) -> None:
    """Raise :class:`JobBusyError` naming the process if another engine process is writing ``runDir``."""
    pid = runFolderHolder(runDir)
    if pid is not None:
        raise JobBusyError(f"{runDir}: run folder is in use by process {pid} (another training writes there); "
                           "wait for it or stop it first")


def _deviceIn(args: list[str]) -> str:
    if "--device" in args:
        i = args.index("--device")
        if i + 1 < len(args):
            return args[i + 1]
    return "auto"


class PredictionJob(Job):
    """``actionpp predict MODEL INPUT --out OUTPUT [--device D] [extra]``, log in ``<OUTPUT's folder>/predict.log``."""

    kind = "prediction"

    def __init__(self, model, inputPath, outputPath, device: str = "auto", python: str | None = None,
                 baseEnv: dict[str, str] | None = None, extraArgs: list[str] | None = None, logPath=None):
        self.model = Path(model)
        self.inputPath = Path(inputPath)
        self.outputPath = Path(outputPath)
        self.python = python or engine.defaultPython()
        args = [str(self.model), str(self.inputPath), "--out", str(self.outputPath), "--device", device]
        args += list(extraArgs or [])
        logPath = Path(logPath) if logPath else (self.outputPath if self.outputPath.suffix == "" else
                                                 self.outputPath.parent) / "predict.log"
        super().__init__(engine.engineCommand(self.python, "predict", *args), logPath,
                         env=engine.engineEnvironment(baseEnv, device=device))


# ---- one job per scene -----------------------------------------------------------------------------------------
class JobSlots:
    """At most one running job per (scene, kind). Finished jobs stay readable until replaced."""

    def __init__(self):
        self._jobs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def current(self, scene, kind: str = "training"):
        return self._jobs.get(scene, {}).get(kind)

    def claim(self, scene, job: Job) -> None:
        """Register ``job`` for ``scene``; raise :class:`JobBusyError` if a job of its kind is running there."""
        jobs = self._jobs.setdefault(scene, {})
        existing = jobs.get(job.kind)
        if existing is not None and existing is not job:
            existing.poll()
            if existing.running:
                raise JobBusyError(f"a {job.kind} job is already running for this scene "
                                   f"(pid {existing.pid}); cancel it or wait for it to finish")
        jobs[job.kind] = job


SLOTS = JobSlots()
"""Process-wide registry: one training and one prediction job per scene."""
