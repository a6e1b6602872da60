import numpy as np
import pytest
import torch

from actionpp.centers import load_centers, uniform_centers, uniformity_loss


@pytest.mark.parametrize("c", [2, 4, 5, 7])
@pytest.mark.parametrize("d", [8, 128])
def test_simplex_centres(c, d):
    x = uniform_centers(c, d)
    assert x.shape == (c, d) and x.dtype == torch.float32 and x.device.type == "cpu"
    torch.testing.assert_close(x.norm(dim=1), torch.ones(c), atol=1e-6, rtol=0)
    cos = (x.double() @ x.double().T)[~torch.eye(c, dtype=torch.bool)]
    torch.testing.assert_close(cos, torch.full_like(cos, -1.0 / (c - 1)), atol=1e-6, rtol=0)


def test_simplex_fills_d_plus_one_and_seed_rotates():
    x = uniform_centers(4, 3)  # C == D + 1: a regular tetrahedron in R^3
    cos = (x @ x.T)[~torch.eye(4, dtype=torch.bool)]
    torch.testing.assert_close(cos, torch.full_like(cos, -1 / 3), atol=1e-6, rtol=0)
    assert not torch.allclose(uniform_centers(4, 8, seed=0), uniform_centers(4, 8, seed=1))


def test_optimised_centres_beat_random(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIONPP_CACHE", str(tmp_path))
    c, d = 6, 2  # C > D + 1: no simplex
    x = uniform_centers(c, d, seed=3, steps=200)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(c), atol=1e-6, rtol=0)
    rand = torch.randn(c, d, generator=torch.Generator().manual_seed(0))
    assert uniformity_loss(x) < uniformity_loss(rand)
    assert (tmp_path / "centers_6_2_3_s200.npy").is_file()


def test_cache_returns_equal_fresh_tensors():
    a = uniform_centers(4, 16, seed=5)
    a.zero_()  # callers get clones; the cache is not affected
    b = uniform_centers(4, 16, seed=5)
    c = uniform_centers(4, 16, seed=5)
    assert torch.equal(b, c) and b.abs().sum() > 0 and b.data_ptr() != c.data_ptr()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        uniform_centers(1, 8)
    with pytest.raises(ValueError, match="dim"):
        uniform_centers(2, 0)


def test_load_centers(tmp_path):
    good = uniform_centers(4, 8).numpy()
    p = tmp_path / "optimal_4_8.npy"
    np.save(p, good.astype(np.float64))
    loaded = load_centers(p, 4, 8)
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, torch.from_numpy(good), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"shape \(4, 16\)") as e:
        load_centers(p, 4, 16)
    assert "\n" not in str(e.value)
    np.save(p, good * 2)
    with pytest.raises(ValueError, match="unit-norm"):
        load_centers(p, 4, 8)
    with pytest.raises(ValueError, match="no such file"):
        load_centers(tmp_path / "missing.npy", 4, 8)
