"""Trained models found under a runs folder (each run folder with a ``model.json`` and ``model.pt``)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelInfo:
    """What the segment panel shows for one trained model."""

    name: str
    path: Path
    """The run folder (what ``actionpp predict`` takes)."""
    labels: dict[str, int] = field(default_factory=dict)
    method: str = ""
    dims: int | None = None
    created: str = ""
    valDice: float | None = None
    iterations: int | None = None

    @property
    def classNames(self) -> list[str]:
        return [name for name, value in sorted(self.labels.items(), key=lambda kv: kv[1]) if value != 0]

    def describe(self) -> str:
        """``actionpp · 2D · 2000 it · val Dice 0.871 · 2026-11-26 10:02 · LV, Myo, RV``."""
        parts = [self.method or "?"]
        if self.dims:
            parts.append(f"{self.dims}D")
        if self.iterations is not None:
            parts.append(f"{self.iterations} it")
        parts.append(f"val Dice {self.valDice:.3f}" if self.valDice is not None else "no validation")
        if self.created:
            parts.append(self.created)
        parts.append(", ".join(self.classNames) or "no classes")
        return " · ".join(parts)


@dataclass
class SkippedRun:
    path: Path
    reason: str
    resumable: bool = False


def _created(meta: dict, runDir: Path) -> str:
    created = meta.get("created")
    if isinstance(created, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    if isinstance(created, str) and created:
        try:  # ISO 8601, usually in UTC: show it in local time
            stamp = datetime.fromisoformat(created)
            return (stamp.astimezone() if stamp.tzinfo else stamp).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return created.replace("T", " ")[:16]
    return time.strftime("%Y-%m-%d %H:%M", time.localtime((runDir / "model.json").stat().st_mtime))


def runFolderOf(path) -> Path:
    """The run folder for a path the user picked: the folder itself, or the folder of its ``model.pt`` /
    ``model.json``."""
    path = Path(path)
    if path.is_file() and path.name in ("model.pt", "model.json"):
        return path.parent
    return path


def readModel(runDir) -> ModelInfo:
    """Read ``RUN/model.json``; raise ValueError with a one-line reason when the run has no usable model.

    ``runDir`` may also be the run's ``model.pt`` or ``model.json`` file.
    """
    runDir = runFolderOf(runDir)
    if runDir.is_file():
        raise ValueError(f"expected a run folder or its model.pt, found the file '{runDir.name}'")
    if not runDir.is_dir():
        raise ValueError("no such folder")
    metaPath = runDir / "model.json"
    if not metaPath.is_file():
        if (runDir / "checkpoints" / "last.pt").is_file():
            raise ValueError("training not finished (no model.json); it can be resumed")
        if (runDir / "config.json").is_file():
            raise ValueError("training not finished and no checkpoint yet (no model.json)")
        raise ValueError("not a training run (no model.json)")
    try:
        meta = json.loads(metaPath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"model.json unreadable: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError("model.json: expected a JSON object")
    if not (runDir / "model.pt").is_file():
        raise ValueError("model.json present but model.pt missing")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError("model.json: expected 'labels' (class name -> value), found none")
    valDice = meta.get("val_dice")
    iterations = meta.get("iterations")
    return ModelInfo(
        name=str(meta.get("name") or runDir.name),
        path=runDir,
        labels={str(k): int(v) for k, v in labels.items()},
        method=str(meta.get("method") or ""),
        dims=int(meta["dims"]) if meta.get("dims") is not None else None,
        created=_created(meta, runDir),
        valDice=float(valDice) if isinstance(valDice, (int, float)) else None,
        iterations=int(iterations) if isinstance(iterations, (int, float)) else None,
    )


def listModels(runsFolder) -> tuple[list[ModelInfo], list[SkippedRun]]:
    """Every run folder directly under ``runsFolder`` (newest first) and the ones skipped, each with its reason."""
    runsFolder = Path(runsFolder)
    models, skipped = [], []
    if not runsFolder.is_dir():
        return models, skipped
    for runDir in sorted((p for p in runsFolder.iterdir() if p.is_dir()), key=lambda p: p.name):
        try:
            models.append(readModel(runDir))
        except ValueError as exc:
            skipped.append(SkippedRun(runDir, str(exc), resumable=(runDir / "checkpoints" / "last.pt").is_file()))
    models.sort(key=lambda m: (m.created, m.name), reverse=True)
    return models, skipped
