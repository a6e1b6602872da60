import json

import pytest

from actionpp.config import Config, ConfigError


def test_defaults_are_valid_and_patch_follows_dims():
    assert Config().patch == (128, 128)
    assert Config(dims=3).patch == (16, 96, 96)


@pytest.mark.parametrize("kw, flag", [
    ({"method": "fixmatch"}, "--method"),
    ({"dims": 4}, "--dims"),
    ({"dims": 3, "patch": (32, 32)}, "--patch"),
    ({"patch": (30, 32)}, "--patch"),
    ({"lr": 0.0}, "--lr"),
    ({"iterations": 0}, "--iterations"),
    ({"ema_momentum": 1.5}, "--ema-momentum"),
    ({"anco_tau_min": 2.0}, "--anco-tau-min"),
    ({"device": "gpu"}, "--device"),
    ({"batch_unlabeled": 0}, "--batch-unlabeled"),
    ({"unsup_rampup": 1.5}, "--unsup-rampup"),
    ({"unsup_mask": "soft"}, "--unsup-mask"),
    ({"network": "vnet", "patch": (24, 24)}, "--patch"),
])
def test_bad_values_name_the_flag(kw, flag):
    with pytest.raises(ConfigError) as e:
        Config(**kw)
    assert flag in str(e.value) and "\n" not in str(e.value)


def test_supervised_needs_no_unlabeled_batch():
    assert Config(method="supervised", batch_unlabeled=0).batch_unlabeled == 0


def test_json_and_yaml_round_trip(tmp_path):
    cfg = Config(method="action", iterations=7, patch=(64, 64))
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg
    (tmp_path / "c.yaml").write_text("method: mean-teacher\nbatch-labeled: 3\npatch: [32, 64]\n")
    y = Config.load(tmp_path / "c.yaml")
    assert (y.method, y.batch_labeled, y.patch) == ("mean-teacher", 3, (32, 64))


def test_unknown_key_and_bad_file_name_the_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"iterationz": 5}))
    with pytest.raises(ConfigError, match="c.json: unknown setting"):
        Config.load(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="c.json: cannot parse"):
        Config.load(p)
    with pytest.raises(ConfigError, match="missing.json: config file not found"):
        Config.load(tmp_path / "missing.json")


def test_pretraining_is_on_by_default_for_action_methods_only():
    from actionpp.config import Config

    assert Config(method="actionpp", iterations=400).pretrain_iterations == 100
    assert Config(method="action", iterations=1000).pretrain_iterations == 250
    # capped: a longer stage over-fits a few labeled cases (benchmarks/README.md, "The auto stage capped at 250 steps")
    assert Config(method="actionpp", iterations=1200).pretrain_iterations == 250
    assert Config(method="actionpp", iterations=3500).pretrain_iterations == 250
    assert Config(method="actionpp", iterations=2).pretrain_iterations == 1  # never 0 when on
    assert Config(method="mean-teacher", iterations=400).pretrain_iterations == 0
    assert Config(method="supervised", iterations=400).pretrain_iterations == 0
    assert Config(method="actionpp", iterations=400, pretrain_iterations=0).pretrain_iterations == 0  # off
    saved = Config(method="actionpp", iterations=400).to_dict()
    assert Config.from_dict(saved).pretrain_iterations == 100  # resolved once, saved concretely


def test_3d_runs_take_the_official_3d_constants_unless_told_otherwise():
    from actionpp.config import DIMS_3D, Config

    c3 = Config(dims=3)
    assert (c3.ascl_target_weight, c3.pretrain_tau_teacher, c3.mix, c3.pretrain_tau_period, c3.ascl_tau_max) == \
        (0.2, 0.6, "classmix", 1.0, 0.07)
    c2 = Config(dims=2)
    assert all(getattr(c2, k) == two for k, (two, _) in DIMS_3D.items())
    assert Config(dims=3, mix="none").mix == "none"                      # an explicit other value is kept
    kept = Config(dims=3, dims_defaults=False)
    assert all(getattr(kept, k) == two for k, (two, _) in DIMS_3D.items())
