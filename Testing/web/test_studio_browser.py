"""The Studio page in Debian's Chromium: the views stream, a tiny model trains from the button, a case is segmented,
the result appears (DOM state and pixels) and downloads as ``.seg.nrrd``; a non-loopback bind refuses a request
without its token."""

from __future__ import annotations

import io
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from studio_web_testing import REPO, WEB_REASON, StudioServer, browserAvailable, dragAcrossAxial, requireWeb

pytest.importorskip("trame_slicer", reason=WEB_REASON)

VIEWS_READY = """() => [...document.querySelectorAll('[data-testid=views] img')]
                     .filter(i => i.naturalWidth > 16 && i.complete).length >= 4"""
SCREENSHOT = REPO / "docs" / "images" / "studio.png"


def _visiblyDrawn(png: bytes) -> tuple[int, float]:
    """(distinct colours, standard deviation of grey levels) of a screenshot."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    return colours, float(pixels.mean(axis=2).std())


def _colouredPixels(png: bytes) -> int:
    """Pixels where red and blue differ clearly: segment colours over the grey image (the 3D view left out)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    axial = pixels[:, : pixels.shape[1] // 2]  # "Axial Primary": the axial view fills the left half
    return int((np.abs(axial[..., 0] - axial[..., 2]) > 40).sum())


def _waitForOverlay(page, timeout: float) -> bytes:
    """A screenshot of the views once the result is drawn over the axial slice (the stream lags the scene)."""
    deadline = time.monotonic() + timeout
    while True:
        shot = page.get_by_test_id("views").screenshot()
        if _colouredPixels(shot) > 500:
            return shot
        assert time.monotonic() < deadline, "the result never appeared over the axial slice"
        page.wait_for_timeout(1000)


def test_train_then_segment_from_the_page(studio, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.goto(studio.url)
    cases = page.get_by_test_id("case-list")
    cases.wait_for(timeout=60_000)
    page.wait_for_function(VIEWS_READY, timeout=90_000)
    assert "cardiac_000 segmentation" in cases.inner_text() and "unlabeled" in cases.inner_text()

    iterations = os.environ.get("ACTIONPP_SCREENSHOT_ITERATIONS", "6")  # more for the docs picture
    page.get_by_label("Iterations").fill(iterations)
    page.get_by_test_id("train-button").click()
    page.wait_for_function("() => (document.querySelector('[data-testid=progress-text]')?.innerText ?? '').includes('6/6')"
                           .replace("6/6", f"{iterations}/{iterations}"), timeout=180_000 + 2_000 * int(iterations))
    page.wait_for_function("() => !document.querySelector('[data-testid=train-button]').disabled", timeout=30_000)
    assert "Training finished" in page.get_by_test_id("message").inner_text(), studio.output()[-2000:]
    assert page.get_by_test_id("progress").get_attribute("aria-valuenow") == "100"
    assert "actionpp" in page.get_by_test_id("model-select").inner_text()
    assert page.locator("[data-testid=curves] svg polyline").count() >= 1  # the live loss plot

    page.locator("[data-case=cardiac_003]").click()
    page.get_by_test_id("segment-button").click()
    page.get_by_test_id("result-ready").wait_for(timeout=120_000)
    assert "cardiac_003 ACTIONpp" in page.get_by_test_id("result-ready").inner_text()
    shot = _waitForOverlay(page, timeout=60)
    colours, spread = _visiblyDrawn(shot)
    assert colours > 50 and spread > 10, f"the view area looks blank: {colours} colours, grey-level std {spread:.1f}"
    whole = tmp_path / "studio.png"
    page.screenshot(path=str(whole))
    if os.environ.get("ACTIONPP_UPDATE_SCREENSHOT"):
        shutil.copyfile(whole, SCREENSHOT)

    with page.expect_download(timeout=60_000) as download:
        page.get_by_test_id("download-button").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.endswith(".seg.nrrd") and saved.read_bytes()[:4] == b"NRRD"
    runs = list((tmp_path / "work" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.pt").is_file()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_network_bind_refuses_requests_without_the_token(tmp_path, request):
    requireWeb()
    token = "test-token-0123456789abcdef"
    server = StudioServer(tmp_path / "work", "--host", "0.0.0.0", "--token", token)
    try:
        assert f"?token={token}" in server.url
        assert "reachable from the network" in server.output()
        port = server.url.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}"
        assert _status(f"{base}/index.html") == 403
        assert _status(f"{base}/") == 403
        assert _status(f"{base}/index.html?token=wrong-token-0123456789") == 403
        assert _status(f"{base}/index.html?token={token}") == 200
        if browserAvailable():  # the page, its scripts and its websocket work with the token (cookie after load)
            chromium = request.getfixturevalue("browser")
            page = chromium.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"{base}/index.html?token={token}")
            page.get_by_test_id("case-list").wait_for(timeout=60_000)
            page.wait_for_function(VIEWS_READY, timeout=90_000)
    finally:
        server.stop()


def _voxels(page) -> int:
    return int(page.get_by_test_id("edit-info").inner_text().split(":")[1].split()[0])


def test_paint_and_erase_in_the_axial_view(studio, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(studio.url)
    page.get_by_test_id("edit-info").wait_for(timeout=60_000)  # cardiac_000 (labeled) is selected at start
    page.wait_for_function(VIEWS_READY, timeout=90_000)
    before = _voxels(page)

    page.get_by_test_id("paint-button").click()
    dragAcrossAxial(page)
    page.wait_for_function(f"() => !(document.querySelector('[data-testid=edit-info]')?.innerText ?? ': {before} ').includes(': {before} ')",
                           timeout=30_000)
    painted = _voxels(page)
    assert painted > before

    page.get_by_test_id("erase-button").click()
    dragAcrossAxial(page)
    page.wait_for_function(f"() => !(document.querySelector('[data-testid=edit-info]')?.innerText ?? ': {painted} ').includes(': {painted} ')",
                           timeout=30_000)
    assert _voxels(page) < painted


def _text(page, testid: str) -> str:
    return page.get_by_test_id(testid).inner_text()


def test_cancel_resume_and_a_stopping_server_stops_its_training(studio, browser):
    psutil = pytest.importorskip("psutil", reason="psutil is not installed")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(studio.url)
    page.get_by_test_id("case-list").wait_for(timeout=60_000)
    page.get_by_label("Iterations").fill("2000")
    page.get_by_test_id("train-button").click()
    page.wait_for_function("() => /Iteration ([6-9]|\\d\\d+)\\/2000 · ETA/.test("
                           "(document.querySelector('[data-testid=progress-text]')?.innerText ?? ''))", timeout=120_000)
    page.get_by_test_id("cancel-button").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=resume-button]').disabled", timeout=60_000)
    assert "cancelled" in _text(page, "message")
    stopped = int(_text(page, "progress-text").split()[1].split("/")[0])

    page.get_by_test_id("resume-button").click()
    page.wait_for_function("() => document.querySelector('[data-testid=train-button]').disabled", timeout=10_000)
    children = psutil.Process(studio.process.pid).children(recursive=True)
    assert any("train" in " ".join(c.cmdline()) for c in children)
    page.wait_for_function(f"() => parseInt((document.querySelector('[data-testid=progress-text]')?.innerText ?? '')"
                           f".split(' ')[1]) > {stopped}", timeout=120_000)
    studio.stop()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after the server stopped: {[c.cmdline() for c in alive]}"
