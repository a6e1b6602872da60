"""Benchmark scripts run end to end on tiny inputs: the GPU throughput script on the CPU (its --smoke mode), so that it
works when a GPU is lent; the CT memory measurement on a small volume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


def test_gpu_throughput_smoke_runs_and_reports_every_setting(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "(smoke)" in line]
    assert len(rows) == 4 and {r.split("|")[2].strip() for r in rows} == {"fp32", "bf16"}
    assert all(float(r.split("|")[4]) > 0 for r in rows)  # samples per second


def test_ct_memory_reports_the_measured_peak_and_the_estimate(tmp_path):
    """benchmarks/ct_memory.py on a small volume: a real predict under /usr/bin/time, its peak and the estimate."""
    if not Path("/usr/bin/time").exists():
        pytest.skip("/usr/bin/time (GNU time) is not installed")
    out = tmp_path / "ct.md"
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "ct_memory.py"), "--work", str(tmp_path / "w"),
                           "--out", str(out), "--size", "20", "96", "96", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    peak = float(text.split("Peak RSS (whole process, /usr/bin/time -v): ")[1].split(" GiB")[0])
    assert 0.1 < peak < 8 and "96 x 96 x 20" in text and "Planner's estimate" in text


def test_label_efficiency_keeps_n_labels_tabulates_pairs_and_plots(tmp_path):
    """Tiny study: 2 kinds x 1, 2 labeled x 2 arms x 2 seeds. Each run trains on exactly N labeled cases (the rest
    unlabeled, read from its events), the table pairs arms per seed, and the plot is a PNG."""
    import json

    tiny = "patch=[32,32],channels=[4,8,16,32],batch_labeled=2,batch_unlabeled=2"
    out = tmp_path / "le"
    done = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "label_efficiency.py"), "--out", str(out), "--iterations", "2",
         "--labeled", "1", "2", "--seeds", "0", "1", "--cases", "4", "--test-cases", "1", "--size", "4", "32", "32",
         "--jobs", "2", "--arm", f"sup=supervised,{tiny}",
         "--arm", f"app=actionpp,{tiny},pretrain_iterations=1,ascl_queue=64,ascl_anchors_per_class=8,anco_anchors=8,"
                  "iterations=3"],  # an arm may override the study's iterations (a step-count control)
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["kind"], r["labeled"], r["arm"], r["seed"]) for r in results) == sorted(
        (k, n, a, s) for k in ("atrium", "cardiac") for n in (1, 2) for a in ("app", "sup") for s in (0, 1))
    for k in ("atrium", "cardiac"):
        for n in (1, 2):
            events = (out / "runs" / k / f"l{n}" / "app" / "seed1" / "events.jsonl").read_text().splitlines()
            start = next(json.loads(e) for e in events if '"unlabeled"' in e)
            assert (start["labeled"], start["unlabeled"]) == (n, 4 - n)
            for arm, its in (("app", 3), ("sup", 2)):
                log = (out / "runs" / k / f"l{n}" / arm / "seed0" / "events.jsonl").read_text().splitlines()
                assert json.loads(log[-1])["iteration"] == its
    text = (out / "results.md").read_text()
    by = {(r["kind"], r["labeled"], r["arm"], r["seed"]): r["mean_dice"] for r in results}
    d = [by[("cardiac", 2, "app", s)] - by[("cardiac", 2, "sup", s)] for s in (0, 1)]
    assert f"| 2 | app - sup | {d[0]:+.3f}, {d[1]:+.3f} |" in text
    assert "PAP Dice" in text.split("## cardiac")[1] and "PAP" not in text.split("## cardiac")[0]
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_efficiency_combines_finished_studies_by_seed_and_refuses_a_run_twice(tmp_path):
    """--combine: the tables and plot over two studies (one per label count), only the asked seeds, pairs per seed;
    a run present in both studies stops with a one-line error naming both files."""
    import json

    sys.path.insert(0, str(SCRIPT.parent))
    import label_efficiency as le

    def run(n, arm, seed, dice):
        return {"kind": "atrium", "labeled": n, "arm": arm, "seed": seed, "mean_dice": dice, "mean_hd95": 3.0,
                "missed": 0, "dice": {"LA": dice}}

    one, two = tmp_path / "l1", tmp_path / "l2"
    for d, n in ((one, 1), (two, 2)):
        d.mkdir()
        shift = {"sup_1250": 0.0, "app": 0.05, "mt_1250": 0.02, "app_nopre_1250": 0.03}
        runs = [run(n, arm, s, 0.5 + 0.1 * n + 0.01 * s + shift[arm]) for arm in shift for s in (0, 1, 2)]
        (d / "results.json").write_text(json.dumps(runs))
    out = tmp_path / "both"
    le.main(["--out", str(out), "--combine", str(one), str(two), "--seeds", "0", "1", "--kinds", "atrium",
             "--pair", "app:app_nopre_1250"])
    text = (out / "results.md").read_text()
    assert "| 2 | app - app_nopre_1250 | +0.020, +0.020 |" in text  # asked with --pair, in that direction
    assert "| 1 | sup_1250 | 2 | 0.605 |" in text and "| 2 | app | 2 | 0.755 |" in text  # seeds 0 and 1 only
    assert "| 2 | sup_1250 - app | -0.050, -0.050 |" in text
    # each step-count control against the supervised and the mean-teacher control of its own step count
    assert "| 1 | app_nopre_1250 - mt_1250 | +0.010, +0.010 |" in text
    assert "| 1 | mt_1250 - sup_1250 | +0.020, +0.020 |" in text and "sup_1250 - mt_1250" not in text
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="both .*l1.results.json and .*l1.results.json"):
        le.main(["--out", str(tmp_path / "x"), "--combine", str(one), str(one), "--kinds", "atrium"])
    before = (one / "results.json").read_bytes()
    with pytest.raises(SystemExit):  # --out must not be a combined study: its own results.md would be replaced
        le.main(["--out", str(one), "--combine", str(one), str(two), "--kinds", "atrium"])
    assert sorted(p.name for p in one.iterdir()) == ["results.json"] and (one / "results.json").read_bytes() == before
    with pytest.raises(SystemExit):  # --pair needs two arm names
        le.main(["--out", str(tmp_path / "x"), "--combine", str(one), "--pair", "app"])
    with pytest.raises(SystemExit, match="expected .*nowhere.results.json"):
        le.main(["--out", str(tmp_path / "x"), "--combine", str(tmp_path / "nowhere")])


def test_draw_memory_3d_reports_both_variants(tmp_path):
    """benchmarks/draw_memory_3d.py on a small volume: every variant measured, each in its own process. (The
    difference it exists to show needs a volume larger than the draw's own transient arrays: see its results.)"""
    out = tmp_path / "draw.md"
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "draw_memory_3d.py"), "--size", "24", "128", "128",
                           "--draws", "2", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r.split("|")[1].strip(): [float(v) for v in r.split("|")[2:5]] for r in out.read_text().splitlines()
            if r.startswith(("| mapped", "| copied", "| searched"))}
    assert set(rows) == {"mapped", "copied", "searched"} and all(v[0] > 0 and v[1] > 0 for v in rows.values())


