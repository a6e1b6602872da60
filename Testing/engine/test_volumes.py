"""--cache memory | disk | none | auto: the same batches and weights in every mode, a cache that stays in the run
folder and rebuilds itself, lazily read datasets, and the automatic choice."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from actionpp import checkpoint, memory
from actionpp.cli import main
from actionpp.config import Config, ConfigError
from actionpp.data.layout import load_dataset
from actionpp.data.loaders import IterationBatches, batch_loader
from actionpp.data.volumes import VolumeStore, resolve_cache
from actionpp.events import read_events
from actionpp.trainer import Trainer, train

from conftest import tiny_config


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from actionpp.data.phantoms import make_phantoms

    return make_phantoms("cardiac", 5, 2, tmp_path_factory.mktemp("cache") / "data", seed=0, test_cases=1,
                         size=(4, 32, 32))


def _weights(run) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "model.pt")["state_dict"]


def _losses(run) -> list[float]:
    return [e["loss"] for e in read_events(run / "events.jsonl") if e["event"] == "iter"]


@pytest.mark.parametrize("dims", [2, 3])
def test_memory_disk_and_none_train_the_same_weights(tmp_path, tiny_dataset, dims):
    runs, cached = {}, {}
    for mode in ("memory", "disk", "none"):
        cfg = tiny_config(tmp_path / mode, method="actionpp", dims=dims, iterations=3, cache=mode)
        trainer = Trainer(cfg, tiny_dataset, show_bar=False)  # the stores (and a disk cache) exist from here
        runs[mode] = tmp_path / mode / "run"
        cached[mode] = sorted(p.name for p in (runs[mode] / "cache").glob("*")) if mode == "disk" else None
        trainer.run()
    ref = _weights(runs["memory"])
    for mode in ("disk", "none"):
        assert _losses(runs[mode]) == pytest.approx(_losses(runs["memory"]), rel=1e-6, abs=1e-7)
        other = _weights(runs[mode])
        assert ref.keys() == other.keys() and all(torch.allclose(ref[k].float(), other[k].float(), atol=1e-6)
                                                  for k in ref)
    # 2 labeled images + labels, 3 unlabeled images; nothing cached in memory or none mode
    assert len(cached["disk"]) == 7 and sum(n.endswith("-label.npy") for n in cached["disk"]) == 2
    assert not any((runs[m] / "cache").exists() for m in runs)  # a finished run leaves no cache behind
    done = [e for e in read_events(runs["disk"] / "events.jsonl") if e["event"] == "done"][-1]
    assert done["cache_freed_bytes"] > 0
    assert json.loads((runs["disk"] / "config.json").read_text())["cache"] == "disk"


def test_disk_cache_lies_in_the_run_folder_and_dataset_is_untouched(tmp_path, phantoms):
    before = sorted(p.relative_to(phantoms) for p in phantoms.rglob("*"))
    out = tmp_path / "run"
    assert main(["train", str(phantoms), "--out", str(out), "--method", "mean-teacher", "--iterations", "2",
                 "--patch", "32", "32", "--channels", "8", "16", "--batch-labeled", "1", "--batch-unlabeled", "1",
                 "--device", "cpu", "--quiet", "--cache", "disk", "--workers", "1"]) == 0
    assert sorted(p.relative_to(phantoms) for p in phantoms.rglob("*")) == before
    start = [e for e in read_events(out / "events.jsonl") if e["event"] == "start"][-1]
    done = [e for e in read_events(out / "events.jsonl") if e["event"] == "done"][-1]
    assert start["cache"] == "disk"
    # 5 training images (32 x 32 x 4 float32) and 2 labels (uint8), each with a .npy header, removed at the end
    voxels = 5 * 4 * 32 * 32 * 4 + 2 * 4 * 32 * 32
    assert voxels < done["cache_freed_bytes"] < voxels + 7 * 256
    assert not (out / "cache").exists()


@pytest.mark.parametrize("dims", [2, 3])
def test_workers_read_the_memory_mapped_cache_and_give_the_same_batches(tmp_path, tiny_dataset, dims):
    cfg = tiny_config(tmp_path, dims=dims)  # 3D: mapped labels and CropIndices in the worker processes
    held = IterationBatches(cfg, tiny_dataset.labeled, tiny_dataset.unlabeled)
    disk = IterationBatches(cfg, VolumeStore(tiny_dataset.labeled, "disk", tmp_path / "c"),
                            VolumeStore(tiny_dataset.unlabeled, "disk", tmp_path / "c", with_labels=False))
    inline = list(batch_loader(held, 0, 3, workers=0))
    forked = list(batch_loader(disk, 0, 3, workers=2))
    assert all(torch.equal(p[k], q[k]) for p, q in zip(inline, forked) for k in p)
    assert not disk.labeled._held and not disk.unlabeled._held  # only file names travel to the workers


def test_a_bad_cache_value_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^--cache: expected one of auto, memory, disk, none, got 'ram'$"):
        Config(cache="ram")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--cache", "ram"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cache" in err and "'ram'" in err


def test_auto_picks_disk_when_memory_is_short(tmp_path, tiny_dataset, monkeypatch):
    cases = tiny_dataset.labeled + tiny_dataset.unlabeled
    assert resolve_cache("auto", cases, available=2**40)[0] == "memory"
    assert resolve_cache("auto", cases, available=1000)[0] == "disk"
    assert resolve_cache("none", cases, available=1000)[0] == "none"
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10_000)
    cfg = tiny_config(tmp_path, iterations=1, memory_check=False)
    assert cfg.cache == "auto"
    Trainer(cfg, tiny_dataset, show_bar=False).run()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["cache"] == "disk"
    assert [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "done"][-1]["cache_freed_bytes"]
    start = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "start"][-1]
    assert start["cache"] == "disk" and "auto" in start["cache_reason"]


def test_a_released_dataset_holds_no_voxels_and_reads_the_same(phantoms):
    held, lazy = load_dataset(phantoms), load_dataset(phantoms, hold=False)
    assert all(c.held for c in held.labeled + held.unlabeled)
    assert not any(c.held for c in lazy.labeled + lazy.unlabeled + lazy.test)
    for a, b in zip(held.labeled + held.unlabeled + held.test, lazy.labeled + lazy.unlabeled + lazy.test):
        assert a.name == b.name and a.shape == b.shape and a.labeled == b.labeled
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.label is None) == (b.label is None)
        if a.label is not None:
            np.testing.assert_array_equal(a.label, b.label)


def test_partial_or_stale_cache_files_are_rewritten(tmp_path, phantoms):
    ds = load_dataset(phantoms, hold=False)
    folder = tmp_path / "cache"
    store = VolumeStore(ds.labeled, "disk", folder)
    image_file, label_file = store._files[0]
    want_image, want_label = (np.array(a) for a in store.take(0))  # copies: a 3D take maps the file itself
    image_file.write_bytes(image_file.read_bytes()[:200])  # truncated (as a crash mid-write without the rename)
    np.save(label_file, np.zeros((2, 2), np.uint8))  # wrong shape
    store = VolumeStore(ds.labeled, "disk", folder)
    image, label = store.take(0)
    np.testing.assert_array_equal(image, want_image)
    np.testing.assert_array_equal(label, want_label)
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
    source = ds.labeled[0].image_path
    st = os.stat(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the source changed: a new cache file
    assert VolumeStore(ds.labeled, "disk", folder)._files[0][0] != image_file


def test_a_disk_run_resumes_from_a_damaged_cache_as_a_memory_run_would(tmp_path, phantoms):
    common = ["--method", "mean-teacher", "--patch", "32", "32", "--channels", "8", "16", "--batch-labeled", "1",
              "--batch-unlabeled", "1", "--device", "cpu", "--quiet", "--checkpoint-every", "2", "--seed", "5"]
    full = tmp_path / "full"
    assert main(["train", str(phantoms), "--out", str(full), "--iterations", "4", "--cache", "memory", *common]) == 0
    part = tmp_path / "part"
    cfg = Config.from_dict({**json.loads((full / "config.json").read_text()), "out": str(part), "cache": "disk"})

    class Stop(Trainer):
        def train_step(self, batch, it):
            if it == 2:
                raise KeyboardInterrupt
            return super().train_step(batch, it)

    with pytest.raises(KeyboardInterrupt):
        Stop(cfg, show_bar=False).run()
    damaged = sorted((part / "cache").glob("*.npy"))
    for f in damaged:  # a damaged cache is rebuilt on resume
        f.write_bytes(b"")
    assert damaged  # the stopped run kept its cache for the resume
    train(cfg, resume=True, show_bar=False)  # an unreadable cache file would fail the first draw
    assert not (part / "cache").exists()
    done = [e for e in read_events(part / "events.jsonl") if e["event"] == "done"][-1]
    assert done["cache_freed_bytes"] > 128 * len(damaged)  # the emptied files were rewritten whole before removal
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "config.json").read_text())["cache"] == "disk"


def test_a_run_prunes_cache_files_no_current_case_uses(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path, iterations=1, cache="disk")
    folder = tmp_path / "run" / "cache"
    folder.mkdir(parents=True)
    stale = folder / "case_0-0123456789abcdef.npy"  # an earlier source of a case
    np.save(stale, np.zeros((2, 2), np.float32))
    writing = folder / ".case_1-fedcba9876543210.npy.x1.tmp"  # another rank's file being written
    writing.write_bytes(b"partial")
    notes = folder / "README.txt"  # not a cache file
    notes.write_text("mine")
    trainer = Trainer(cfg, tiny_dataset, show_bar=False)
    left = {p.name for p in folder.iterdir()}
    assert stale.name not in left and {writing.name, notes.name} <= left
    assert {f.name for f in trainer.cache_files} <= left and len(trainer.cache_files) == 7
    trainer.run()  # at the end only the cache's own files go; the folder stays while it holds other files
    assert {p.name for p in folder.iterdir()} == {writing.name, notes.name}


@pytest.mark.parametrize("dims", [2, 3])
def test_labels_stay_in_their_stored_dtype_until_the_patch_is_cut(tmp_path, phantoms, dims):
    class Widened(VolumeStore):  # the label volume widened to int64 before cropping, as the sampler once did
        def take(self, i, z=None):
            image, label = super().take(i, z)
            return image, None if label is None else label.astype(np.int64)

    ds = load_dataset(phantoms)
    store = VolumeStore(ds.labeled, "memory")
    assert store.take(0)[1].dtype == ds.labeled[0].label.dtype == np.uint8  # no whole-volume int64 copy
    assert VolumeStore(ds.labeled, "disk", tmp_path / "c").take(0, 1)[1].dtype == np.uint8
    cfg = tiny_config(tmp_path, dims=dims, batch_labeled=3)
    narrow = IterationBatches(cfg, store, ds.unlabeled)
    wide = IterationBatches(cfg, Widened(ds.labeled, "memory"), ds.unlabeled)
    for it in range(3):  # the same crops (3D: MONAI's foreground/background crop), flips and values
        a, b = narrow[it], wide[it]
        assert a["l_label"].dtype == torch.int64 and all(torch.equal(a[k], b[k]) for k in a)


def test_a_3d_disk_draw_maps_the_cache_file_instead_of_copying_it(tmp_path, phantoms):
    ds = load_dataset(phantoms)
    store = VolumeStore(ds.labeled, "disk", tmp_path / "c")
    image, label = store.take(0)  # 3D: the crop reads only the patch's pages of this map
    assert isinstance(image, np.memmap) and image.flags.writeable  # copy-on-write: torch shares it, no warning
    assert isinstance(label, np.memmap) and label.flags.writeable and label.dtype == np.uint8  # the label too
    before = int(label[0, 0, 0])
    image[0, 0, 0], label[0, 0, 0] = 1e6, before + 1  # writes stay private: the cache files are unchanged
    again = store.take(0)
    assert again[0][0, 0, 0] != 1e6 and int(again[1][0, 0, 0]) == before
    sliced, lab = store.take(0, 1)  # 2D: one slice copied out
    assert not isinstance(sliced, np.memmap) and sliced.flags.owndata and sliced.shape == image.shape[1:]
    assert not isinstance(lab, np.memmap) and lab.flags.owndata and lab.shape == label.shape[1:]
