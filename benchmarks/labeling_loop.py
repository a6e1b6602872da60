"""The labeling loop on cardiac phantoms: does continuing from a model save iterations, does the uncertainty ranking
find the hard volumes, and does labeling the top-ranked volume help more than labeling a random one?

    python benchmarks/labeling_loop.py --out benchmarks/results/labeling_loop --work /tmp/loop --seeds 0 1 2

Per seed, from one pool of fully labeled phantoms (``--cases`` training, ``--test-cases`` test; ``--hard`` training
volumes and half the test volumes made harder on purpose: strong noise, or with ``--hard-kind bias`` a strong
smooth intensity bias), datasets are assembled with labels on
chosen cases only (the others are unlabeled):

A. *Continue vs scratch*: a parent model on 2 labeled cases (``--parent-iterations``); then, with a third labeled
   case, training from scratch for each of ``--scratch`` budgets and continuing from the parent
   (``--init-from``) for each of ``--continue`` budgets. Test Dice of each.
B. *Ranking*: the 3-label scratch model of the largest budget ranks the unlabeled volumes (``actionpp rank``):
   how many of the hard ones are in the top ``--hard``. Then one more volume is labeled, the top-ranked or a random
   other one, and training continues from that model for ``--next-iterations``: test Dice of both (paired).

The ranking is scored twice on the same models: by ``actionpp rank``'s score (entropy + volume terms, see
``actionpp.rank``) and by its entropy term alone (the score before the volume term existed). ``--reuse --previous
OLD.json`` keeps part A and the rankers of an earlier run in ``--work`` and redoes part B; ``--ranking-only`` runs
part B alone on new seeds (training their ranker first).

Test Dice is the mean foreground Dice over the test cases as ``actionpp evaluate`` scores it (a missed structure
scores 0). Writes ``results.json`` (per seed) and ``results.md`` (means and paired per-seed differences).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from actionpp.config import Config
from actionpp.data.io import read_image, write_image
from actionpp.data.layout import case_name, load_dataset
from actionpp.data.phantoms import make_phantoms
from actionpp.evaluate import evaluate_paths
from actionpp.inference import predict_paths
from actionpp.rank import class_volumes_ml, rank_images
from actionpp.trainer import Trainer


def make_hard(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A harder version of ``image`` ``Z, Y, X``: ``noise`` adds Gaussian noise of 1.5 x its standard deviation;
    ``bias`` multiplies it by a smooth in-plane field ``exp(a (x - 1/2) + b (y - 1/2))`` (x, y in [0, 1], ``|a|, |b|``
    drawn in [1.5, 2.5]: one side up to ~3.5 x brighter than the centre, the other as much darker) and adds noise of
    0.3 x its standard deviation."""
    if kind == "noise":
        return image + rng.normal(0, 1.5 * float(image.std()), image.shape).astype(np.float32)
    _, ny, nx = image.shape
    a, b = rng.uniform(1.5, 2.5, 2) * rng.choice([-1, 1], 2)
    field = np.exp(a * (np.arange(nx) / (nx - 1) - 0.5)[None, :] + b * (np.arange(ny) / (ny - 1) - 0.5)[:, None])
    lo = float(image.min())
    out = lo + (image - lo) * field[None].astype(np.float32)
    return out + rng.normal(0, 0.3 * float(image.std()), image.shape).astype(np.float32)


def make_pool(folder: Path, cases: int, test_cases: int, hard: int, seed: int, kind: str = "noise") -> list[str]:
    """Fully labeled phantoms; ``hard`` training cases (after the first 3) and half the test cases made harder
    (:func:`make_hard`). Returns the hard training case names."""
    make_phantoms("cardiac", cases, cases, folder, seed=100 + seed, test_cases=test_cases)
    rng = np.random.default_rng(seed)
    train = sorted((folder / "imagesTr").iterdir())
    test = sorted((folder / "imagesTs").iterdir())
    chosen = [train[i] for i in rng.choice(np.arange(3, cases), size=hard, replace=False)]
    for path in chosen + test[: test_cases // 2]:
        image, geometry = read_image(path)
        write_image(make_hard(image, kind, rng).astype(np.float32), geometry, path)
    return sorted(case_name(p) for p in chosen)


def assemble(pool: Path, folder: Path, labeled: list[str]) -> Path:
    """A dataset folder over the pool's files with label files for ``labeled`` cases only."""
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    shutil.copy(pool / "dataset.json", folder / "dataset.json")
    for sub in ("imagesTr", "imagesTs", "labelsTs"):
        for f in (pool / sub).iterdir():
            (folder / sub / f.name).symlink_to(f.resolve())
    for f in (pool / "labelsTr").iterdir():
        if case_name(f) in labeled:
            (folder / "labelsTr" / f.name).symlink_to(f.resolve())
    return folder


def train_and_score(data: Path, run: Path, iterations: int, seed: int, over: dict, init_from: str = "") -> dict:
    if run.exists():
        shutil.rmtree(run)
    cfg = Config(data=str(data), out=str(run), iterations=iterations, seed=seed, device="cpu",
                 checkpoint_every=iterations, init_from=init_from, **over)
    t0 = time.perf_counter()
    model = Trainer(cfg, load_dataset(data), show_bar=False).run()
    seconds = time.perf_counter() - t0
    predict_paths(model, data / "imagesTs", run / "pred", device="cpu", overwrite=True)
    summary = evaluate_paths(run / "pred", data / "labelsTs", data / "dataset.json", quiet=True)["summary"]
    return {"dice": summary["mean"]["dice"], "seconds": round(seconds, 1), "iterations": iterations}


def backfill_class_volumes(run: Path, data: Path) -> bool:
    """Add ``class_volumes_ml`` to a model written before the trainer recorded it (``--reuse``): the same function
    over the same labeled cases that the trainer now calls. Returns whether the model was changed."""
    bundle = torch.load(run / "model.pt", weights_only=True)
    if "class_volumes_ml" in bundle:
        return False
    ds = load_dataset(data)
    bundle["class_volumes_ml"] = class_volumes_ml(ds.labels, [(c.label, c.geometry.spacing) for c in ds.labeled])
    torch.save(bundle, run / "model.pt")
    info = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**info, "class_volumes_ml": bundle["class_volumes_ml"]}, indent=2))
    return True


