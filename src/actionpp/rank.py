"""Which volume to label next: how unsure a trained model is about each one (``actionpp rank``), and the voxel-wise
uncertainty map that ``actionpp predict --uncertainty`` writes.

Per voxel, the normalised entropy of the class probabilities ``p`` (``C`` classes, background included)::

    u = -sum_c p_c log p_c / log C        in [0, 1]: 0 = one class certain, 1 = all classes equally likely

Per volume, the score is the mean ``u`` over the voxels the model does not confidently call background
(``p_background < 0.95``: the predicted structures and their uncertain rims), so that the score does not shrink with
the amount of background in the field of view. A volume where no voxel qualifies scores 0: the model sees nothing to
segment there. Volumes are ranked most uncertain first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

FOREGROUND_BELOW = 0.95
"""A voxel counts towards the score when its background probability is below this."""


def entropy_map(probs: torch.Tensor) -> np.ndarray:
    """Normalised entropy ``Z, Y, X`` (float32 in [0, 1]) of probabilities ``C, Z, Y, X``."""
    p = probs.float()
    u = -torch.xlogy(p, p).sum(0) / math.log(probs.shape[0])  # 0 log 0 = 0
    return u.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def volume_score(probs: torch.Tensor, background: int = 0) -> tuple[float, int]:
    """``(score, voxels scored)`` of one volume's probabilities ``C, Z, Y, X`` (see the module docstring)."""
    mask = (probs[background] < FOREGROUND_BELOW).cpu().numpy()
    count = int(mask.sum())
    return (float(entropy_map(probs)[mask].mean()) if count else 0.0), count


def rank_images(model: str | Path, images: str | Path, device: str = "cpu") -> list[dict]:
    """``[{"case", "score", "voxels"}]`` for every image of a file or folder, most uncertain first."""
    from actionpp.data.io import read_image
    from actionpp.data.layout import case_name, find_images
    from actionpp.inference import Predictor
    from actionpp.methods import resolve_device

    predictor = Predictor.load(model, resolve_device(device))
    background = predictor.labels.get("background", 0)
    ranking = []
    for path in find_images(images):
        image, _ = read_image(path)
        score, voxels = volume_score(predictor.predict_probs(image), background)
        ranking.append({"case": case_name(path), "score": round(score, 6), "voxels": voxels})
    ranking.sort(key=lambda row: (-row["score"], row["case"]))
    return ranking


def write_ranking(ranking: list[dict], out: str | Path) -> Path:
    """Write the ranking as a JSON list (strict JSON); refuses to replace an existing file."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: output exists; expected a new path")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ranking, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return out


def format_table(ranking: list[dict]) -> str:
    """The ranking as a text table: rank, case, score, voxels scored."""
    width = max([len("case")] + [len(row["case"]) for row in ranking])
    lines = [f"{'rank':>4}  {'case':<{width}}  {'score':>7}  {'voxels':>8}"]
    lines += [f"{i:>4}  {row['case']:<{width}}  {row['score']:>7.4f}  {row['voxels']:>8}"
              for i, row in enumerate(ranking, start=1)]
    return "\n".join(lines)