def test_step_cost_times_every_variant_and_the_floor():
    """benchmarks/step_cost.py on 32 x 32 patches: one row per variant against mean-teacher, and the two costs of
    ACTION++'s design timed alone (the teacher's pass over the labeled half is cheaper than a whole step)."""
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "step_cost.py"), "--patch", "32", "32", "--batch", "2",
                           "--repeats", "1", "--warmup", "1", "--threads", "1", "--floor"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()
            if line.split() and line.split()[0] in ("supervised", "mean-teacher", "action", "actionpp",
                                                    "actionpp/fp32", "actionpp/small", "actionpp/fullres")}
    assert len(rows) == 7 and rows["mean-teacher"][1] == "1.00x"
    assert all(float(v[0]) > 0 for v in rows.values())
    floor = done.stdout.split("floor (")[1]
    teacher = float(floor.split("labeled half ")[1].split(" ms (")[1].split("x")[0])
    assert 0 < teacher < 1 and "1280 x 12288 x 128" in floor


def test_compare_methods_pairs_each_method_with_the_first_per_seed():
    """compare_methods' paired table: per-seed differences against the first method (and actionpp against
    mean-teacher), their mean and the 95 % t-interval (t = 4.30 for 3 seeds); a seed one side lacks is left out."""
    sys.path.insert(0, str(SCRIPT.parent))
    from compare_methods import paired_lines

    sup = {0: 0.5, 1: 0.6, 2: 0.7}
    results = {f"supervised/seed{s}": {"mean_dice": v, "rare_dice": v / 2} for s, v in sup.items()}
    results |= {f"actionpp/seed{s}": {"mean_dice": v + 0.1 * (s + 1), "rare_dice": v / 2} for s, v in sup.items()}
    results |= {f"mean-teacher/seed{s}": {"mean_dice": v, "rare_dice": v / 2 + 0.05} for s, v in sup.items() if s}
    rows = {r.split(" |")[0][2:]: r for r in paired_lines(results, ["supervised", "mean-teacher", "actionpp"],
                                                            [0, 1, 2], "PAP") if r.startswith("| ") and " - " in r}
    half = 4.30 * 0.1 / 3 ** 0.5  # differences 0.1, 0.2, 0.3: standard deviation 0.1
    assert rows["actionpp - supervised"] == (f"| actionpp - supervised | +0.100, +0.200, +0.300 | +0.200 "
                                             f"[{0.2 - half:+.3f}, {0.2 + half:+.3f}] | +0.000, +0.000, +0.000 | "
                                             "+0.000 [+0.000, +0.000] |")
    assert rows["mean-teacher - supervised"].startswith("| mean-teacher - supervised | +0.000, +0.000 | ")
    assert "| +0.050, +0.050 | +0.050 [+0.050, +0.050] |" in rows["mean-teacher - supervised"]
    assert rows["actionpp - mean-teacher"].startswith("| actionpp - mean-teacher | +0.200, +0.300 | +0.250 ")


