"""Continue training from a trained model (``actionpp train --init-from RUN_OR_MODEL``).

The student and the teacher start from the parent model's weights. Classes are matched by name: the parent's classes
must all be in the new dataset (same names; their label values may differ), and the new dataset may add classes.
The class-indexed parameters (the rows of the segmentation output layer) are found by building the network for two
class counts and comparing parameter shapes; each kept class's rows are copied to its new index, an added class keeps
its fresh initialisation ("a new head row"). Every other parameter must have the same shape: the network settings
(``--network``, ``--dims``, ``--channels``, ``--embed-dim``) must be the parent's.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from actionpp import checkpoint
from actionpp.config import Config
from actionpp.nets import Model

MODEL_FORMAT = "actionpp-model/1"


def parent_model_path(path: str | Path) -> Path:
    """``RUN/model.pt`` for a run folder, else the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_parent(path: str | Path) -> dict:
    """The parent's model bundle (weights loaded with ``weights_only=True``); one-line errors naming the path."""
    file = parent_model_path(path)
    if not file.is_file():
        raise ValueError(f"--init-from {path}: expected a finished run folder or its model.pt, found no model.pt")
    bundle = checkpoint.load(file)
    if bundle.get("format") != MODEL_FORMAT:
        raise ValueError(f"--init-from {file}: expected an ActionPP model ({MODEL_FORMAT}), "
                         f"found format {bundle.get('format')!r}")
    return bundle


def class_mapping(parent_labels: dict[str, int], labels: dict[str, int], source: str) -> dict[int, int]:
    """``{new value: parent value}`` for classes present in both, matched by name (case-insensitive)."""
    new = {name.casefold(): value for name, value in labels.items()}
    missing = [name for name in parent_labels if name.casefold() not in new]
    if missing:
        raise ValueError(f"--init-from {source}: the model's classes {sorted(parent_labels)} must all be in the "
                         f"dataset, found no {', '.join(repr(m) for m in missing)} among {sorted(labels)}")
    return {new[name.casefold()]: value for name, value in parent_labels.items()}


def class_indexed_keys(cfg: Config, in_channels: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """``{key: class dimensions}`` of the parameters and buffers whose shape changes with the class count (e.g.
    dimension 1 of a transposed output convolution's weight, dimensions 0 and 1 of a class-to-class convolution)."""
    with torch.device("meta"):
        a = Model(cfg, in_channels, num_classes).state_dict()
        b = Model(cfg, in_channels, num_classes + 1).state_dict()
    keys = {}
    for key in a:
        if a[key].shape != b[key].shape:
            keys[key] = tuple(d for d, (x, y) in enumerate(zip(a[key].shape, b[key].shape)) if x != y)
    return keys


def initialise_from(model: Model, cfg: Config, labels: dict[str, int], in_channels: int, source: str) -> list[str]:
    """Load the parent model of ``source`` into ``model`` (built for ``labels``); returns the added class names."""
    bundle = load_parent(source)
    parent_labels = {str(k): int(v) for k, v in bundle["labels"].items()}
    mapping = class_mapping(parent_labels, labels, source)
    keys = class_indexed_keys(cfg, in_channels, len(labels))
    own = model.state_dict()
    parent = bundle["state_dict"]
    if set(parent) != set(own):
        raise ValueError(f"--init-from {source}: the model's network differs from this run's (network "
                         f"{bundle['config'].get('network')!r}, dims {bundle['config'].get('dims')}); pass the same "
                         "--network/--dims/--channels")
    state = {}
    for key, target in own.items():
        value = parent[key]
        if key in keys:
            merged = target.clone()
            for pairs in itertools.product(mapping.items(), repeat=len(keys[key])):
                new_index, old_index = [slice(None)] * target.dim(), [slice(None)] * target.dim()
                for dim, (new_value, old_value) in zip(keys[key], pairs):
                    new_index[dim], old_index[dim] = new_value, old_value
                merged[tuple(new_index)] = value[tuple(old_index)]
            state[key] = merged
        elif value.shape != target.shape:
            raise ValueError(f"--init-from {source}: parameter {key} has shape {tuple(value.shape)} in the model and "
                             f"{tuple(target.shape)} here; pass the model's --network/--dims/--channels/--embed-dim")
        else:
            state[key] = value
    model.load_state_dict(state)
    known = {name.casefold() for name in parent_labels}
    return [name for name in labels if name.casefold() not in known]
