"""Paired per-seed comparison of training arms on a (variant) cardiac phantom set, CPU or GPU, in parallel processes.

    python benchmarks/paired_study.py --out /tmp/study --arm sup=supervised --arm mt=mean-teacher \
        --arm app=actionpp --seeds 0 1 2 --iterations 400 --spacing 1.4 9 --oblique 35 --intensity alt --jobs 3

An arm is ``NAME=METHOD[,KEY=VALUE...]`` (config overrides, JSON values). Every arm trains on the same phantoms with
the same seed list (2D UNet, patch 96 x 96, batch 4 + 4 unless overridden), predicts the labeled test split and is
scored with ``actionpp evaluate``'s metrics (missed structures get the HD95 penalty). ``results.json`` holds every
run (per-class Dice, HD95, missed, the last logged losses); ``results.md`` the means and, for each arm against the
first, the per-seed differences of mean foreground Dice with their mean and a t-interval (95 %).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def t_interval(d: list[float]) -> tuple[float, float]:
    """Mean of the paired differences ``d`` and the half-width of its 95 % t-interval (NaN for one value)."""
    mean = statistics.mean(d)
    return mean, (T95.get(len(d) - 1, 2.0) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan)


def parse_arm(text: str) -> tuple[str, str, dict]:
    name, _, spec = text.partition("=")
    method, *kvs = re.split(r",(?![^\[]*\])", spec)  # commas inside [..] belong to a list value
    over = {}
    for kv in kvs:
        k, _, v = kv.partition("=")
        try:
            over[k] = json.loads(v)
        except ValueError:
            over[k] = v
    return name, method, over


def score(model: str | Path, data: Path, pred: Path, device: str = "cpu") -> dict:
    """Predict ``data/imagesTs`` into ``pred`` with ``model`` and return ``actionpp evaluate``'s summary
    (per class and ``mean``: dice, hd95, missed, ...) against ``data/labelsTs``."""
    from actionpp.evaluate import evaluate_paths
    from actionpp.inference import predict_paths

    predict_paths(model, data / "imagesTs", pred, device=device, overwrite=True)
    return evaluate_paths(pred, data / "labelsTs", data / "dataset.json", quiet=True)["summary"]


def run_one(job: dict) -> dict:
    import torch

    from actionpp.config import Config
    from actionpp.data.layout import load_dataset
    from actionpp.events import read_events
    from actionpp.trainer import Trainer

    torch.set_num_threads(job["threads"])
    run = Path(job["run"])
    base = dict(dims=2, patch=[96, 96], batch_labeled=4, batch_unlabeled=4, iterations=job["iterations"])
    base.update(job["over"])  # an arm may override any field, the iterations too (e.g. a step-count control)
    base.setdefault("checkpoint_every", base["iterations"])
    cfg = Config(data=job["data"], out=str(run), method=job["method"], seed=job["seed"], device=job["device"], **base)
    t0 = time.perf_counter()
    model = Trainer(cfg, load_dataset(job["data"], cfg.labeled_cases), show_bar=False).run()
    secs = time.perf_counter() - t0
    s = score(model, Path(job["data"]), run / "pred", job["device"])
    iters = [e for e in read_events(run / "events.jsonl") if e.get("event") == "iter" and "phase" not in e]
    tail = iters[-max(1, len(iters) // 10):]
    losses = {k: statistics.mean(e["losses"][k] for e in tail) for k in tail[-1].get("losses", {})}
    return {**job.get("tags", {}), "arm": job["arm"], "seed": job["seed"], "mean_dice": s["mean"]["dice"],
            "mean_hd95": s["mean"]["hd95"], "missed": s["mean"]["missed"],
            "dice": {c: r["dice"] for c, r in s.items() if c != "mean"}, "seconds": secs, "final_losses": losses}


def table(results: list[dict], arms: list[str], seeds: list[int], title: str) -> str:
    by = {(r["arm"], r["seed"]): r for r in results}
    classes = [c for c in results[0]["dice"]]
    lines = [title, "", "| arm | mean fg Dice | " + " | ".join(classes) + " | HD95 mm | missed |",
             "|---" * (4 + len(classes)) + "|"]
    for a in arms:
        rows = [by[(a, s)] for s in seeds if (a, s) in by]
        if rows:
            m = lambda f: statistics.mean(f(r) for r in rows)  # noqa: E731
            lines.append(f"| {a} | {m(lambda r: r['mean_dice']):.3f} | "
                         + " | ".join(f"{m(lambda r: r['dice'][c]):.3f}" for c in classes)
                         + f" | {m(lambda r: r['mean_hd95']):.1f} | {sum(r['missed'] for r in rows)} |")
    ref = arms[0]
    lines += ["", f"Paired per seed, mean foreground Dice minus `{ref}` (seeds {seeds}):", "",
              "| arm | per-seed differences | mean | 95% t-interval |", "|---|---|---|---|"]
    for a in arms[1:]:
        d = [by[(a, s)]["mean_dice"] - by[(ref, s)]["mean_dice"] for s in seeds if (a, s) in by and (ref, s) in by]
        if not d:
            continue
        mean, half = t_interval(d)
        lines.append(f"| {a} | {', '.join(f'{x:+.3f}' for x in d)} | {mean:+.3f} | "
                     f"[{mean - half:+.3f}, {mean + half:+.3f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="existing dataset (default: make phantoms in OUT/data)")
    ap.add_argument("--arm", action="append", required=True, help="NAME=METHOD[,KEY=VALUE...]; first is reference")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--phantom-seed", type=int, default=777)
    ap.add_argument("--cases", type=int, default=14)
    ap.add_argument("--labeled", type=int, default=2)
    ap.add_argument("--test-cases", type=int, default=6)
    ap.add_argument("--spacing", type=float, nargs=2)
    ap.add_argument("--oblique", type=float, default=0.0)
    ap.add_argument("--intensity", default="default")
    a = ap.parse_args()
    from actionpp.data.phantom_variants import Variant
    from actionpp.data.phantoms import make_phantoms

    a.out.mkdir(parents=True, exist_ok=True)
    data = a.data or a.out / "data"
    variant = Variant(tuple(a.spacing) if a.spacing else None, a.oblique, a.intensity)
    if not data.exists():
        make_phantoms("cardiac", a.cases, a.labeled, data, seed=a.phantom_seed, test_cases=a.test_cases,
                      variant=None if variant.is_default else variant)
    arms = [parse_arm(t) for t in a.arm]
    jobs = [{"arm": n, "method": m, "over": o, "seed": s, "iterations": a.iterations, "device": a.device,
             "threads": a.threads, "data": str(data), "run": str(a.out / "runs" / n / f"seed{s}")}
            for s in a.seeds for n, m, o in arms]
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["arm"], r["seed"]) for r in results}
    todo = [j for j in jobs if (j["arm"], j["seed"]) not in done]
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in pool.map(run_one, todo):
            results.append(r)
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps(r), flush=True)
    title = (f"# {' vs '.join(n for n, _, _ in arms)}: cardiac phantoms (seed {a.phantom_seed}, {a.labeled} labeled "
             f"of {a.cases}, {a.test_cases} test; variant {variant.to_dict()}), {a.iterations} iterations, "
             f"device {a.device}\n\nCommand: `python {' '.join(sys.argv)}`")
    text = table(results, [n for n, _, _ in arms], a.seeds, title)
    (a.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
