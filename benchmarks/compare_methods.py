"""Accuracy of the methods on cardiac phantoms with few labels: mean foreground Dice and the rarest class.

    python benchmarks/compare_methods.py --out benchmarks/results/cardiac_2labeled \
        --work /tmp/cardiac_runs --methods supervised mean-teacher action actionpp --seeds 0 1 --iterations 1000

Every method trains with the same data, backbone, batch, patch, iterations and seed, then predicts the labeled
held-out test split, which is scored with ``actionpp evaluate``'s metrics (Dice per class, HD95 in mm). Writes
``results.json`` and ``results.md`` to ``--out`` (one run folder per method and seed beside them).

Methods with a pre-training stage take more optimiser steps than ``--iterations``. ``--control FILE`` reads the
``results.json`` of another run of this script (say mean-teacher for as many steps as actionpp's pre-training plus
fine-tuning) and pairs each of its methods, per seed, with every method here that took the same number of steps.
``--control LABEL=FILE`` names a control run with other settings (say bfloat16 queue products); such a control is
paired with the same method here too. ``--control`` may be given more than once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from actionpp.config import Config, write_text_atomic
from actionpp.data.layout import load_dataset
from actionpp.data.phantoms import make_phantoms
from actionpp.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_study import score, t_interval  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="results.json and results.md go here")
    ap.add_argument("--work", type=Path, help="phantoms and run folders (default: --out)")
    ap.add_argument("--methods", nargs="+", default=["supervised", "actionpp"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--labeled", type=int, default=2)
    ap.add_argument("--test-cases", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--control", action="append", default=[], metavar="[LABEL=]FILE",
                    help="results.json of step-matched control runs (see above); repeatable")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every method, e.g. unsup_mask=image (JSON values)")
    a = ap.parse_args()
    try:
        read_controls(a.control)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.work or a.out
    data = work / "data"
    if not data.exists():
        make_phantoms("cardiac", a.cases, a.labeled, data, seed=123, test_cases=a.test_cases)
    ds = load_dataset(data)
    rare = min((n for n in ds.labels if ds.labels[n]), key=lambda n: sum(int((c.label == ds.labels[n]).sum())
                                                                        for c in ds.labeled))
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for seed in a.seeds:
        for m in a.methods:
            key = f"{m}/seed{seed}"
            if key in results:
                continue
            run = work / "runs" / m / f"seed{seed}"
            over = {k: json.loads(v) if v[:1] in "[{0123456789-" or v in ("true", "false") else v
                    for k, v in (kv.split("=", 1) for kv in a.set)}
            cfg = Config(data=str(data), out=str(run), method=m, iterations=a.iterations, seed=seed, device="cpu",
                         checkpoint_every=a.iterations, **over)
            t0 = time.perf_counter()
            model = Trainer(cfg, ds, show_bar=False).run()
            secs = time.perf_counter() - t0
            s = score(model, data, run / "pred")
            row = {"mean_dice": s["mean"]["dice"], "rare_dice": s[rare]["dice"], "seconds": secs,
                   "per_class_dice": {c: r["dice"] for c, r in s.items() if c != "mean"},
                   "mean_hd95_mm": s["mean"]["hd95"], "missed": s["mean"]["missed"],
                   "rare_missed": s[rare]["missed"], "steps": cfg.iterations + cfg.pretrain_iterations}
            results = save_row(results_path, key, row | {"settings": a.set})
            print(key, json.dumps(row), flush=True)
    write_table(results, a, rare)


def save_row(path: Path, key: str, row: dict) -> dict:
    """Add one run to ``path`` (results.json) and return all runs in it. The file is read again first and replaced
    atomically, so two processes (say one per seed on two cores) can share one ``--out``."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = row
    write_text_atomic(path, json.dumps(results, indent=2) + "\n")
    return results


