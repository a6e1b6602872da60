"""Studio's policy and folder code without a server: host/token rules, the 403 middleware, path confinement, data
folder discovery, and one-line errors of ``actionpp studio`` for bad arguments."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("actionpp_studio", reason="actionpp_studio is not importable (pip install -e '.[web]')")
from actionpp_studio import security, workspace  # noqa: E402


def test_token_policy():
    assert security.resolveToken("127.0.0.1", None) is None and security.resolveToken("localhost", None) is None
    generated = security.resolveToken("0.0.0.0", None)
    assert generated and len(generated) >= 24 and generated != security.resolveToken("0.0.0.0", None)
    assert security.resolveToken("127.0.0.1", "a-long-enough-token") == "a-long-enough-token"
    with pytest.raises(security.SecurityError, match=r"^--token: expected at least 16"):
        security.resolveToken("0.0.0.0", "short")
    assert security.pageUrl("0.0.0.0", 8080, "t") == "http://0.0.0.0:8080/index.html?token=t"
    assert security.pageUrl("::1", 1, None) == "http://[::1]:1/index.html"


def test_middleware_answers_403_without_the_token_and_sets_the_cookie_with_it():
    web = pytest.importorskip("aiohttp.web", reason="aiohttp is not installed")
    from aiohttp.test_utils import make_mocked_request

    middleware = security.tokenMiddleware("secret-token-0123456789")

    async def handler(request):
        return web.Response(text="page")

    async def call(path, headers=None):
        return await middleware(make_mocked_request("GET", path, headers=headers or {}), handler)

    assert asyncio.run(call("/index.html")).status == 403
    assert asyncio.run(call("/index.html?token=wrong")).status == 403
    allowed = asyncio.run(call("/index.html?token=secret-token-0123456789"))
    assert allowed.status == 200 and allowed.cookies[security.COOKIE].value == "secret-token-0123456789"
    cookie = {"Cookie": f"{security.COOKIE}=secret-token-0123456789"}
    assert asyncio.run(call("/ws", cookie)).status == 200


def test_confine_refuses_paths_outside_the_roots(tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir(), work.mkdir()
    assert workspace.confine(data / "a.nrrd", (data, work)) == (data / "a.nrrd").resolve()
    for outside in (tmp_path / "other.nrrd", data / ".." / "other.nrrd", "/etc/passwd"):
        with pytest.raises(workspace.WorkspaceError, match="expected a path inside"):
            workspace.confine(outside, (data, work))
    (work / "link").symlink_to(tmp_path)
    with pytest.raises(workspace.WorkspaceError):
        workspace.confine(work / "link" / "x", (data, work))


def test_data_folders(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("b.nrrd", "a.nii.gz", "a.seg.nrrd", "notes.txt"):
        (plain / name).write_bytes(b"")
    assert [(n, i.name, s.name if s else None, k) for n, i, s, k in workspace.findCases(plain)] == [
        ("a", "a.nii.gz", "a.seg.nrrd", "segmentation"), ("b", "b.nrrd", None, "segmentation")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(workspace.WorkspaceError, match=r"^--data .*: expected volumes"):
        workspace.findCases(empty)
    with pytest.raises(workspace.WorkspaceError, match=r"^--data .*: expected an existing folder, found nothing"):
        workspace.prepareFolders(tmp_path / "missing", tmp_path / "work")
    (tmp_path / "file").write_text("x")
    with pytest.raises(workspace.WorkspaceError, match=r"^--work .*: expected a folder, found a file"):
        workspace.prepareFolders(plain, tmp_path / "file")


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port: expected 0..65535, found 70000"),
    (["--host", "0.0.0.0", "--token", "abc"], "--token: expected at least 16"),
    (["--engine-args", "'unclosed"], "--engine-args: expected shell-style flags"),
])
def test_bad_arguments_give_one_line(tmp_path, capsys, args, message):
    from actionpp.cli import main

    assert main(["studio", "--work", str(tmp_path / "work"), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionpp studio: error: ") and message in err and "\n" not in err


def test_without_the_web_extra_one_line_and_nothing_written(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['trame'] = None; from actionpp.cli import main; "
            f"sys.exit(main(['studio', '--work', {str(tmp_path / 'work')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actionpp studio: error: studio: expected the web extra")
    assert not (tmp_path / "work").exists()


def test_every_studio_flag_has_help():
    from actionpp_studio.server import buildParser

    for action in buildParser()._actions:
        assert action.help and action.help.strip(), f"{action.option_strings} lacks help"


def test_both_data_layouts_load_into_a_scene_the_logic_understands(tmp_path):
    pytest.importorskip("slicer_core", reason="slicer-core is not installed")
    from actionpp.data.phantoms import make_phantoms

    workspace.ensureLogicOnPath()
    from ACTIONppLogic import mrml
    from ACTIONppLogic.core import ModuleLogic

    raw = make_phantoms("cardiac", 3, 1, tmp_path / "raw", seed=0, test_cases=0, size=(4, 32, 32))
    context = mrml.createHeadlessScene()
    cases = workspace.loadCases(context, workspace.Folders(raw, tmp_path / "work"))
    logic = ModuleLogic(context, tmp_path / "work")
    assert [(v.GetName(), s.GetName() if s else None) for v, s in cases] == [
        ("cardiac_000", "cardiac_000 segmentation"), ("cardiac_001", None), ("cardiac_002", None)]
    assert [logic.guessSegmentation(v) for v, _ in cases] == [s for _, s in cases]
    report = logic.checkCuration(cases)
    assert report.canTrain and list(report.classes) == ["RV", "MYO", "LV", "PAP"]
    assert not mrml.isModelResult(cases[0][1])

    plain = tmp_path / "plain"
    plain.mkdir()
    mrml.writeVolume(cases[0][0], plain / "a.nrrd")
    mrml.writeSegmentation(cases[0][1], plain / "a.seg.nrrd")
    mrml.writeVolume(cases[1][0], plain / "b.nrrd")
    other = mrml.createHeadlessScene()
    loaded = workspace.loadCases(other, workspace.Folders(plain, tmp_path / "work"))
    assert [(v.GetName(), s.GetName() if s else None) for v, s in loaded] == [("a", "a segmentation"), ("b", None)]
    assert ModuleLogic(other, tmp_path / "work").checkCuration(loaded).classes == report.classes
    context.scene.Clear(1)
    other.scene.Clear(1)


def test_saved_labels_stay_in_the_work_folder_replace_only_their_own_file_and_load_back(tmp_path):
    pytest.importorskip("slicer_core", reason="slicer-core is not installed")
    from actionpp.data.phantoms import make_phantoms

    workspace.ensureLogicOnPath()
    from ACTIONppLogic import export, mrml
    from ACTIONppLogic.core import ModuleLogic

    raw = make_phantoms("cardiac", 3, 1, tmp_path / "raw", seed=0, test_cases=0, size=(4, 32, 32))
    folders = workspace.Folders(raw, tmp_path / "work")
    context = mrml.createHeadlessScene()
    cases = workspace.loadCases(context, folders)
    logic = ModuleLogic(context, folders.work)
    labels = logic.createLabelsFor(cases[1][0], like=cases[0][1])
    assert workspace.labelsFile(folders, "../../x").parent == (folders.work / "labels").resolve()  # a name, not a path
    path = workspace.saveLabels(labels, folders, "cardiac_001")
    assert path == (folders.work / "labels" / "cardiac_001.seg.nrrd").resolve() and path.read_bytes()[:4] == b"NRRD"
    workspace.saveLabels(labels, folders, "cardiac_001")  # its own file: saved again
    stranger = logic.createLabelsFor(cases[2][0], like=cases[0][1])
    (folders.work / "labels" / "cardiac_002.seg.nrrd").write_bytes(b"not ours")
    with pytest.raises(workspace.WorkspaceError, match="not overwritten"):
        workspace.saveLabels(stranger, folders, "cardiac_002")
    assert (folders.work / "labels" / "cardiac_002.seg.nrrd").read_bytes() == b"not ours"
    (folders.work / "labels" / "cardiac_002.seg.nrrd").unlink()

    again = mrml.createHeadlessScene()
    loaded = workspace.loadCases(again, folders)
    assert [(v.GetName(), s.GetName() if s else None) for v, s in loaded] == [
        ("cardiac_000", "cardiac_000 segmentation"), ("cardiac_001", "cardiac_001 segmentation"), ("cardiac_002", None)]
    assert mrml.segmentNames(loaded[1][1]) == mrml.segmentNames(labels)
    assert loaded[1][1].GetAttribute(workspace.LABELS_FILE_ATTRIBUTE) == str(path)
    assert ModuleLogic(again, folders.work).guessSegmentation(loaded[1][0]) is loaded[1][1]
    assert export.segmentVoxelCount(loaded[1][1], mrml.segmentNames(labels)[0][0]) == 0
    assert not list(raw.rglob("*.seg.nrrd"))  # nothing written into the data folder
    context.scene.Clear(1)
    again.scene.Clear(1)


def test_curves_svg():
    from actionpp_studio.plot import curvesSvg

    assert curvesSvg({}, 10) == ""
    svg = curvesSvg({"loss": [(1, 2.0), (2, 1.0), (3, float("nan"))], "val_dice": [(2, 0.5)]}, 4, width=100,
                    height=50)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "nan" not in svg
    assert 'points="28.0,6.0 50.0,25.0"' in svg  # loss scaled to its maximum, x to the total
