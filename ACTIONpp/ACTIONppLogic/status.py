"""What one poll of a job, or one training estimate, tells the GUI: plain dataclasses, no MRML, no Qt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import jobs


@dataclass
class TrainingStatus:
    """What one poll of the training job tells the GUI."""

    state: str
    progress: jobs.Progress
    curves: jobs.Curves
    newLog: str
    runDir: Path
    errorMessage: str = ""
    logTail: str = ""
    resumable: bool = False


@dataclass
class Estimate:
    """A training's expected duration, from a few timed steps of each stage on the real data and device:
    ``seconds = secondsPerIteration * iterations + pretrainSecondsPerIteration * pretrainIterations``."""

    secondsPerIteration: float
    iterations: int
    device: str
    pretrainSecondsPerIteration: float = 0.0
    pretrainIterations: int = 0

    @property
    def seconds(self) -> float:
        return self.secondsPerIteration * self.iterations + self.pretrainSecondsPerIteration * self.pretrainIterations

    def describe(self) -> str:
        steps = f"{self.iterations} iterations"
        pace = f"{self.secondsPerIteration:.2f} s per iteration"
        if self.pretrainIterations:
            steps = f"{self.pretrainIterations} pre-training steps and {steps}"
            pace = f"{self.pretrainSecondsPerIteration:.2f} s per pre-training step, {pace}"
        return f"about {jobs.formatDuration(self.seconds)} for {steps} on {self.device} ({pace}, timed on your data)"


@dataclass
class SegmentationStatus:
    state: str
    segmentation: object = None
    errorMessage: str = ""
    logTail: str = ""
    uncertainty: object = None
    """The uncertainty map (scalar volume node, 0..1) when asked for."""