def write_table(results: dict, a: argparse.Namespace, rare: str) -> None:
    settings = "settings " + " ".join(a.set) if a.set else "default settings"
    lines = [f"# Cardiac phantoms, {a.labeled} labeled of {a.cases} training cases, {a.test_cases} test cases",
             "", f"2D UNet, {settings}, {a.iterations} iterations, seeds {a.seeds}; rarest class: `{rare}`.",
             "Mean over the seeds each method has (each seed: mean over test cases).", "",
             "HD95 includes the image-diagonal penalty for missed structures; 'missed' sums them over seeds.", "",
             "| method | optimiser steps | seeds | mean fg Dice | rare-class Dice | HD95 mm | missed (rare) | train s |",
             "|---|---|---|---|---|---|---|---|"]
    results, controls, matched = with_controls(results, read_controls(a.control))
    for m in a.methods + controls:
        rows = [results[f"{m}/seed{s}"] for s in a.seeds if f"{m}/seed{s}" in results]
        if rows:
            avg = lambda k: statistics.mean(r[k] for r in rows)  # noqa: E731
            steps = "/".join(sorted({str(r.get("steps", "?")) for r in rows}))  # pre-training + --iterations
            missed = f"{sum(r.get('missed', 0) for r in rows)} ({sum(r.get('rare_missed', 0) for r in rows)})"
            lines.append(f"| {m} | {steps} | {len(rows)} | {avg('mean_dice'):.4f} | {avg('rare_dice'):.4f} | "
                         f"{avg('mean_hd95_mm'):.2f} | {missed} | {avg('seconds'):.0f} |")
    lines += paired_lines(results, a.methods, a.seeds, rare, matched)
    (a.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def read_controls(values: list[str]) -> list[tuple[str, dict]]:
    """``--control`` values (``FILE`` or ``LABEL=FILE``) as (label, runs of that results.json); label "" if none."""
    controls = []
    for value in values:
        label, _, path = ("", "", value) if Path(value).is_file() else value.rpartition("=")
        if not Path(path).is_file():
            raise ValueError(f"--control: expected [LABEL=]FILE, the results.json of another compare_methods.py run; "
                             f"found no file {path}")
        controls.append((label, json.loads(Path(path).read_text())))
    return controls


def with_controls(results: dict, controls: list[tuple[str, dict]]) -> tuple[dict, list[str], list[tuple[str, str]]]:
    """Add the control runs (``METHOD/seedS`` keys of other results.json files, each with an optional label) to
    ``results`` as ``METHOD (N steps)`` or ``METHOD, LABEL (N steps)``. Returns the merged runs, the control names and
    the step-matched pairs (method here, control name): every run of the method took the control's number of
    optimiser steps. A control of the same method as one here is paired with it only if labeled (other settings)."""
    merged, names = dict(results), {}  # control name -> (its method, its steps, its label)
    for label, control in controls:
        for key, row in control.items():
            method, seed = key.rsplit("/", 1)
            if "steps" not in row:
                raise ValueError(f"--control: run {key} has no 'steps' (expected compare_methods.py's results.json)")
            name = f"{method}{', ' + label if label else ''} ({row['steps']} steps)"
            merged[f"{name}/{seed}"] = row
            names[name] = (method, row["steps"], label)
    steps: dict[str, set] = {}
    for key, row in results.items():
        steps.setdefault(key.rsplit("/", 1)[0], set()).add(row.get("steps"))
    pairs = [(m, name) for name, (method, n, label) in names.items() for m, st in steps.items()
             if st == {n} and (m != method or label)]
    return merged, list(names), pairs


def paired_lines(results: dict, methods: list[str], seeds: list[int], rare: str,
                 matched: list[tuple[str, str]] = ()) -> list[str]:
    """Each method minus the first (and actionpp minus mean-teacher), then each step-matched pair ``matched`` (see
    ``with_controls``), per seed, for mean foreground Dice and the rare class: the differences, their mean and its
    95 % t-interval."""
    pairs = [(m, methods[0]) for m in methods[1:]]
    if {"actionpp", "mean-teacher"} <= set(methods) and methods[0] != "mean-teacher":
        pairs.append(("actionpp", "mean-teacher"))
    pairs += [p for p in matched if p[0] in methods]
    lines: list[str] = []
    for m, ref in pairs:
        both = [s for s in seeds if f"{m}/seed{s}" in results and f"{ref}/seed{s}" in results]
        if not both:
            continue
        if not lines:
            lines = ["", "Paired per seed, first method minus second (mean and 95 % t-interval over seeds):", "",
                     "| pair | mean fg Dice per seed | mean [95 % CI] | rare-class Dice per seed | mean [95 % CI] |",
                     "|---|---|---|---|---|"]
        row = f"| {m} - {ref} |"
        for key in ("mean_dice", "rare_dice"):
            d = [results[f"{m}/seed{s}"][key] - results[f"{ref}/seed{s}"][key] for s in both]
            mean, half = t_interval(d)
            ci = f"[{mean - half:+.3f}, {mean + half:+.3f}]" if len(d) > 1 else "(one seed)"
            row += f" {', '.join(f'{x:+.3f}' for x in d)} | {mean:+.3f} {ci} |"
        lines.append(row)
    return lines


if __name__ == "__main__":
    main()