def test_compare_methods_pairs_a_method_with_a_step_matched_control():
    """--control: mean-teacher trained for actionpp's 3750 steps (pre-training + fine-tuning) in another results.json
    is paired per seed with actionpp, not with the 3000-step methods; a control run without 'steps' is refused."""
    sys.path.insert(0, str(SCRIPT.parent))
    from compare_methods import paired_lines, with_controls

    results = {f"{m}/seed{s}": {"mean_dice": 0.5 + s / 10 + (m == "actionpp") * 0.05, "rare_dice": 0.3, "steps": n}
               for m, n in (("supervised", 3000), ("mean-teacher", 3000), ("actionpp", 3750)) for s in (0, 1)}
    control = {f"mean-teacher/seed{s}": {"mean_dice": 0.5 + s / 10 + 0.02 * (s + 1), "rare_dice": 0.4, "steps": 3750}
               for s in (0, 1)}
    merged, names, pairs = with_controls(results, [("", control)])
    assert names == ["mean-teacher (3750 steps)"] and pairs == [("actionpp", "mean-teacher (3750 steps)")]
    assert merged["mean-teacher (3750 steps)/seed1"] is control["mean-teacher/seed1"]
    assert merged["actionpp/seed0"] is results["actionpp/seed0"]
    rows = [r for r in paired_lines(merged, ["supervised", "mean-teacher", "actionpp"], [0, 1], "PAP", pairs)
            if r.startswith("| actionpp - mean-teacher (3750")]
    assert len(rows) == 1 and "| +0.030, +0.010 | +0.020 [" in rows[0] and "| -0.100, -0.100 | -0.100 [" in rows[0]
    with pytest.raises(ValueError, match="mean-teacher/seed0 has no 'steps'"):
        with_controls(results, [("", {"mean-teacher/seed0": {"mean_dice": 0.5}})])
    # The same method with other settings (a labeled control) is paired with it; unlabeled, it is not.
    bf16 = {f"actionpp/seed{s}": {"mean_dice": 0.5 + s / 10, "rare_dice": 0.3, "steps": 3750} for s in (0, 1)}
    merged, names, pairs = with_controls(results, [("", control), ("bf16", bf16), ("", bf16)])
    assert names == ["mean-teacher (3750 steps)", "actionpp, bf16 (3750 steps)", "actionpp (3750 steps)"]
    assert pairs == [("actionpp", "mean-teacher (3750 steps)"), ("actionpp", "actionpp, bf16 (3750 steps)")]
    rows = [r for r in paired_lines(merged, ["actionpp"], [0, 1], "PAP", pairs) if "bf16" in r]
    assert len(rows) == 1 and rows[0].startswith("| actionpp - actionpp, bf16 (3750 steps) | +0.050, +0.050 |")


def test_compare_methods_reads_labeled_controls_and_names_a_missing_file(tmp_path):
    """--control FILE or LABEL=FILE (repeatable); a path that is not a file is refused with the path named."""
    sys.path.insert(0, str(SCRIPT.parent))
    from compare_methods import read_controls

    runs = {"mean-teacher/seed0": {"mean_dice": 0.5, "steps": 10}}
    (tmp_path / "a=b.json").write_text(json.dumps(runs))  # an '=' in the file's own name is not a label
    (tmp_path / "c.json").write_text(json.dumps({}))
    assert read_controls([str(tmp_path / "a=b.json"), f"fp32 ASCL={tmp_path / 'c.json'}"]) == [("", runs),
                                                                                             ("fp32 ASCL", {})]
    with pytest.raises(ValueError, match=r"--control: expected \[LABEL=\]FILE.*found no file .*missing.json"):
        read_controls([f"x={tmp_path / 'missing.json'}"])


