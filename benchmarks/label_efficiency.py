"""Label efficiency: test Dice against the number of labeled cases, per method, on both phantom kinds (issue 9).

    python benchmarks/label_efficiency.py --out benchmarks/results/label_efficiency --jobs 2      # CPU preset
    python benchmarks/label_efficiency.py --out /tmp/le --preset gpu --device cuda --jobs 16       # a lent GPU

For each kind (cardiac: 5 classes with a rare one, PAP; atrium: 1 class) one phantom set is made with ``max(labeled)``
labeled training cases, the other training cases unlabeled and a labeled test split; a run with N labeled cases
keeps the labels of the first N (``labeled_cases``), so every N sees the same images and the others are unlabeled.
Each (kind, N, seed) trains every arm (2D UNet; cardiac on 96 x 96 patches, atrium slices on 64 x 64; batch 4 + 4)
through ``paired_study.run_one`` and scores the test split with ``actionpp evaluate``'s metrics (a missed structure
counts: Dice 0 and the HD95 penalty). Runs go seed by seed, so a study stopped early still has whole seeds.

Outputs in OUT: ``results.json`` (every run; re-running skips the finished ones), ``results.md`` (means, the rare
class in its own column, and per-seed paired differences with a 95 % t-interval) and ``label_efficiency.png``
(mean foreground Dice against labeled cases, one panel per kind, bars = range over seeds). ``--combine DIR ...``
trains nothing and writes the same tables and plot over several finished studies (one per label count, say);
``--pair A:B`` adds the per-seed differences of two more arms to the paired table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_study import parse_arm, run_one, t_interval  # noqa: E402

ARMS = ["sup=supervised", "mt=mean-teacher", "action=action", "app=actionpp", "app_nopre=actionpp,pretrain_iterations=0"]
KIND_SETTINGS = {  # phantom kind -> (2D patch, phantom seed, generator options); seeds not used while tuning
    "cardiac": ([96, 96], 2026, {"spacing": (1.2, 7.0), "oblique": 20.0, "intensity": "alt"}),
    "atrium": ([64, 64], 2027, {}),
}
PRESETS = {"cpu": {"iterations": 200, "threads": 1}, "gpu": {"iterations": 1000, "threads": 1}}  # gpu: untimed yet
RARE = {"cardiac": "PAP"}


def make_data(kind: str, root: Path, labeled: int, cases: int, test_cases: int, size=None) -> Path:
    from actionpp.data.phantom_variants import Variant
    from actionpp.data.phantoms import make_phantoms

    data = root / f"data_{kind}"
    if not data.exists():
        _, seed, opts = KIND_SETTINGS[kind]
        variant = Variant(opts.get("spacing"), opts.get("oblique", 0.0), opts.get("intensity", "default"))
        make_phantoms(kind, cases, labeled, data, seed=seed, test_cases=test_cases, size=size,
                      variant=None if variant.is_default else variant)
    return data


def jobs_for(a, data: dict[str, Path]) -> list[dict]:
    arms = [parse_arm(t) for t in a.arm]
    out = []
    for seed in a.seeds:  # seed-major: an early stop leaves whole seeds
        for kind in a.kinds:
            for n in a.labeled:
                for name, method, over in arms:
                    o = {"patch": KIND_SETTINGS[kind][0], **over, "labeled_cases": n}
                    out.append({"arm": name, "method": method, "over": o, "seed": seed, "iterations": a.iterations,
                                "device": a.device, "threads": a.threads, "data": str(data[kind]),
                                "tags": {"kind": kind, "labeled": n},
                                "run": str(a.out / "runs" / kind / f"l{n}" / name / f"seed{seed}")})
    return out


def _interval(d: list[float]) -> str:
    mean, half = t_interval(d)
    return f"{mean:+.3f} (one seed)" if len(d) < 2 else f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def tables(results: list[dict], arms: list[str], title: str, extra: list[tuple[str, str]] = ()) -> str:
    """Per kind: a means table (rows labeled x arm) and the paired differences against the first arm and app-vs-mt,
    then each asked (first arm, second arm) pair in ``extra`` (``--pair``)."""
    lines = [title, ""]
    for kind in sorted({r["kind"] for r in results}):
        rs = [r for r in results if r["kind"] == kind]
        by = {(r["labeled"], r["arm"], r["seed"]): r for r in rs}
        counts = sorted({r["labeled"] for r in rs})
        rare = RARE.get(kind)
        lines += [f"## {kind}", "", "| labeled | arm | seeds | mean fg Dice | " + (f"{rare} Dice | " if rare else "")
                  + "HD95 mm | missed |", "|---" * (6 + bool(rare)) + "|"]
        for n in counts:
            for a in arms:
                rows = [r for (k, arm, _), r in by.items() if k == n and arm == a]
                if not rows:
                    continue
                m = lambda f: statistics.mean(f(r) for r in rows)  # noqa: E731
                lines.append(f"| {n} | {a} | {len(rows)} | {m(lambda r: r['mean_dice']):.3f} | "
                             + (f"{m(lambda r: r['dice'][rare]):.3f} | " if rare else "")
                             + f"{m(lambda r: r['mean_hd95']):.1f} | {sum(r['missed'] for r in rows)} |")
        present = {arm for (_, arm, _) in by}
        suffix = lambda name: name.rsplit("_", 1)[-1] if "_" in name else None  # noqa: E731 - "sup_1250" -> "1250"
        candidates = [(a, arms[0]) for a in arms[1:]] + [("app", "mt"), ("app", "sup_250")] + [
            (x, "app") for x in arms if x.startswith("app_")] + [  # and each step-count control's own pairs:
            (x, f"{ref}_{suffix(x)}") for ref in ("sup", "mt") for x in arms
            if suffix(x) and suffix(x).isdigit() and not x.startswith(("sup", ref))]
        candidates = [c for c in candidates if c[::-1] not in extra] + list(extra)  # an asked pair, as asked
        pairs = []
        for a, b in candidates:  # each pair once, in one direction
            if a in present and b in present and a != b and (a, b) not in pairs and (b, a) not in pairs:
                pairs.append((a, b))
        lines += ["", "Paired per seed, mean foreground Dice (and the rare class, last column): first arm minus second, "
                  "per-seed differences; mean and 95 % t-interval", "",
                  "| labeled | pair | per seed | mean [95 % CI] | " + (f"{rare} mean [95 % CI] |" if rare else ""),
                  "|---" * (4 + bool(rare)) + "|"]
        for n in counts:
            for a, b in pairs:
                seeds = sorted(s for (k, arm, s) in by if k == n and arm == a and (n, b, s) in by)
                if not seeds:
                    continue
                d = [by[(n, a, s)]["mean_dice"] - by[(n, b, s)]["mean_dice"] for s in seeds]
                row = f"| {n} | {a} - {b} | {', '.join(f'{x:+.3f}' for x in d)} | {_interval(d)} |"
                if rare:
                    row += f" {_interval([by[(n, a, s)]['dice'][rare] - by[(n, b, s)]['dice'][rare] for s in seeds])} |"
                lines.append(row)
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], arms: list[str], path: Path) -> None:
    """Mean foreground Dice against labeled cases, one panel per kind; bars span the seeds' min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["kind"] for r in results})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for i, a in enumerate(arms):
            xs, ys, lo, hi = [], [], [], []
            for n in sorted({r["labeled"] for r in results if r["kind"] == kind}):
                v = [r["mean_dice"] for r in results if r["kind"] == kind and r["arm"] == a and r["labeled"] == n]
                if v:
                    xs.append(n * (1 + 0.03 * (i - len(arms) / 2)))  # small offsets keep the bars apart
                    ys.append(statistics.mean(v))
                    lo.append(ys[-1] - min(v))
                    hi.append(max(v) - ys[-1])
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=a)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["labeled"] for r in results if r["kind"] == kind}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("labeled training cases")
        ax.set_ylabel("test mean foreground Dice")
        ax.set_title(kind)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="iterations and threads per run")
    ap.add_argument("--iterations", type=int, help="override the preset's iterations per run")
    ap.add_argument("--kinds", nargs="+", choices=sorted(KIND_SETTINGS), default=["cardiac", "atrium"])
    ap.add_argument("--labeled", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arm", action="append", help=f"NAME=METHOD[,KEY=VALUE...] (default: {' '.join(ARMS)})")
    ap.add_argument("--cases", type=int, default=14, help="training cases per kind (max(labeled) of them labeled)")
    ap.add_argument("--test-cases", type=int, default=6)
    ap.add_argument("--size", type=int, nargs=3, help="phantom size Z Y X (tests: tiny volumes)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel processes")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="DIR",
                    help="train nothing: tables and plot in --out over finished studies' results.json (for example "
                         "one study per label count), keeping only --seeds, --kinds and --labeled")
    ap.add_argument("--pair", action="append", default=[], metavar="A:B",
                    help="also tabulate arm A minus arm B per seed (repeatable; arms named as in --arm)")
    a = ap.parse_args(argv)
    a.arm = a.arm or ARMS
    a.iterations = a.iterations or PRESETS[a.preset]["iterations"]
    a.threads = PRESETS[a.preset]["threads"]
    if min(a.labeled) < 1 or max(a.labeled) >= a.cases:
        ap.error(f"--labeled: expected counts in [1, {a.cases - 1}] (--cases {a.cases}), got {a.labeled}")
    if a.combine and any(d.resolve() == a.out.resolve() for d in a.combine):
        ap.error(f"--out: expected a folder other than the --combine ones (its results.md would no longer match its "
                 f"results.json), found {a.out}")
    extra = []
    for text in a.pair:
        first, sep, second = text.partition(":")
        if not (sep and first and second and first != second):
            ap.error(f"--pair: expected A:B, two different arm names, found {text!r}")
        extra.append((first, second))
    a.out.mkdir(parents=True, exist_ok=True)
    if a.combine:
        results = combine(a.combine, a.seeds, a.kinds, a.labeled)
        arms = arm_order(results, a.arm)
        title = (f"# Label efficiency, combined from {', '.join(str(d) for d in a.combine)}: seeds "
                 f"{', '.join(map(str, a.seeds))}\n\nCommand: `python {' '.join(sys.argv)}`")
        write_outputs(results, arms, title, a.out, extra)
        return
    data = {k: make_data(k, a.out, max(a.labeled), a.cases, a.test_cases, a.size) for k in a.kinds}
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["kind"], r["labeled"], r["arm"], r["seed"]) for r in results}
    todo = [j for j in jobs_for(a, data)
            if (j["tags"]["kind"], j["tags"]["labeled"], j["arm"], j["seed"]) not in done]
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in pool.map(run_one, todo):
            results.append(r)
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps({k: r[k] for k in ("kind", "labeled", "arm", "seed", "mean_dice", "seconds")}),
                  flush=True)
    arms = arm_order(results, a.arm)
    settings = {k: {"patch": KIND_SETTINGS[k][0], "phantom_seed": KIND_SETTINGS[k][1], **KIND_SETTINGS[k][2]}
                for k in a.kinds}
    title = (f"# Label efficiency: {', '.join(arms)}; {a.iterations} iterations, 2D UNet, batch 4 + 4, device "
             f"{a.device}; {a.cases} training cases ({max(a.labeled)} with labels, the first N kept), "
             f"{a.test_cases} test cases\n\nPhantoms: {json.dumps(settings)}\n\n"
             f"Command: `python {' '.join(sys.argv)}`")
    write_outputs(results, arms, title, a.out, extra)


