import argparse
import json
import subprocess
import sys

import pytest

from actionpp.cli import build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_flag_of_every_subcommand_has_help():
    subs = _subparsers(build_parser())
    assert set(subs) == {"train", "predict", "evaluate", "make-phantoms", "demo", "devices", "rank", "studio"}
    for name, sub in subs.items():
        if name == "studio":  # its flags live in the web package's parser (Testing/web/test_studio_units.py)
            continue
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest} lacks help"


def test_train_flags_cover_the_config():
    from dataclasses import fields

    from actionpp.config import Config

    train = _subparsers(build_parser())["train"]
    dests = {a.dest for a in train._actions}
    assert {f.name for f in fields(Config)} - {"data", "out", "extra"} <= dests


def test_errors_are_one_line_naming_the_input(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--iterations", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("actionpp: error:") and "nowhere" in err and "\n" not in err
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--method", "nope"]) == 1
    assert "--method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--iterations", "x", "--out", "r"])
    assert e.value.code == 2


def test_phantoms_train_predict_evaluate_end_to_end(tmp_path, capsys):
    data, run, pred = tmp_path / "data", tmp_path / "run", tmp_path / "pred"
    assert main(["make-phantoms", "--kind", "cardiac", "--cases", "3", "--labeled", "2", "--test-cases", "1",
                 "--size", "4", "32", "32", "--out", str(data)]) == 0
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"channels": [8, 16, 32], "embed_dim": 16, "ascl_queue": 64, "anco_anchors": 8,
                               "anco_negatives": 16, "anco_pool": 8, "ascl_anchors_per_class": 8}))
    assert main(["train", str(data), "--out", str(run), "--config", str(cfg), "--iterations", "2", "--patch", "32",
                 "32", "--batch-labeled", "2", "--batch-unlabeled", "1", "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["embed_dim"] == 16 and saved["iterations"] == 2 and saved["method"] == "actionpp"
    assert main(["predict", str(run), str(data / "imagesTs"), "--out", str(pred), "--device", "cpu"]) == 0
    assert main(["evaluate", str(pred), str(data / "labelsTs"), "--labels", str(data / "dataset.json"),
                 "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["summary"]) >= {"LV", "mean"}
    assert main(["train", "--resume", "--out", str(run)]) == 0  # already finished: resumes at the end


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "actionpp", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("actionpp ")


def test_demo_compares_the_methods_on_the_same_test_cases(tmp_path, monkeypatch):
    """A tiny demo (2 iterations each, 32 x 32 slices): both methods trained, scored on the same test cases, the
    report's table, per-case differences and overlay agree with the metrics files; a used folder is refused."""
    import json

    from actionpp import demo

    report = demo.run_demo(tmp_path / "d", iterations=2, device="cpu", cases=3, size=(4, 32, 32),
                           batch_labeled=1, batch_unlabeled=1, val_fraction=0.0)
    text = report.read_text()
    metrics = {m: json.loads((tmp_path / "d" / f"metrics_{m}.json").read_text()) for m in demo.DEFAULT_METHODS}
    assert set(metrics["supervised"]["per_case"]) == set(metrics["actionpp"]["per_case"]) and metrics["actionpp"]
    for m, result in metrics.items():
        mean = result["summary"]["mean"]["dice"]
        assert f"| {m} | {mean:.3f} |" in text
    case = sorted(metrics["supervised"]["per_case"])[0]
    diff = demo._case_dice(metrics["actionpp"])[case] - demo._case_dice(metrics["supervised"])[case]
    assert f"| {case} | {diff:+.3f} |" in text
    from PIL import Image

    assert Image.open(tmp_path / "d" / "overlay.png").size[0] > Image.open(tmp_path / "d" / "overlay.png").size[1] * 3
    assert main(["demo", "--out", str(tmp_path / "d"), "--iterations", "1"]) == 1  # never reuses a folder