def test_compare_methods_table_counts_each_methods_seeds_and_lists_the_control(tmp_path):
    """results.md: one row per method and control with the number of seeds behind its mean (a method may have fewer
    seeds than the table), and the step-matched pair below."""
    import argparse
    sys.path.insert(0, str(SCRIPT.parent))
    from compare_methods import write_table

    row = lambda d, n: {"mean_dice": d, "rare_dice": d / 2, "mean_hd95_mm": 5.0, "seconds": 1.0, "steps": n}  # noqa: E731
    results = {"supervised/seed0": row(0.6, 3000), "actionpp/seed0": row(0.8, 3750), "actionpp/seed1": row(0.7, 3750)}
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"mean-teacher/seed0": row(0.75, 3750), "mean-teacher/seed1": row(0.65, 3750)}))
    a = argparse.Namespace(out=tmp_path, labeled=2, cases=10, test_cases=6, iterations=3000, seeds=[0, 1],
                           methods=["supervised", "actionpp"], control=[str(control)], set=["pretrain_iterations=0"])
    write_table(results, a, "PAP")
    table = (tmp_path / "results.md").read_text()
    assert "settings pretrain_iterations=0, 3000 iterations" in table  # overrides are named, not "default settings"
    assert "| supervised | 3000 | 1 | 0.6000 |" in table and "| actionpp | 3750 | 2 | 0.7500 |" in table
    assert "| mean-teacher (3750 steps) | 3750 | 2 | 0.7000 |" in table
    assert "| actionpp - mean-teacher (3750 steps) | +0.050, +0.050 | +0.050 [+0.050, +0.050] |" in table


def test_compare_methods_keeps_runs_another_process_wrote_to_the_same_results(tmp_path):
    """Two compare_methods processes (one per seed) share one --out: each run is added to what is on disk at the time,
    not to what the process read when it started, and no temporary file is left behind."""
    sys.path.insert(0, str(SCRIPT.parent))
    from compare_methods import save_row

    path = tmp_path / "results.json"
    mine = save_row(path, "supervised/seed0", {"mean_dice": 0.5})
    save_row(path, "supervised/seed1", {"mean_dice": 0.6})  # the other process, after this one started
    mine = save_row(path, "actionpp/seed0", {"mean_dice": 0.7})
    assert mine == {"supervised/seed0": {"mean_dice": 0.5}, "supervised/seed1": {"mean_dice": 0.6},
                    "actionpp/seed0": {"mean_dice": 0.7}}
    assert json.loads(path.read_text()) == mine and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_stage_only_scores_the_pretrained_student_not_the_final_one(tmp_path):
    """benchmarks/stage_only.py on a tiny finished ACTION++ run: the model it scores carries the weights of
    checkpoints/pretrain.pt (not model.pt's), it writes its tables, and a run without a stage is refused by name."""
    import torch

    from actionpp import checkpoint
    from actionpp.cli import main as actionpp
    from actionpp.data.phantoms import make_phantoms

    sys.path.insert(0, str(SCRIPT.parent))
    import stage_only

    data = make_phantoms("cardiac", 3, 1, tmp_path / "data", seed=0, test_cases=1, size=(4, 32, 32))
    run = tmp_path / "runs" / "seed0"
    assert actionpp(["train", str(data), "--out", str(run), "--method", "actionpp", "--iterations", "2",
                     "--pretrain-iterations", "2", "--patch", "32", "32", "--batch-labeled", "1", "--batch-unlabeled",
                     "1", "--channels", "4", "8", "--embed-dim", "8", "--ascl-queue", "32", "--ascl-anchors-per-class",
                     "4", "--anco-anchors", "4", "--anco-negatives", "8", "--anco-pool", "4", "--device", "cpu",
                     "--quiet"]) == 0
    out = tmp_path / "stage"
    stage_only.main(["--data", str(data), "--out", str(out), str(run)])
    scored = checkpoint.load(out / "runs_seed0" / "model.pt")["state_dict"]
    stage, final = checkpoint.load(run / "checkpoints" / "pretrain.pt")["model"], checkpoint.load(run / "model.pt")
    assert all(torch.equal(scored[k], stage[k]) for k in stage)
    assert any(not torch.equal(scored[k], final["state_dict"][k]) for k in stage)
    rows = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in rows] == [str(run)] and f"{rows[0]['stage_dice']:.3f}" in (out / "results.md").read_text()
    with pytest.raises(SystemExit, match="runs_seed0: output folder exists"):
        stage_only.main(["--data", str(data), "--out", str(out), str(run)])
    (run / "checkpoints" / "pretrain.pt").unlink()
    with pytest.raises(SystemExit, match="pretrain.pt: expected a file of a finished run"):
        stage_only.main(["--data", str(data), "--out", str(out), str(run)])
