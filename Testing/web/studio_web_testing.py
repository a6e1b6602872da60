"""Helpers of the Studio tests (a module with a unique name: ``from conftest import`` could pick another folder's
conftest when all of Testing runs together): the ``actionpp studio`` server process and the browser settings.

These tests run in the web virtualenv (``make test-web``: trame-slicer pins its own slicer-core and VTK, so it cannot
share the main one). Where trame-slicer, Playwright or ``/usr/bin/chromium`` is missing they are skipped, with the
reason printed (``pytest -rs``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("ACTIONPP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TINY_ENGINE = "--patch 32 32 --batch-labeled 2 --batch-unlabeled 1 --channels 8 16 --checkpoint-every 5"
"""Engine flags that make a CPU training step take milliseconds."""
WEB_REASON = "trame-slicer is not installed: Studio tests run in the web virtualenv (make test-web)"


def requireWeb():
    pytest.importorskip("trame_slicer", reason=WEB_REASON)


def browserAvailable() -> bool:
    import importlib.util

    return CHROMIUM.is_file() and importlib.util.find_spec("playwright") is not None


def requireBrowser():
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


class StudioServer:
    """``python -m actionpp studio ...`` in a subprocess; ``url`` is the address it printed."""

    def __init__(self, work: Path, *args: str, timeout: float = 180.0):
        self.log = work.parent / f"{work.name}-studio.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self._out = open(self.log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actionpp", "studio", "--work", str(work), "--phantom-cases", "4",
             "--phantom-size", "4", "32", "32", *args],
            stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.url = self._waitForUrl(timeout)

    def _waitForUrl(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"ACTIONpp Studio: (http://\S+)", self.log.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        raise AssertionError(f"actionpp studio printed no URL (exit {self.process.returncode}):\n{tail}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


def dragAcrossAxial(page) -> None:
    """A left-button drag across the middle of the page's slice views (what a paint or erase stroke needs)."""
    box = page.get_by_test_id("views").bounding_box()
    x0, y = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y)
    page.mouse.down()
    for i in range(1, 16):
        page.mouse.move(x0 + i * box["width"] * 0.02, y, steps=2)
    page.mouse.up()
