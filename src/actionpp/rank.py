"""Which volume to label next: how unsure a trained model is about each one (``actionpp rank``), and the voxel-wise
uncertainty map that ``actionpp predict --uncertainty`` writes.

Per voxel, the normalised entropy of the class probabilities ``p`` (``C`` classes, background included)::

    u = -sum_c p_c log p_c / log C        in [0, 1]: 0 = one class certain, 1 = all classes equally likely

Entropy alone misses the cases a model gets *confidently* wrong, the ones worth labeling most: on an image unlike its
training data a model often calls a structure background with high confidence (low entropy, a missed structure).
So the score has two terms, each in [0, 1]:

- ``entropy``: the mean ``u`` over the voxels the model does not confidently call background (``p_background <
  0.95``: the predicted structures and their uncertain rims), so that it does not shrink with the amount of
  background in the field of view; 0 where no voxel qualifies.
- ``volume``: how far each structure's soft volume ``v_c = sum_voxels p_c * voxel volume`` (mL) lies from the
  median ``m_c`` over the labeled training cases (``class_volumes_ml`` in ``model.json``, written by the trainer)::

      d_c = | ln((v_c + 0.05 m_c) / (1.05 m_c)) |        volume_c = 1 - exp(-d_c)

  averaged over the foreground classes: 0 at the median, 0.5 at half or double it, 0.95 for a structure missed
  entirely (``ln 21``). Physical volumes (not voxel counts) keep it independent of spacing and field of view.

``score = (entropy + volume) / 2``; for models without ``class_volumes_ml`` (written before it existed)
``score = entropy``. Volumes are ranked highest score first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

FOREGROUND_BELOW = 0.95
"""A voxel counts towards the entropy term when its background probability is below this."""
MISS_FLOOR = 0.05
"""Added to both volumes, as a fraction of the median, so that a missed structure scores a finite ``ln 21``."""


def entropy_map(probs: torch.Tensor) -> np.ndarray:
    """Normalised entropy ``Z, Y, X`` (float32 in [0, 1]) of probabilities ``C, Z, Y, X``."""
    p = probs.float()
    u = -torch.xlogy(p, p).sum(0) / math.log(probs.shape[0])  # 0 log 0 = 0
    return u.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def entropy_score(probs: torch.Tensor, background: int = 0) -> tuple[float, int]:
    """``(entropy term, voxels scored)`` of one volume's probabilities ``C, Z, Y, X`` (see the module docstring)."""
    mask = (probs[background] < FOREGROUND_BELOW).cpu().numpy()
    count = int(mask.sum())
    return (float(entropy_map(probs)[mask].mean()) if count else 0.0), count


def volume_term(probs: torch.Tensor, voxel_ml: float, expected: dict[str, float], labels: dict[str, int]) -> float:
    """Mean over the classes in ``expected`` (name -> median volume in mL) of ``1 - exp(-|ln((v + f m)/((1 + f) m))|)``,
    ``v`` the soft volume of that class in ``probs`` ``C, Z, Y, X`` (``labels``: name -> channel), ``f`` =
    :data:`MISS_FLOOR`. 0 when ``expected`` is empty."""
    terms = []
    for name, median in expected.items():
        if name not in labels or median <= 0:
            continue
        v = float(probs[labels[name]].double().sum()) * voxel_ml
        terms.append(1.0 - math.exp(-abs(math.log((v + MISS_FLOOR * median) / ((1 + MISS_FLOOR) * median)))))
    return float(np.mean(terms)) if terms else 0.0


def class_volumes_ml(labels: dict[str, int], cases: list[tuple[np.ndarray, tuple[float, ...]]]) -> dict[str, dict]:
    """``{name: {"median", "min", "max", "cases"}}`` (mL) of each foreground class over labeled cases given as
    ``(label map Z, Y, X, spacing in mm)``; a case without a class counts as 0 mL. Empty without cases."""
    if not cases:
        return {}
    out = {}
    for name, value in labels.items():
        if value == 0:
            continue
        ml = [float(np.count_nonzero(label == value)) * float(np.prod(spacing)) / 1000.0 for label, spacing in cases]
        out[name] = {"median": float(np.median(ml)), "min": min(ml), "max": max(ml), "cases": len(ml)}
    return out


def volume_score(probs: torch.Tensor, background: int = 0, voxel_ml: float = 1.0,
                 expected: dict[str, float] | None = None, labels: dict[str, int] | None = None) -> dict:
    """``{"score", "entropy", "volume", "voxels"}`` of one volume's probabilities ``C, Z, Y, X``; ``volume`` is None
    (and ``score`` the entropy term) without ``expected`` median class volumes (see the module docstring)."""
    entropy, count = entropy_score(probs, background)
    volume = volume_term(probs, voxel_ml, expected, labels or {}) if expected else None
    score = entropy if volume is None else (entropy + volume) / 2
    return {"score": score, "entropy": entropy, "volume": volume, "voxels": count}


def rank_images(model: str | Path, images: str | Path, device: str = "cpu") -> list[dict]:
    """``[{"case", "score", "entropy", "volume", "voxels"}]`` for every image of a file or folder, highest score
    first (rounded to 6 decimals; ``volume`` is null for models without ``class_volumes_ml``)."""
    from actionpp.data.io import read_image
    from actionpp.data.layout import case_name, find_images
    from actionpp.inference import Predictor
    from actionpp.methods import resolve_device

    predictor = Predictor.load(model, resolve_device(device))
    background = predictor.labels.get("background", 0)
    expected = {name: row["median"] for name, row in predictor.class_volumes.items()}
    ranking = []
    for path in find_images(images):
        image, geometry = read_image(path)
        row = volume_score(predictor.predict_probs(image), background, float(np.prod(geometry.spacing)) / 1000.0,
                           expected, predictor.labels)
        ranking.append({"case": case_name(path), **{k: v if k == "voxels" or v is None else round(v, 6)
                                                     for k, v in row.items()}})
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
    """The ranking as a text table: rank, case, score, its two terms, voxels scored."""
    width = max([len("case")] + [len(row["case"]) for row in ranking])
    term = lambda v: "      -" if v is None else f"{v:>7.4f}"  # noqa: E731
    lines = [f"{'rank':>4}  {'case':<{width}}  {'score':>7}  {'entropy':>7}  {'volume':>7}  {'voxels':>8}"]
    lines += [f"{i:>4}  {row['case']:<{width}}  {row['score']:>7.4f}  {term(row.get('entropy'))}  "
              f"{term(row.get('volume'))}  {row['voxels']:>8}" for i, row in enumerate(ranking, start=1)]
    return "\n".join(lines)