def one_seed(seed: int, a: argparse.Namespace, over: dict, previous: dict | None) -> dict:
    work = a.work / f"seed{seed}"
    pool = work / "pool"
    if pool.exists():
        shutil.rmtree(pool)
    hard = make_pool(pool, a.cases, a.test_cases, a.hard, seed, a.hard_kind)  # deterministic per seed: the same pool again
    names = sorted(case_name(p) for p in (pool / "imagesTr").iterdir())
    base2, base3 = names[:2], names[:3]
    out: dict = {"hard": hard}
    data2 = assemble(pool, work / "data2", base2)
    data3 = assemble(pool, work / "data3", base3)
    if previous and "parent" in previous:
        out.update({k: previous[k] for k in ("parent", "scratch", "continue")})  # part A as measured before
    elif not a.ranking_only:
        parent = work / "runs" / "parent"
        out["parent"] = train_and_score(data2, parent, a.parent_iterations, seed, over)
        out["scratch"] = [train_and_score(data3, work / "runs" / f"scratch{k}", k, seed, over) for k in a.scratch]
        out["continue"] = [train_and_score(data3, work / "runs" / f"continue{k}", k, seed, over, str(parent))
                           for k in a.continue_]
    ranker = work / "runs" / f"scratch{max(a.scratch)}"
    if not (a.reuse and (ranker / "model.pt").exists()) and "scratch" not in out:
        out["ranker"] = train_and_score(data3, ranker, max(a.scratch), seed, over)
    out["class_volumes_backfilled"] = backfill_class_volumes(ranker, data3)
    unlabeled = [n for n in names if n not in base3]
    staging = work / "unlabeled"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for f in (pool / "imagesTr").iterdir():
        if case_name(f) in unlabeled:
            (staging / f.name).symlink_to(f.resolve())
    ranking = rank_images(ranker, staging, "cpu")
    out["ranking"] = ranking
    by_entropy = sorted(ranking, key=lambda row: (-row["entropy"], row["case"]))
    out["hard_in_top"] = len({row["case"] for row in ranking[: len(hard)]} & set(hard))
    out["hard_in_top_entropy_only"] = len({row["case"] for row in by_entropy[: len(hard)]} & set(hard))
    first = ranking[0]["case"]
    rng = np.random.default_rng(1000 + seed)
    random = str(rng.choice([n for n in unlabeled if n != first]))
    out["next"] = {}
    for label, case in (("top", first), ("random", random)):
        data = assemble(pool, work / f"data_{label}", base3 + [case])
        out["next"][label] = {"case": case, **train_and_score(data, work / "runs" / f"next_{label}",
                                                              a.next_iterations, seed, over, str(ranker))}
    return out


