import math

import pytest

from actionpp.schedules import cosine_tau, epoch_step, poly_lr, sigmoid_rampup


def test_cosine_tau_endpoints_and_period():
    total, lo, hi, period = 1000, 0.1, 1.0, 0.1
    assert cosine_tau(0, total, lo, hi, period) == pytest.approx(hi)
    assert cosine_tau(total * period / 2, total, lo, hi, period) == pytest.approx(lo)
    assert cosine_tau(total * period, total, lo, hi, period) == pytest.approx(hi)
    assert cosine_tau(total * period / 4, total, lo, hi, period) == pytest.approx((lo + hi) / 2)
    # periodic: one period later, same value
    assert cosine_tau(37, total, lo, hi, period) == pytest.approx(cosine_tau(137, total, lo, hi, period))


def test_cosine_tau_monotone_on_first_half_and_bounded():
    total, period = 2000, 0.1
    half = int(total * period / 2)
    values = [cosine_tau(s, total, 0.07, 1.0, period) for s in range(half + 1)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert all(0.07 - 1e-12 <= cosine_tau(s, total, 0.07, 1.0, period) <= 1.0 + 1e-12 for s in range(0, total, 7))


def test_cosine_tau_whole_run_period_and_constant():
    assert cosine_tau(500, 1000, 0.1, 1.0, period=1.0) == pytest.approx(0.1)
    assert cosine_tau(123, 1000, 0.5, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, name", [
    (dict(step=-1), "step"), (dict(total=0), "total"), (dict(period=0), "period"),
    (dict(tau_min=0.0), "tau_min"), (dict(tau_max=0.05), "tau_max"),
])
def test_cosine_tau_bad_arguments(kwargs, name):
    args = dict(step=0, total=10, tau_min=0.1, tau_max=1.0, period=0.1) | kwargs
    with pytest.raises(ValueError, match=name):
        cosine_tau(**args)


def test_epoch_step_floors():
    assert [epoch_step(s, 4) for s in range(9)] == [0, 0, 0, 0, 4, 4, 4, 4, 8]
    with pytest.raises(ValueError, match="iters_per_epoch"):
        epoch_step(3, 0)


def test_poly_lr_endpoints():
    assert poly_lr(0.01, 0, 100) == pytest.approx(0.01)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 150, 100) == 0.0
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)
    with pytest.raises(ValueError, match="total"):
        poly_lr(0.01, 0, 0)


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 0) == 1.0
    assert sigmoid_rampup(0, 200) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(200, 200) == 1.0
    assert sigmoid_rampup(500, 200) == 1.0
    assert sigmoid_rampup(100, 200) == pytest.approx(math.exp(-5 * 0.25))
