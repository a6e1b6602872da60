"""Engine processes at the operating-system level: start them detached from the caller, stop a whole process
tree, and read what they wrote to their log file.

Nothing here imports VTK, Qt or Slicer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque

LOG_TAIL_LINES = 30


def popenKeywords() -> dict:
    """Keywords for ``subprocess.Popen`` that start the process in its own session (POSIX) or process group
    (Windows), so that :func:`killProcessTree` can stop it and everything it starts."""
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def killProcessTree(pid: int, graceSeconds: float = 3.0) -> None:
    """Stop ``pid`` and every process it started: terminate, wait up to ``graceSeconds``, then kill.

    Uses psutil when available (children first, then the parent, as the Slicer launchers nest processes); otherwise
    the process group (POSIX, the job runs in its own session) or ``taskkill /T`` (Windows).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        try:
            procs = parent.children(recursive=True) + [parent]
        except psutil.NoSuchProcess:
            procs = [parent]
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=graceSeconds)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=graceSeconds)
        return
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True, check=False)
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + graceSeconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def readLogTail(path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(deque(text.splitlines(), maxlen=lines))


def engineErrorLine(logText: str) -> str:
    """The engine's one-line ``actionpp: error: ...`` message in a log, or the last non-empty line."""
    lines = [line.strip() for line in logText.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("actionpp: error:") or line.startswith("actionpp:"):
            return line
    for line in reversed(lines):
        if not line.startswith("#"):
            return line
    return ""
