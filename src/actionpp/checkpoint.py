"""Checkpoints: atomic writes and ``weights_only`` loads.

A checkpoint is data, never code: everything in it is a tensor, a number, a string or a container of those, so
``torch.load(..., weights_only=True)`` reads it. Files are written to a temporary name in the same folder and renamed,
so a crash mid-write never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import actionpp


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, unreadable or of the wrong kind."""


class WriteError(ValueError):
    """A checkpoint or model file could not be written (disk full, permissions, file too large); names the file."""


def versions() -> dict[str, str]:
    import monai

    return {"actionpp": actionpp.__version__, "torch": str(torch.__version__), "monai": str(monai.__version__),
            "python": platform.python_version()}


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(f"{path}: could not write ({_reason(e)})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{path}: could not write ({_reason(e)}); the previous file, if any, is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(e: BaseException) -> str:
    """One-line cause of a failed write: the OS's words (``No space left on device``) where there are some."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint or model file with ``weights_only=True``; one-line error if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable ActionPP checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, numpy, python) as weights_only-loadable data."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                                                         int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "python": repr(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    import ast

    v = ast.literal_eval(state["python"])
    random.setstate((v[0], tuple(v[1]), v[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