def arm_order(results: list[dict], specs: list[str]) -> list[str]:
    """Every arm in the results once: the default arms first, then ``--arm``'s, then any other in order of appearance
    (the first is the reference of the paired tables)."""
    names = [parse_arm(t)[0] for t in ARMS + specs] + [r["arm"] for r in results]
    return [n for n in dict.fromkeys(names) if any(r["arm"] == n for r in results)]


def write_outputs(results: list[dict], arms: list[str], title: str, out: Path, extra=()) -> None:
    (out / "results.md").write_text(tables(results, arms, title, extra))
    plot(results, arms, out / "label_efficiency.png")
    print((out / "results.md").read_text())


def combine(dirs: list[Path], seeds: list[int], kinds: list[str], labeled: list[int]) -> list[dict]:
    """The runs of several finished studies (``DIR/results.json`` each) with the given seeds, kinds and label counts.
    A run found in two of them is an error: which one the tables should use is the user's choice, not ours."""
    results, seen = [], {}
    for d in dirs:
        path = d / "results.json"
        if not path.is_file():
            raise SystemExit(f"--combine: expected {path} (a finished study's results), found no such file")
        for r in json.loads(path.read_text()):
            key = (r["kind"], r["labeled"], r["arm"], r["seed"])
            if r["seed"] not in seeds or r["kind"] not in kinds or r["labeled"] not in labeled:
                continue
            if key in seen:
                raise SystemExit(f"--combine: run {key} is in both {seen[key]} and {path}; expected each run once")
            seen[key] = path
            results.append(r)
    if not results:
        raise SystemExit(f"--combine: expected runs with seeds {seeds}, kinds {kinds} and labeled {labeled} in "
                         f"{', '.join(map(str, dirs))}, found none")
    return results


if __name__ == "__main__":
    main()
