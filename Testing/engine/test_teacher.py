import pytest
import torch
from torch import nn

from actionpp.teacher import EMATeacher


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Conv2d(3, 2, 1))


def _perturb(student):
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()
    student(torch.randn(4, 1, 6, 6))  # moves BN running stats and num_batches_tracked


def test_starts_as_exact_copy_eval_no_grad():
    student = _net()
    teacher = EMATeacher(student, 0.99)
    for (n, a), (_, b) in zip(student.state_dict().items(), teacher.module.state_dict().items()):
        assert torch.equal(a, b), n
    assert not teacher.module.training
    assert all(not p.requires_grad for p in teacher.module.parameters())
    assert all(p.requires_grad for p in student.parameters())
    out = teacher(torch.randn(2, 1, 6, 6))
    assert not out.requires_grad
    # eval mode: deterministic despite dropout, and it stays in eval mode even if someone calls .train()
    teacher.module.train()
    x = torch.randn(2, 1, 6, 6)
    assert torch.equal(teacher(x), teacher(x))


def test_update_is_exact_ema_of_parameters_and_buffers():
    m = 0.9
    student = _net()
    teacher = EMATeacher(student, m)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    _perturb(student)
    s = student.state_dict()
    teacher.update(student)
    after = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    for k, t0 in before.items():
        if t0.is_floating_point():  # weights, biases, running_mean, running_var
            torch.testing.assert_close(after[k], m * t0 + (1 - m) * s[k], atol=1e-6, rtol=1e-6)
        else:  # num_batches_tracked is copied
            assert torch.equal(after[k], s[k]), k
    assert not torch.equal(after["1.running_mean"], s["1.running_mean"])
    # a second update keeps the same formula
    _perturb(student)
    s2 = student.state_dict()
    teacher.update(student)
    torch.testing.assert_close(teacher.module.state_dict()["0.weight"], m * after["0.weight"] + (1 - m) * s2["0.weight"],
                               atol=1e-6, rtol=1e-6)


def test_official_like_option_copies_buffers():
    student = _net()
    teacher = EMATeacher(student, 0.99, average_buffers=False, train_mode=True)
    _perturb(student)
    teacher.update(student)
    assert torch.equal(teacher.module.state_dict()["1.running_var"], student.state_dict()["1.running_var"])
    assert teacher.module.training


def test_state_dict_round_trip_and_bad_momentum():
    student = _net()
    a = EMATeacher(student, 0.99)
    _perturb(student)
    a.update(student)
    b = EMATeacher(_net(), 0.99)
    b.load_state_dict(a.state_dict())
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    with pytest.raises(ValueError, match="momentum"):
        EMATeacher(student, 1.5)
