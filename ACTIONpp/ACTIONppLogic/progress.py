"""Training progress from a run folder's ``events.jsonl``: incremental reading, the progress summary and curves.

Nothing here imports VTK, Qt or Slicer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class EventReader:
    """Reads the complete new lines of a JSON-lines file at each :meth:`read`.

    A last line without its newline is kept for the next call (the writer may be mid-line). A line that is not JSON is
    skipped and counted in ``badLines``. If the file shrinks or is replaced, reading restarts from the beginning.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._inode = None
        self.badLines = 0

    def read(self) -> list[dict]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        inode = (stat.st_dev, stat.st_ino)
        if stat.st_size < self._offset or (self._inode is not None and inode != self._inode):
            self._offset, self._partial = 0, b""
        self._inode = inode
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when data ended with a newline
        events = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                self.badLines += 1
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
            else:
                self.badLines += 1
        return events


@dataclass
class Progress:
    """The latest state of a training run, as the GUI shows it.

    A run of ``action``/``actionpp`` has two stages: contrastive pre-training (``phase == "pretrain"``, P steps),
    then fine-tuning (``phase == "train"``, T iterations). ``iteration``/``total`` count within the current stage;
    ``stepsDone``/``stepsTotal`` and ``fraction`` count the whole run (P + T), so a progress bar never restarts.
    """

    iteration: int = 0
    total: int = 0
    phase: str = "train"
    pretrainTotal: int = 0
    """P: the pre-training steps of this run (0: no such stage)."""
    trainTotal: int = 0
    """T: the fine-tuning iterations (known from the first event of either stage)."""
    pretrainSecondsPerIteration: float | None = None
    etaSeconds: float | None = None
    secondsPerIteration: float | None = None
    loss: float | None = None
    losses: dict = field(default_factory=dict)
    lr: float | None = None
    tau: dict = field(default_factory=dict)
    meanDice: float | None = None
    dice: dict = field(default_factory=dict)
    method: str = ""
    device: str = ""
    labels: dict = field(default_factory=dict)
    done: bool = False
    model: str = ""
    errorMessage: str = ""

    @property
    def stepsTotal(self) -> int:
        return self.pretrainTotal + (self.trainTotal or self.total)

    @property
    def stepsDone(self) -> int:
        return self.iteration if self.phase == "pretrain" else self.pretrainTotal + self.iteration

    @property
    def fraction(self) -> float:
        return min(1.0, self.stepsDone / self.stepsTotal) if self.stepsTotal else 0.0

    def summary(self) -> str:
        """One line: ``Iteration 120/2000 · ETA 3 min 20 s · loss 0.412 · val Dice 0.83``, or during pre-training
        ``Pre-training 30/500, then 2000 iterations · ETA ...`` (the ETA of the whole run)."""
        if self.phase == "pretrain" and self.total:
            head = f"Pre-training {self.iteration}/{self.total}, then {self.trainTotal} iterations"
        else:
            head = f"Iteration {self.iteration}/{self.total}" if self.total else "Starting..."
        parts = [head]
        if self.etaSeconds is not None and not self.done:
            parts.append(f"ETA {formatDuration(self.etaSeconds)}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.meanDice is not None:
            parts.append(f"val Dice {self.meanDice:.3f}")
        if self.device:
            parts.append(self.device)
        return " · ".join(parts)


def formatDuration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Curves:
    """Training curves: series name -> list of (iteration, value), kept sorted and free of repeats.

    Series: ``loss``, ``loss/<term>`` for every term in ``losses``, ``lr``, ``val_dice`` (mean) and
    ``val_dice/<class>``; the pre-training stage's ``loss``, ``loss/<term>`` and ``lr`` under ``pretrain/`` (its own
    step numbers). When a resumed stage starts again at iteration i0, that stage's points at or after i0 are dropped
    first.
    """

    def __init__(self):
        self.series: dict[str, list[tuple[int, float]]] = {}

    def add(self, name: str, iteration: int, value) -> None:
        if value is None:
            return
        try:
            value = float(value)
        except (TypeError, ValueError):
            return
        points = self.series.setdefault(name, [])
        while points and points[-1][0] >= iteration:
            points.pop()
        points.append((int(iteration), value))

    def truncate(self, iteration: int, pretrain: bool = False) -> None:
        """Drop the points at or after ``iteration`` of the fine-tuning series (``pretrain``: of the pre-training
        series)."""
        for name, points in self.series.items():
            if name.startswith("pretrain/") == pretrain:
                self.series[name] = [p for p in points if p[0] < iteration]

    def __getitem__(self, name: str) -> list[tuple[int, float]]:
        return self.series.get(name, [])

    def names(self) -> list[str]:
        return list(self.series)


def applyEvent(progress: Progress, curves: Curves, event: dict) -> None:
    """Fold one events.jsonl record into ``progress`` and ``curves`` (unknown events and keys are ignored)."""
    kind = event.get("event")
    pre = event.get("phase") == "pretrain"
    if kind == "start":
        progress.phase = "pretrain" if pre else "train"
        progress.total = int(event.get("total") or progress.total)
        progress.iteration = int(event.get("start_iteration") or 0)
        if pre:
            progress.pretrainTotal = progress.total
            progress.trainTotal = int(event.get("finetune_total") or progress.trainTotal)
        else:
            progress.trainTotal = progress.total
            progress.pretrainTotal = int(event.get("pretrain_total", progress.pretrainTotal) or 0)
        progress.method = event.get("method", progress.method)
        progress.device = event.get("device", progress.device)
        progress.labels = event.get("labels") or progress.labels
        progress.done = False
        progress.errorMessage = ""
        curves.truncate(progress.iteration + 1, pretrain=pre)
    elif kind == "iter":
        i = int(event.get("iteration", progress.iteration))
        progress.iteration = i
        progress.total = int(event.get("total") or progress.total)
        progress.loss = event.get("loss")
        progress.losses = event.get("losses") or {}
        progress.lr = event.get("lr")
        progress.tau = event.get("tau") or {}
        progress.secondsPerIteration = event.get("sec_per_iter")
        progress.etaSeconds = event.get("eta_s")
        prefix = "pretrain/" if pre else ""
        if pre:  # the whole run's ETA: the fine-tuning iterations counted at the pre-training pace
            progress.pretrainSecondsPerIteration = progress.secondsPerIteration
            if progress.etaSeconds is not None and progress.secondsPerIteration is not None:
                progress.etaSeconds += progress.trainTotal * progress.secondsPerIteration
        curves.add(prefix + "loss", i, progress.loss)
        for term, value in progress.losses.items():
            curves.add(f"{prefix}loss/{term}", i, value)
        curves.add(prefix + "lr", i, progress.lr)
    elif kind == "val":
        i = int(event.get("iteration", progress.iteration))
        progress.meanDice = event.get("mean_dice")
        progress.dice = event.get("dice") or {}
        curves.add("val_dice", i, progress.meanDice)
        for name, value in progress.dice.items():
            curves.add(f"val_dice/{name}", i, value)
    elif kind == "done":
        progress.iteration = int(event.get("iteration", progress.iteration))
        progress.done = True
        progress.model = event.get("model") or ""
        if event.get("val_dice") is not None:
            progress.meanDice = event.get("val_dice")
        progress.etaSeconds = 0.0
    elif kind == "error":
        progress.errorMessage = str(event.get("message", ""))


# ---- process control -------------------------------------------------------------------------------------------
