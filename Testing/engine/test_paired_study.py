"""The paired table of benchmarks/paired_study.py: per-seed differences, their mean and t-interval, arm parsing."""

import importlib.util
import math
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "paired_study", Path(__file__).resolve().parents[2] / "benchmarks" / "paired_study.py")
ps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ps)


def _run(arm, seed, dice):
    return {"arm": arm, "seed": seed, "mean_dice": dice, "mean_hd95": 10.0, "missed": 0, "dice": {"A": dice}}


def test_paired_differences_mean_and_interval():
    res = [_run("sup", 0, 0.5), _run("sup", 1, 0.6), _run("sup", 2, 0.7),
           _run("x", 0, 0.6), _run("x", 1, 0.6), _run("x", 2, 0.9)]
    text = ps.table(res, ["sup", "x"], [0, 1, 2], "# t")
    d = [0.1, 0.0, 0.2]
    half = 4.30 * math.sqrt(sum((v - 0.1) ** 2 for v in d) / 2) / math.sqrt(3)
    assert "| x | +0.100, +0.000, +0.200 | +0.100 |" in text
    assert f"[{0.1 - half:+.3f}, {0.1 + half:+.3f}]" in text
    assert "| sup | 0.600 | 0.600 | 10.0 | 0 |" in text


def test_arm_parsing():
    assert ps.parse_arm("app=actionpp,unsup_rampup=0.4,teacher=official") == \
        ("app", "actionpp", {"unsup_rampup": 0.4, "teacher": "official"})
    assert ps.parse_arm("s=supervised,patch=[64,64],seed=1") == ("s", "supervised", {"patch": [64, 64], "seed": 1})
