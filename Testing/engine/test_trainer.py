import pytest
import torch

from actionpp import checkpoint
from actionpp.config import ConfigError
from actionpp.events import read_events
from actionpp.trainer import Trainer, train

from conftest import tiny_config

EXPECTED = {"supervised": {"sup"}, "mean-teacher": {"sup", "unsup"}, "action": {"sup", "unsup", "anco"},
            "actionpp": {"sup", "unsup", "anco", "ascl"}}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", list(EXPECTED))
def test_every_method_trains_in_2d_and_3d(tmp_path, tiny_dataset, method, dims):
    cfg = tiny_config(tmp_path, method=method, dims=dims, iterations=3)
    model_path = Trainer(cfg, tiny_dataset, show_bar=False).run()
    events = read_events(tmp_path / "run" / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("iter") == 3
    last = [e for e in events if e["event"] == "iter"][-1]
    assert set(last["losses"]) == EXPECTED[method]
    assert all(v is not None for v in last["losses"].values())
    if method in ("action", "actionpp"):
        assert "anco" in last["tau"]
    bundle = checkpoint.load(model_path)
    assert bundle["labels"] == tiny_dataset.labels and bundle["dims"] == dims
    assert (tmp_path / "run" / "model.json").is_file() and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


class _Interrupted(Trainer):
    def train_step(self, batch, it):
        if it == 2:
            raise KeyboardInterrupt
        return super().train_step(batch, it)


@pytest.mark.parametrize("method", ["actionpp", "supervised"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_dataset, method):
    full = tiny_config(tmp_path / "a", method=method, iterations=4)
    Trainer(full, tiny_dataset, show_bar=False).run()
    part = tiny_config(tmp_path / "b", method=method, iterations=4)
    with pytest.raises(KeyboardInterrupt):
        _Interrupted(part, tiny_dataset, show_bar=False).run()
    assert checkpoint.load(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["iteration"] == 2
    Trainer(part, tiny_dataset, show_bar=False).run(resume=True)
    a = checkpoint.load(tmp_path / "a" / "run" / "model.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "b" / "run" / "model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_non_empty_run_folder_is_refused_and_resume_needs_a_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny_config(tmp_path, data="x"))
    assert (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(tmp_path / "other", data="x"), resume=True)


def test_pretraining_stage_runs_and_feeds_fine_tuning(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path, pretrain_iterations=2, iterations=2, pretrain_window=16, pretrain_memory=5)
    Trainer(cfg, tiny_dataset, show_bar=False).run()
    events = read_events(tmp_path / "run" / "events.jsonl")
    pre = [e for e in events if e.get("phase") == "pretrain" and e["event"] == "iter"]
    assert len(pre) == 2 and set(pre[-1]["losses"]) == {"sup", "global", "local"}
    assert pre[-1]["losses"]["global"] > 0  # the memory holds the first step's teacher vectors
    assert (tmp_path / "run" / "checkpoints" / "pretrain.pt").is_file()


def test_final_scores_use_labeled_test_split(tmp_path, tiny_dataset):
    Trainer(tiny_config(tmp_path, method="supervised", iterations=2, val_fraction=0.5), tiny_dataset,
            show_bar=False).run()
    meta = checkpoint.load(tmp_path / "run" / "model.pt")
    # recompute from the saved model the way a user would: predict the test case, score it
    from actionpp.inference import Predictor
    from actionpp.metrics import case_metrics

    case = tiny_dataset.test[0]
    pred = Predictor.load(tmp_path / "run" / "model.pt").predict_array(case.image)
    scores = case_metrics(pred, case.label, tiny_dataset.labels, case.geometry.spacing)
    expected = sum(scores[c]["dice"] for c in scores) / len(scores)
    assert abs(meta["test_dice"] - expected) < 1e-6
    assert meta["val_dice"] is not None and meta["val_dice"] != meta["test_dice"]  # another split, another score


def test_pretraining_temperatures_follow_the_method():
    from actionpp.config import Config
    from actionpp.pretrain import pretrain_temperatures

    pp = Config(method="actionpp", iterations=100)
    act = Config(method="action", iterations=100)
    taus_pp = {pretrain_temperatures(pp, it, 100) for it in range(0, 100, 3)}
    assert len(taus_pp) > 3 and max(t for t, _ in taus_pp) == 1.0                  # cosine schedule
    assert {pretrain_temperatures(act, it, 100) for it in range(0, 100, 5)} == {(0.1, 0.01)}  # constant


def test_supervised_pretraining_sees_no_unlabeled_image(tmp_path, tiny_dataset, monkeypatch):
    import actionpp.pretrain as pre

    seen = {}

    def spy(cfg, model, num_classes, batches, device, events, out):
        seen["unlabeled"] = len(batches.unlabeled)
        seen["batch"] = set(batches[0])

    monkeypatch.setattr(pre, "pretrain", spy)
    for method in ("supervised", "action"):
        Trainer(tiny_config(tmp_path / method, method=method, pretrain_iterations=1, iterations=1), tiny_dataset,
                show_bar=False).run()
        assert (seen["unlabeled"] == 0) == (method == "supervised")
        assert ("u_image" in seen["batch"]) == (method != "supervised")


def test_head_learning_rate_scale(tmp_path, tiny_dataset):
    t = Trainer(tiny_config(tmp_path, head_lr_scale=100.0, iterations=2), tiny_dataset, show_bar=False)
    t.train_step(t.batches[0], 0)
    net_lr, head_lr = (g["lr"] for g in t.opt.param_groups)
    assert head_lr == 100.0 * net_lr > 0
    head_ids = {id(p) for p in t.learner.student.head.parameters()}
    assert {id(p) for p in t.opt.param_groups[1]["params"]} == head_ids
    plain = Trainer(tiny_config(tmp_path / "p", iterations=2), tiny_dataset, show_bar=False)
    assert len(plain.opt.param_groups) == 1  # the default keeps one group: earlier checkpoints still load


def test_a_timing_probe_runs_a_few_steps_of_each_stage_and_saves_nothing(tmp_path, tiny_dataset):
    cfg = tiny_config(tmp_path, method="actionpp", iterations=40, pretrain_iterations=10, probe_steps=2,
                      checkpoint_every=1, val_every=1, cache="disk")
    Trainer(cfg, tiny_dataset, show_bar=False).run()
    run = tmp_path / "run"
    events = read_events(run / "events.jsonl")
    starts = [e for e in events if e["event"] == "start"]
    # the planned totals of both stages, so a caller can scale the timed steps to the whole run
    assert [(e.get("phase"), e["total"]) for e in starts] == [("pretrain", 10), (None, 40)]
    assert starts[0]["finetune_total"] == 40 and starts[1]["pretrain_total"] == 10
    iters = [(e.get("phase"), e["iteration"]) for e in events if e["event"] == "iter"]
    assert iters == [("pretrain", 1), ("pretrain", 2), (None, 1), (None, 2)]
    assert all(e["sec_per_iter"] > 0 for e in events if e["event"] == "iter")
    assert not any(e["event"] in ("checkpoint", "val") for e in events)
    assert [e for e in events if e["event"] == "done"][-1]["probe"] is True
    assert not (run / "model.pt").exists() and not list((run / "checkpoints").glob("*.pt"))
    assert not (run / "cache").exists()