def write_table(results: dict, a: argparse.Namespace) -> None:
    seeds = [s for s in a.seeds if f"seed{s}" in results]
    rows = [results[f"seed{s}"] for s in seeds]
    seeds_a = [s for s in seeds if "parent" in results[f"seed{s}"]]
    rows_a = [results[f"seed{s}"] for s in seeds_a]
    mean = lambda xs: statistics.mean(xs)  # noqa: E731
    lines = [f"# Labeling loop on cardiac phantoms ({a.cases} training + {a.test_cases} test cases, {a.hard} hard: "
             f"{a.hard_kind})",
             "", f"Method `{a.method}`, settings {a.set or 'default'}, seeds {seeds}; test Dice = mean foreground Dice "
             "over the test cases (missed structures score 0). Command: `python benchmarks/labeling_loop.py "
             f"--seeds {' '.join(map(str, seeds))} --method {a.method} --parent-iterations {a.parent_iterations} "
             f"--scratch {' '.join(map(str, a.scratch))} --continue {' '.join(map(str, a.continue_))} "
             f"--next-iterations {a.next_iterations} --hard-kind {a.hard_kind}"
             + (f" --set {' '.join(a.set)}" if a.set else "")
             + (" --reuse" if a.reuse else "") + (f" --previous {a.previous}" if a.previous else "") + (" --ranking-only" if a.ranking_only else "") + "`.", ""]
    if rows_a:
        lines += [f"## A. Continue from the 2-label model vs train from scratch, 3 labeled cases (seeds {seeds_a})", "",
                  "| run | iterations | test Dice (mean) | per seed |", "|---|---|---|---|",
                  f"| parent (2 labeled) | {a.parent_iterations} | {mean([r['parent']['dice'] for r in rows_a]):.4f} | "
                  + ", ".join(f"{r['parent']['dice']:.3f}" for r in rows_a) + " |"]
        for kind in ("scratch", "continue"):
            for i, k in enumerate(a.scratch if kind == "scratch" else a.continue_):
                vals = [r[kind][i]["dice"] for r in rows_a]
                lines.append(f"| {kind} | {k} | {mean(vals):.4f} | " + ", ".join(f"{v:.3f}" for v in vals) + " |")
        lines.append("")
    chance = a.hard * a.hard / (a.cases - 3)
    lines += [f"## B. Ranking and what to label next (seeds {seeds})", "",
              f"Hard volumes among the top {a.hard} of the ranking, per seed (a random ranking puts {chance:.2f} "
              "there on average):", "",
              "- score (entropy + volume terms): " + ", ".join(f"{r['hard_in_top']}/{a.hard}" for r in rows)
              + f"; total {sum(r['hard_in_top'] for r in rows)}/{a.hard * len(rows)}",
              "- entropy term alone (the previous score), same models: "
              + ", ".join(f"{r['hard_in_top_entropy_only']}/{a.hard}" for r in rows)
              + f"; total {sum(r['hard_in_top_entropy_only'] for r in rows)}/{a.hard * len(rows)}", "",
              f"| next labeled volume | test Dice after {a.next_iterations} more iterations (mean) | per seed |",
              "|---|---|---|"]
    for label in ("top", "random"):
        vals = [r["next"][label]["dice"] for r in rows]
        lines.append(f"| {label}-ranked | {mean(vals):.4f} | " + ", ".join(f"{v:.3f} ({r['next'][label]['case']})"
                                                                     for v, r in zip(vals, rows)) + " |")
    diffs = [r["next"]["top"]["dice"] - r["next"]["random"]["dice"] for r in rows]
    lines += ["", f"Paired difference top - random per seed: {', '.join(f'{d:+.3f}' for d in diffs)}; mean "
              f"{mean(diffs):+.4f}" + (f", sd {statistics.stdev(diffs):.4f}" if len(diffs) > 1 else " (one seed)")
              + f"; top better on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds."]
    if any(r.get("class_volumes_backfilled") for r in rows):
        lines += ["", "Rankers trained before `class_volumes_ml` was recorded had it added from the same labeled "
                  "cases by the trainer's own function (`--reuse`; seeds "
                  + ", ".join(str(s) for s, r in zip(seeds, rows) if r.get("class_volumes_backfilled")) + ")."]
    (a.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="phantoms and run folders")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--method", default="mean-teacher")
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--test-cases", type=int, default=4)
    ap.add_argument("--hard", type=int, default=2)
    ap.add_argument("--hard-kind", choices=["noise", "bias"], default="noise", help="how hard cases are made harder")
    ap.add_argument("--parent-iterations", type=int, default=300)
    ap.add_argument("--scratch", type=int, nargs="+", default=[100, 200, 300])
    ap.add_argument("--continue", dest="continue_", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--next-iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep part A from --previous and the rankers already in --work; redo the ranking and part B")
    ap.add_argument("--previous", type=Path, help="an earlier results.json whose part A (per seed) is kept")
    ap.add_argument("--ranking-only", action="store_true", help="seeds without part A: train the ranker, then part B")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    over = {"method": a.method, **{k: json.loads(v) if v[:1] in "[{0123456789-" or v in ("true", "false") else v
                                   for k, v in (kv.split("=", 1) for kv in a.set)}}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    previous = json.loads(a.previous.read_text()) if a.previous else {}
    for seed in a.seeds:
        if f"seed{seed}" not in results:
            results[f"seed{seed}"] = one_seed(seed, a, over, previous.get(f"seed{seed}") if a.reuse else None)
            path.write_text(json.dumps(results, indent=2) + "\n")
    write_table(results, a)


if __name__ == "__main__":
    main()
