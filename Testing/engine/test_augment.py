import pytest
import torch

from actionpp.augment import apply_flips, apply_strong, sample_flips, sample_strong_params


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _all_on(params):
    return {k: (torch.ones_like(v) if v.dtype == torch.bool else v) for k, v in params.items()}


@pytest.mark.parametrize("spatial", [(16, 16), (8, 12, 12)])
def test_strong_keeps_float_changes_values_no_clamp(spatial):
    x = torch.randn(3, 2, *spatial, generator=_gen(1)) * 2 - 1  # z-scored-like, many negatives
    params = _all_on(sample_strong_params(3, _gen(2)))
    y = apply_strong(x, params)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert not torch.allclose(y, x)
    assert (y < 0).any() and y.min() < -1.0  # nothing clamped to [0, 1]
    assert not torch.equal(y, y.round())  # no 8-bit quantisation


def test_strong_is_deterministic_and_identity_when_off():
    x = torch.randn(4, 1, 10, 10, generator=_gen(5))
    a = apply_strong(x, sample_strong_params(4, _gen(7)))
    b = apply_strong(x, sample_strong_params(4, _gen(7)))
    assert torch.equal(a, b)
    params = sample_strong_params(4, _gen(7))
    off = {k: (torch.zeros_like(v) if v.dtype == torch.bool else v) for k, v in params.items()}
    assert torch.equal(apply_strong(x, off), x)
    x64 = x.double()
    assert apply_strong(x64, params).dtype == torch.float64


def test_blur_and_gamma_components():
    x = torch.zeros(2, 1, 9, 9, 9)
    x[:, :, 4, 4, 4] = 1.0
    params = sample_strong_params(2, _gen(0))
    only_blur = {k: (torch.zeros_like(v) if v.dtype == torch.bool else v) for k, v in params.items()}
    only_blur["blur_apply"] = torch.tensor([True, False])
    y = apply_strong(x, only_blur)
    torch.testing.assert_close(y[0].sum(), torch.tensor(1.0))  # normalised kernel, mass kept
    assert y[0, 0, 4, 4, 4] < 1 and y[0, 0, 3, 4, 4] > 0
    assert torch.equal(y[1], x[1])
    # gamma keeps the min-max range
    z = torch.randn(2, 1, 8, 8, generator=_gen(3)) - 3
    only_gamma = {k: (torch.zeros_like(v) if v.dtype == torch.bool else v) for k, v in params.items()}
    only_gamma["gamma_apply"] = torch.tensor([True, True])
    only_gamma["gamma"] = torch.tensor([2.0, 0.5])
    g = apply_strong(z, only_gamma)
    torch.testing.assert_close(g.amin(dim=(1, 2, 3)), z.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(g.amax(dim=(1, 2, 3)), z.amax(dim=(1, 2, 3)))
    assert not torch.allclose(g, z)


def test_strong_rejects_bad_input():
    with pytest.raises(ValueError, match="x"):
        apply_strong(torch.zeros(2, 1, 4, 4, dtype=torch.long), sample_strong_params(2, _gen()))
    with pytest.raises(ValueError, match="params"):
        apply_strong(torch.zeros(3, 1, 4, 4), sample_strong_params(2, _gen()))


@pytest.mark.parametrize("spatial", [(5, 6), (3, 5, 6)])
def test_flips_hit_image_label_conf_alike(spatial):
    b, nd = 4, len(spatial)
    flags = sample_flips(b, nd, _gen(11))
    img = torch.arange(b * 2 * torch.Size(spatial).numel()).view(b, 2, *spatial).float()
    pseudo = torch.arange(b * torch.Size(spatial).numel()).view(b, *spatial)
    conf = pseudo.float() / pseudo.numel()
    fi, fp, fc = apply_flips(flags, img, pseudo, conf)
    for i in range(b):
        axes = [a for a in range(nd) if flags[i, a]]
        assert torch.equal(fi[i], img[i].flip([1 + a for a in axes]))
        assert torch.equal(fp[i], pseudo[i].flip(axes))
        assert torch.equal(fc[i], conf[i].flip(axes))
    assert torch.equal(flags, sample_flips(b, nd, _gen(11)))
    with pytest.raises(ValueError, match="ndim"):
        sample_flips(b, 4, _gen())
