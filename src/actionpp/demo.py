"""``actionpp demo``: one set of phantoms, trained once per method (by default supervised and ACTION++, same data, seed
and budget), every test case predicted and scored, and ``report.md`` with the two side by side: mean and per-class
Dice, HD95, missed structures, the per-case Dice difference, and one overlay PNG (image, truth, each method) of the
same test slice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from actionpp.config import Config
from actionpp.data.io import DataError, read_image
from actionpp.data.phantoms import make_phantoms
from actionpp.evaluate import evaluate_paths
from actionpp.inference import predict_paths
from actionpp.metrics import format_table
from actionpp.trainer import train

DEFAULT_METHODS = ("supervised", "actionpp")


def overlay_png(image_path: Path, gt_path: Path, preds: dict[str, Path], out: Path, labels: dict[str, int]) -> Path:
    """One slice of a case (the one with the most foreground in the truth): image, ground truth, then each
    prediction of ``preds`` (title -> label file) over the image, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    image, geo = read_image(image_path)
    gt, _ = read_image(gt_path, kind="label")
    z = int(np.argmax((gt > 0).sum(axis=(1, 2))))
    n = max(labels.values()) + 1
    colours = ListedColormap([(0, 0, 0, 0)] + list(plt.get_cmap("tab10").colors[:n - 1]))
    aspect = geo.spacing[1] / geo.spacing[0]
    panels = [("image", None), ("ground truth", gt)] + [(t, read_image(p, kind="label")[0]) for t, p in preds.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.8))
    for ax, (title, lab) in zip(axes, panels):
        ax.imshow(image[z], cmap="gray", aspect=aspect)
        if lab is not None:
            ax.imshow(lab[z], cmap=colours, vmin=0, vmax=n - 1, alpha=0.5, interpolation="nearest", aspect=aspect)
        ax.set_title(title)
        ax.axis("off")
    names = [k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if v]
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours(i + 1)) for i in range(len(names))],
               labels=names, loc="lower center", ncol=len(names))
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _case_dice(result: dict) -> dict[str, float]:
    """Mean foreground Dice per test case (a missed structure scores 0)."""
    return {case: float(np.mean([m["dice"] for c, m in classes.items()]))
            for case, classes in result["per_case"].items()}


def run_demo(out: Path, methods: tuple[str, ...] = DEFAULT_METHODS, iterations: int = 250, device: str = "auto",
             cases: int = 8, labeled: int = 2, size: tuple[int, int, int] = (10, 96, 96), **overrides) -> Path:
    """Run the whole pipeline on cardiac phantoms in a new folder ``out`` for each of ``methods``; returns the path
    of ``report.md``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"--out {out}: folder exists and is not empty; expected a new demo folder")
    if not methods or len(set(methods)) != len(methods):
        raise DataError(f"--methods: expected one or more different methods, found {list(methods)}")
    t0 = time.perf_counter()
    # 96 x 96 slices (2 mm pixels) keep a CPU run to a few minutes; the full-size phantoms are 128 x 128
    data = make_phantoms("cardiac", cases, labeled, out / "data", seed=0, test_cases=4, size=size)
    # no pre-training stage: it adds 25 % to the run and was not shown to help at demo budgets (benchmarks/README.md)
    overrides.setdefault("pretrain_iterations", 0)
    labels = json.loads((data / "dataset.json").read_text())["labels"]
    seconds = {"phantoms": time.perf_counter() - t0}
    results, predictions = {}, {}
    for method in methods:
        t1 = time.perf_counter()
        cfg = Config(data=str(data), out=str(out / "runs" / method), method=method, iterations=iterations,
                     device=device, patch=tuple(size[1:]), checkpoint_every=max(1, iterations // 4), **overrides)
        model = train(cfg)
        seconds[f"train {method}"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        predictions[method] = predict_paths(model, data / "imagesTs", out / "predictions" / method, device=device)
        results[method] = evaluate_paths(out / "predictions" / method, data / "labelsTs", data / "dataset.json",
                                         out / f"metrics_{method}.json", quiet=True)
        seconds[f"predict + evaluate {method}"] = time.perf_counter() - t2
    first = sorted(predictions[methods[0]])[0]
    image = next((data / "imagesTs").glob(first.name.replace(".nii.gz", "") + "_0000*"))
    overlay_png(image, data / "labelsTs" / first.name, {m: out / "predictions" / m / first.name for m in methods},
                out / "overlay.png", labels)
    report = out / "report.md"
    report.write_text(_report(methods, results, seconds, cases, labeled, iterations, device, first.name,
                              time.perf_counter() - t0))
    for method in methods:
        print(f"{method}:\n{format_table(results[method]['summary'])}")
    return report


def _report(methods, results, seconds, cases, labeled, iterations, device, shown, total) -> str:
    classes = [c for c in results[methods[0]]["summary"] if c != "mean"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# ActionPP demo", "",
             f"Synthetic cardiac phantoms: {cases} training cases ({labeled} labeled, {cases - labeled} unlabeled), "
             f"4 labeled test cases. Each method trains {iterations} iterations in 2D from the same seed on the same "
             f"data, device `{device}`; total {total:.0f} s.", "",
             "| method | mean fg Dice | " + " | ".join(classes) + " | HD95 mm | missed |",
             "|---|---|" + "---|" * len(classes) + "---|---|"]
    for m in methods:
        s = results[m]["summary"]
        lines.append(f"| {m} | {fmt(s['mean']['dice'])} | " + " | ".join(fmt(s[c]["dice"]) for c in classes)
                     + f" | {fmt(s['mean']['hd95'])} | {s['mean']['missed']} |")
    if len(methods) > 1:
        base, per = methods[0], {m: _case_dice(results[m]) for m in methods}
        lines += ["", f"Per test case, mean foreground Dice minus `{base}` (one seed: a demonstration, not a study; "
                  "see benchmarks/ for paired multi-seed results):", "",
                  "| case | " + " | ".join(methods[1:]) + " |", "|---|" + "---|" * (len(methods) - 1)]
        for case in per[base]:
            lines.append(f"| {case} | " + " | ".join(f"{per[m][case] - per[base][case]:+.3f}" for m in methods[1:])
                         + " |")
    lines += ["", f"![overlay](overlay.png)  (test case `{shown}`: image, truth, " + ", ".join(methods) + ")", "",
              "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in seconds.items()]
    lines += ["", "Files: `runs/<method>/` (model.pt, events.jsonl, checkpoints), `predictions/<method>/`, "
              "`metrics_<method>.json`.", ""]
    return "\n".join(lines)
