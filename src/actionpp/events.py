"""Progress events: one JSON object per line in ``RUN/events.jsonl``, plus a terminal progress bar.

The Slicer module and any other front end follow a run by reading this file; the record kinds are listed in
docs/architecture.md. Lines are flushed as they are written so a reader never waits for a buffer.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tensors and numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventLog:
    """Appends events to ``path`` and drives a tqdm bar on a terminal (``show_bar`` None: only when stderr is a tty)."""

    def __init__(self, path: str | Path, show_bar: bool | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._bar: tqdm | None = None
        self._show_bar = sys.stderr.isatty() if show_bar is None else show_bar

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as e:  # name the file: a bare "No space left on device" does not say where
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None
        self._update_bar(record)
        return record

    def _update_bar(self, record: dict[str, Any]) -> None:
        if not self._show_bar:
            return
        if record["event"] == "start":
            self._bar = tqdm(total=record.get("total"), initial=record.get("start_iteration", 0), unit="it",
                             desc=record.get("method", "train"), dynamic_ncols=True)
        elif record["event"] == "iter" and self._bar is not None:
            self._bar.n = record["iteration"]
            self._bar.set_postfix(loss=f"{record.get('loss', float('nan')):.3f}", refresh=False)
            self._bar.refresh()
        elif record["event"] == "val" and self._bar is not None:
            self._bar.write(f"iteration {record['iteration']}: validation mean Dice {record.get('mean_dice')}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._fh.close()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of an events file (a partial last line, still being written, is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
