import torch

import pytest

from actionpp.methods import Learner

from conftest import tiny_config


def test_class_adaptive_thresholds_follow_teacher_confidence(tmp_path):
    cfg = tiny_config(tmp_path, method="mean-teacher", unsup_threshold="class-adaptive", class_conf_momentum=0.0)
    learner = Learner(cfg, 3)
    pseudo = torch.tensor([[0, 0, 1, 2]])
    conf = torch.tensor([[1.0, 0.98, 0.8, 0.5]])
    scale = learner._class_scale(pseudo, conf)
    assert torch.allclose(scale, torch.tensor([1.0, 0.8 / 0.99, 0.5 / 0.99]))
    gate = conf / scale[pseudo]
    # class 2's pixel at 0.5 passes its scaled threshold 0.97 * 0.505; with a fixed 0.97 it would not
    assert bool((gate >= cfg.strong_threshold).all()) and not bool((conf >= cfg.strong_threshold).all())
    # classes absent from a batch keep their running value
    learner._class_scale(torch.tensor([[0, 0]]), torch.tensor([[0.9, 0.9]]))
    assert torch.allclose(learner.class_conf, torch.tensor([0.9, 0.8, 0.5]))


def _batch(seed=0):
    torch.manual_seed(seed)
    label = torch.zeros(2, 32, 32, dtype=torch.long)
    label[:, 6:26, 6:26], label[:, 10:22, 10:22] = 1, 2
    return {"l_image": label[:, None].float() + 0.3 * torch.randn(2, 1, 32, 32), "l_label": label,
            "u_image": label[:, None].float() + 0.3 * torch.randn(2, 1, 32, 32)}


@pytest.mark.parametrize("method, terms", [("supervised", {"sup"}), ("mean-teacher", {"sup", "unsup"}),
                                           ("action", {"sup", "unsup", "anco"}),
                                           ("actionpp", {"sup", "unsup", "anco", "ascl"})])
def test_each_method_computes_exactly_its_losses(tmp_path, method, terms):
    """Run one step of each method and look at what it computed (not at the method table)."""
    learner = Learner(tiny_config(tmp_path, method=method, iterations=100, tau_period=1.0), 3)
    loss, logs = learner(_batch(), 0, torch.Generator().manual_seed(0))
    assert set(logs) == terms and torch.isfinite(loss)
    assert (learner.teacher is None) == (method == "supervised")
    taus = learner.temperatures(50)  # half a period: the cosine schedules are at their minimum, the constant is not
    assert taus == {"supervised": {}, "mean-teacher": {}, "action": {"anco": 0.5},
                    "actionpp": {"anco": pytest.approx(0.1), "ascl": pytest.approx(0.07)}}[method]


def _grads(tmp_path, **over):
    torch.manual_seed(3)
    learner = Learner(tiny_config(tmp_path, method="actionpp", unsup_weight=0.0, **over), 3)
    loss, _ = learner(_batch(), 0, torch.Generator().manual_seed(5))
    loss.backward()
    grad = lambda m: torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()  # noqa: E731
                                for p in m.parameters()])
    return grad(learner.student.net), grad(learner.student.head)


@pytest.mark.parametrize("term", ["anco", "ascl"])
def test_contrastive_terms_send_gradient_into_head_and_backbone(tmp_path, term):
    """A ``.detach()`` anywhere between the backbone features and a contrastive loss fails this test."""
    other = "ascl" if term == "anco" else "anco"
    net_off, head_off = _grads(tmp_path, **{f"{term}_weight": 0.0, f"{other}_weight": 0.0})
    net_on, head_on = _grads(tmp_path, **{f"{term}_weight": 1.0, f"{other}_weight": 0.0})
    assert head_off.abs().max() == 0  # the head learns from the contrastive terms only
    assert head_on.abs().max() > 1e-6
    # the same step with the term switched on changes the backbone's gradient: the term reaches the backbone
    assert (net_on - net_off).abs().max() > 1e-6 * max(1.0, float(net_off.abs().max()))


def test_temperatures_per_iteration_and_per_epoch(tmp_path):
    it = Learner(tiny_config(tmp_path, iterations=100, tau_period=1.0), 3)
    assert it.temperatures(0) == {"anco": 1.0, "ascl": 1.0}
    assert abs(it.temperatures(50)["anco"] - 0.1) < 1e-9 and abs(it.temperatures(50)["ascl"] - 0.07) < 1e-9
    ep = Learner(tiny_config(tmp_path, iterations=100, tau_period=1.0, tau_step="epoch"), 3, iters_per_epoch=30)
    assert ep.temperatures(59) == ep.temperatures(30) != ep.temperatures(29)
    const = Learner(tiny_config(tmp_path, method="action", anco_tau=0.5), 3)
    assert const.temperatures(0) == const.temperatures(37) == {"anco": 0.5}


def test_split_and_joint_forwards_agree_when_batchnorm_uses_running_statistics(tmp_path):
    """Split and joint student forwards differ only in BatchNorm batch statistics."""
    torch.manual_seed(0)
    x = {"l_image": torch.randn(2, 1, 32, 32), "l_label": torch.randint(0, 3, (2, 32, 32)),
         "u_image": torch.randn(2, 1, 32, 32)}
    out = {}
    for split in (False, True):
        torch.manual_seed(1)
        learner = Learner(tiny_config(tmp_path, split_bn=split), 3)
        learner.eval()  # eval-mode BN: batch composition no longer matters, so both paths must agree exactly
        loss, logs = learner(x, 0, torch.Generator().manual_seed(2))
        out[split] = (float(loss.detach()), set(logs))
    assert out[False][1] == out[True][1] == {"sup", "unsup", "anco", "ascl"}
    assert abs(out[False][0] - out[True][0]) < 1e-5


def test_bfloat16_ascl_side_stays_close_to_float32(tmp_path):
    """--ascl-precision bfloat16: the teacher's labeled pass, its embeddings and the queue products in bf16 only."""
    torch.manual_seed(0)
    x = {"l_image": torch.randn(2, 1, 32, 32), "l_label": torch.randint(0, 3, (2, 32, 32)),
         "u_image": torch.randn(2, 1, 32, 32)}
    out = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(1)
        learner = Learner(tiny_config(tmp_path, ascl_precision=precision), 3)
        assert learner.ascl.matmul_dtype == getattr(torch, precision)
        for it in range(3):  # fills part of the queue
            loss, logs = learner(x, it, torch.Generator().manual_seed(2 + it))
        out[precision] = {k: float(v) for k, v in logs.items()}
    assert out["float32"]["sup"] == out["bfloat16"]["sup"]  # the supervised side is untouched
    assert out["float32"]["unsup"] == out["bfloat16"]["unsup"]  # so are the pseudo-labels
    assert abs(out["bfloat16"]["ascl"] - out["float32"]["ascl"]) < 1e-2 * abs(out["float32"]["ascl"])


@pytest.mark.parametrize("mode", ["eval", "official"])
def test_teacher_choice_sets_mode_and_buffer_averaging(tmp_path, mode):
    learner = Learner(tiny_config(tmp_path, method="mean-teacher", teacher=mode), 3)
    learner(_batch(), 0, torch.Generator().manual_seed(0))  # the student's BN statistics move
    learner.update_teacher()
    s_bn = [m for m in learner.student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)][0]
    t_bn = [m for m in learner.teacher.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)][0]
    assert learner.teacher.module.training == (mode == "official")
    copied = torch.equal(s_bn.running_mean, t_bn.running_mean)
    assert copied == (mode == "official")  # official: buffers copied; eval: averaged (0.99 old + 0.01 new)
