"""One writer per run folder: an operating-system file lock on ``RUN/.actionpp.lock``.

``actionpp train`` (new and ``--resume``) holds the lock for the whole run. The lock is the kernel's (``fcntl.flock``
on POSIX, ``msvcrt.locking`` on Windows), so it disappears with the process that holds it, however that process
ends: the file left behind is not a marker, only a place to lock and to read the holder's process id from. A second
writer is refused with :class:`RunLockedError` naming that process id.

This module imports neither torch nor anything of Slicer, so the Slicer logic can check a folder before launching
(:func:`holder`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

LOCK_NAME = ".actionpp.lock"
"""Name of the lock file inside a run folder."""

_WIN_OFFSET = 1 << 20
"""Windows locks are mandatory: lock a byte far past the PID text so that others can still read the PID."""


class RunLockedError(ValueError):
    """The run folder is in use by another process; the message names the folder and the process id."""


class RunFolderError(ValueError):
    """The run folder cannot be created or its lock file cannot be opened."""


def _try_lock(fh) -> bool:
    """Take the exclusive lock on the open file ``fh`` without waiting; True if taken."""
    if sys.platform == "win32":
        import msvcrt

        try:
            fh.seek(_WIN_OFFSET)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            fh.seek(0)
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:  # e.g. a file system without locks: EACCES/EAGAIN mean "held", others are real errors
        import errno

        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise


def _unlock(fh) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(_WIN_OFFSET)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        fh.seek(0)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text.split()[0] if text else "unknown"


class RunLock:
    """The exclusive lock of one run folder; use as a context manager or call :meth:`acquire` / :meth:`release`."""

    def __init__(self, folder: str | os.PathLike, retry_seconds: float = 0.5):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.retry_seconds = retry_seconds
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> "RunLock":
        """Lock the folder (created if missing) and write our PID into the lock file.

        Retries for ``retry_seconds`` (a reader such as the Slicer logic may hold the lock for an instant while
        checking it), then raises :class:`RunLockedError` naming the process that holds it.
        """
        if self._fh is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+b")  # never truncates: the holder's PID stays readable; binary: plain offsets
        except OSError as e:
            raise RunFolderError(f"{self.folder}: expected a writable run folder, found an error "
                                 f"({e.strerror or type(e).__name__})") from None
        deadline = time.monotonic() + self.retry_seconds
        while not _try_lock(fh):
            if time.monotonic() >= deadline:
                fh.close()
                raise RunLockedError(f"{self.folder}: run folder is in use by process {_read_pid(self.path)}; "
                                     "expected no other 'actionpp train' on it (wait for it or stop it first)")
            time.sleep(0.05)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n".encode("ascii"))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Unlock and close; the file stays (removing it could let two processes lock two different files)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.seek(0)
            fh.truncate()
            _unlock(fh)
        except OSError:
            pass  # closing the file releases the lock anyway
        finally:
            fh.close()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(folder: str | os.PathLike) -> str | None:
    """PID (as text) of the process holding ``folder``'s lock, or None if the folder is free or has no lock file.

    Checks by trying the lock for an instant (never creates the folder or the file).
    """
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    try:
        fh = open(path, "a+b")
    except OSError:
        return None
    try:
        if _try_lock(fh):
            _unlock(fh)
            return None
    finally:
        fh.close()
    return _read_pid(path)
