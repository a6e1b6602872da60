"""``predict`` finds an output folder it cannot write before it loads a model or computes anything."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from actionpp import inference
from actionpp.cli import main
from actionpp.data import io
from actionpp.data.io import DataError, Geometry, check_writable_folder, write_image


@pytest.fixture
def image(tmp_path):
    return write_image(np.zeros((2, 8, 8), np.float32), Geometry.from_shape((2, 8, 8)), tmp_path / "in" / "a.nrrd")


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: nothing may be computed before the output is known to be writable."""
    def load(*a, **kw):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(inference.Predictor, "load", load)


def test_output_under_a_regular_file_fails_first(tmp_path, image, no_model, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    for src, out in ((image.parent, blocker / "pred"), (image, blocker / "pred" / "a.nrrd")):
        assert main(["predict", str(tmp_path / "model.pt"), str(src), "--out", str(out), "--device", "cpu"]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--out" in err and str(blocker) in err and "is a file" in err
    assert blocker.read_text() == "mine"


def test_read_only_output_folder_fails_first(tmp_path, image, no_model, monkeypatch, capsys):
    def refuse(*a, **kw):  # what a read-only or immutable mount answers (chmod does not stop root)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    out = tmp_path / "ro"
    assert main(["predict", str(tmp_path / "model.pt"), str(image.parent), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "Read-only file system" in err


def test_writable_folder_is_created_and_left_clean(tmp_path):
    folder = check_writable_folder(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone
    (folder / "x").write_text("")
    with pytest.raises(DataError, match=r"--out .*expected a writable folder, found .*x is a file"):
        check_writable_folder(folder / "x" / "y")
