"""Test Dice of the pre-training stage's student alone, for finished ACTION/ACTION++ runs (issue 9).

    python benchmarks/stage_only.py --data DATA --out OUT RUN [RUN ...]

Each RUN is a finished training folder with ``model.pt`` and ``checkpoints/pretrain.pt`` (the student at the end of
the contrastive pre-training stage, before fine-tuning). The run's model bundle gets the stage's weights in place of
the final ones (same network, labels and preprocessing), is written to ``OUT/<parent>_<run>/model.pt`` (a new
folder: an existing one is refused), predicts ``DATA/imagesTs`` and is scored against ``DATA/labelsTs`` with
``actionpp evaluate``'s metrics. Prints one JSON line per run and writes ``OUT/results.json`` and
``OUT/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_study import score  # noqa: E402


def stage_only(run: Path, data: Path, out: Path) -> dict:
    from actionpp import checkpoint

    stage, final = run / "checkpoints" / "pretrain.pt", run / "model.pt"
    for f in (stage, final):
        if not f.is_file():
            raise SystemExit(f"{f}: expected a file of a finished run with a pre-training stage, found none")
    if out.exists():
        raise SystemExit(f"{out}: output folder exists; expected a new path (nothing is overwritten)")
    bundle = checkpoint.load(final)
    bundle["state_dict"] = checkpoint.load(stage)["model"]
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_save(bundle, out / "model.pt")
    summary = score(out / "model.pt", data, out / "pred")
    return {"run": str(run), "stage_dice": summary["mean"]["dice"], "stage_hd95": summary["mean"]["hd95"],
            "stage_missed": summary["mean"]["missed"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the runs' dataset (imagesTs, labelsTs, dataset.json)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("runs", type=Path, nargs="+")
    argv = sys.argv[1:] if argv is None else argv
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    rows = []
    for run in a.runs:
        row = stage_only(run, a.data, a.out / f"{run.parent.name}_{run.name}")
        rows.append(row)
        print(json.dumps(row), flush=True)
    (a.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"# The pre-training stage's student alone on {a.data / 'imagesTs'}", "",
             f"Command: `python benchmarks/stage_only.py {' '.join(argv)}`",
             "", "| run | stage-only Dice | stage-only HD95 mm |", "|---|---|---|"]
    lines += [f"| {r['run']} | {r['stage_dice']:.3f} | {r['stage_hd95']:.1f} |" for r in rows]
    (a.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
