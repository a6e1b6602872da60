"""The Studio page in Debian's Chromium, across restarts: labels made from the page for an unlabeled case are saved in
the work folder (never over a file the page did not load) and come back as that case's labels; a training stopped by
a server restart is listed as unfinished and resumed from the page."""

from __future__ import annotations

import json
import time

import pytest
from studio_web_testing import TINY_ENGINE, WEB_REASON, StudioServer, dragAcrossAxial

pytest.importorskip("trame_slicer", reason=WEB_REASON)

VIEWS_READY = """() => [...document.querySelectorAll('[data-testid=views] img')]
                     .filter(i => i.naturalWidth > 16 && i.complete).length >= 4"""


def _text(page, testid: str) -> str:
    return page.get_by_test_id(testid).inner_text()


def _waitForText(page, testid: str, text: str, timeout: int = 30_000) -> None:
    page.wait_for_function("([id, text]) => (document.querySelector(`[data-testid=${id}]`)?.innerText ?? '')"
                           ".includes(text)", arg=[testid, text], timeout=timeout)


def _open(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(server.url)
    page.get_by_test_id("case-list").wait_for(timeout=60_000)
    return page


def test_new_labels_for_an_unlabeled_case_are_saved_and_come_back_after_a_restart(browser, tmp_path):
    work = tmp_path / "work"
    server = StudioServer(work)
    try:
        page = _open(browser, server)
        page.wait_for_function(VIEWS_READY, timeout=90_000)
        cases = page.get_by_test_id("case-list")
        assert "cardiac_002 segmentation" not in cases.inner_text()
        page.locator("[data-case=cardiac_002]").click()
        page.get_by_test_id("new-labels-button").click()
        page.get_by_test_id("edit-info").wait_for(timeout=30_000)
        _waitForText(page, "case-list", "cardiac_002 segmentation")  # counts as labeled at once
        assert _text(page, "edit-info").endswith(": 0 voxels")
        page.get_by_test_id("segment-select").click()  # the dataset's classes, taken from a labeled case
        classes = page.locator(".v-overlay .v-list-item").all_inner_texts()
        assert len(classes) >= 2, classes
        page.keyboard.press("Escape")

        page.get_by_test_id("paint-button").click()
        dragAcrossAxial(page)
        page.wait_for_function("() => !(document.querySelector('[data-testid=edit-info]')?.innerText ?? ': 0 ')"
                               ".includes(': 0 ')", timeout=30_000)
        painted = _text(page, "edit-info")
        page.get_by_test_id("save-labels-button").click()
        _waitForText(page, "message", "Saved the labels of cardiac_002")
        saved = work / "labels" / "cardiac_002.seg.nrrd"
        assert saved.read_bytes()[:4] == b"NRRD"
        assert not list((work / "phantoms").rglob("*.seg.nrrd"))  # nothing written into the data folder

        # A labels file the page did not load is never overwritten.
        other = work / "labels" / "cardiac_003.seg.nrrd"
        other.write_bytes(b"someone else's labels")
        page.locator("[data-case=cardiac_003]").click()
        page.get_by_test_id("new-labels-button").click()
        page.get_by_test_id("save-labels-button").click()
        _waitForText(page, "message", "not overwritten")
        assert other.read_bytes() == b"someone else's labels"
        other.unlink()
        page.get_by_test_id("discard-labels-button").click()  # never saved: the case is unlabeled again
        page.get_by_test_id("new-labels-button").wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=case-list]').innerText"
                               ".includes('cardiac_003 segmentation')", timeout=30_000)
        assert page.get_by_test_id("discard-labels-button").count() == 0
    finally:
        server.stop()

    server = StudioServer(work)
    try:
        page = _open(browser, server)
        _waitForText(page, "case-list", "cardiac_002 segmentation")
        assert "cardiac_003 segmentation" not in _text(page, "case-list")
        page.locator("[data-case=cardiac_002]").click()
        _waitForText(page, "labels-file", "saved in labels/cardiac_002.seg.nrrd")
        _waitForText(page, "edit-info", painted.split(":")[1].strip())  # the same voxels as before the restart
    finally:
        server.stop()


def _events(run, kind: str) -> list[dict]:
    """The training's ``kind`` events (the pre-training stage's, which count their own iterations, left out)."""
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("event") == kind and "phase" not in e]


def _checkpointed(work, timeout: float = 120.0):
    """The run folder once its first checkpoint is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((work / "runs").glob("*/checkpoints/last.pt"))
        if found:
            return found[0].parents[1]
        time.sleep(0.5)
    raise AssertionError("no checkpoint was written")


def test_a_run_stopped_by_a_restart_is_resumed_from_the_page(browser, tmp_path):
    work = tmp_path / "work"
    server = StudioServer(work, "--engine-args", TINY_ENGINE)
    try:
        page = _open(browser, server)
        assert page.get_by_test_id("unfinished-select").count() == 0
        page.get_by_label("Iterations").fill("2000")
        page.get_by_test_id("train-button").click()
        run = _checkpointed(work)
    finally:
        server.stop()  # cancels the training: an unfinished run with a checkpoint is left behind
    assert not (run / "model.pt").exists()
    lastBefore = max(e["iteration"] for e in _events(run, "iter"))

    server = StudioServer(work, "--engine-args", TINY_ENGINE)
    try:
        page = _open(browser, server)
        page.get_by_test_id("unfinished-select").wait_for(timeout=30_000)
        assert run.name in _text(page, "unfinished-select")
        page.wait_for_function("() => !document.querySelector('[data-testid=resume-button]').disabled",
                               timeout=30_000)
        page.get_by_test_id("resume-button").click()
        _waitForText(page, "message", f"Resumed {run.name}")
        page.wait_for_function("() => document.querySelector('[data-testid=train-button]').disabled", timeout=10_000)
        page.wait_for_function(f"() => parseInt((document.querySelector('[data-testid=progress-text]')?.innerText"
                               f" ?? '').split(' ')[1]) > {lastBefore}", timeout=120_000)
        starts = _events(run, "start")
        assert len(starts) == 2 and starts[1].get("start_iteration", 0) >= 5  # from the checkpoint, not from 0
        page.get_by_test_id("cancel-button").click()
        page.wait_for_function("() => !document.querySelector('[data-testid=resume-button]').disabled",
                               timeout=60_000)
    finally:
        server.stop()
    assert len(list((work / "runs").iterdir())) == 1  # the same run folder, no new one
