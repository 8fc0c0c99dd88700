"""Tests of repdiff.sampling (Chapter 7): schedules, single steps, the sampler and its error messages."""

from __future__ import annotations

import pytest
import torch

from repdiff import metrics, sampling
from repdiff.dae.toy_diffusion import TimeConditionedReLUDAE


def test_sigma_schedule_shape_ends_and_order():
    s = sampling.sigma_schedule(10, 3.0, 0.02)
    assert s.shape == (11,)
    assert s[0].item() == pytest.approx(3.0) and s[-2].item() == pytest.approx(0.02) and s[-1].item() == 0.0
    assert (s[1:] < s[:-1]).all()
    ratios = s[1:-1] / s[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))  # geometric
    lin = sampling.sigma_schedule(5, 1.0, 0.2, kind="linear")
    assert torch.allclose(lin[:-1].diff(), torch.full((4,), -0.2, dtype=torch.float64))


@pytest.mark.parametrize("args", [(0, 1.0, 0.1), (5, 0.1, 1.0), (5, 1.0, 0.0)])
def test_sigma_schedule_rejects_bad_input(args):
    with pytest.raises(ValueError):
        sampling.sigma_schedule(*args)


def test_ddim_step_with_exact_x0_moves_along_the_noise():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    out = sampling.ddim_step(x0 + 2.0 * eps, x0, 2.0, 0.5)
    assert torch.allclose(out, x0 + 0.5 * eps, atol=1e-6)


def test_printed_update_equals_ddim_and_one_fix_moves_away():
    g = torch.Generator().manual_seed(1)
    x, f = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g, dtype=torch.float64)
    right = sampling.ddim_step(x, f, 1.0, 0.7)
    assert torch.allclose(sampling.printed_paper_step(x, f, 1.0, 0.7), right, atol=1e-12)
    wrong = sampling.printed_paper_step(x, f, 1.0, 0.7, fix_score_sign_only=True)
    assert ((wrong - f).norm(dim=1) > (x - f).norm(dim=1)).all()
    assert ((right - f).norm(dim=1) < (x - f).norm(dim=1)).all()


def test_score_sign():
    x, f = torch.zeros(1, 3), torch.ones(1, 3)
    assert (sampling.score_from_denoiser(x, f, 0.5) > 0).all()  # points towards the clean estimate
    with pytest.raises(ValueError):
        sampling.score_from_denoiser(x, f, 0.0)


def test_ancestral_step_keeps_the_marginal():
    g = torch.Generator().manual_seed(2)
    x0 = torch.zeros(200_000, 2, dtype=torch.float64)
    x = x0 + 1.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    out = sampling.ancestral_step(x, x0, 1.5, 0.6, z)
    assert out.var().item() == pytest.approx(0.36, rel=0.01)
    with pytest.raises(ValueError):
        sampling.ancestral_step(x, x0, 0.6, 1.5, z)


def test_deterministic_sampler_on_a_gaussian_recovers_its_variance():
    # data N(0, v I): exact denoiser v/(v + σ²) x; the ODE maps N(0, (v + σ_max²) I) to N(0, v I)
    v, smax = 0.5, 4.0

    def wiener(x, s):
        return v / (v + s**2) * x

    g = torch.Generator().manual_seed(3)
    x_init = (v + smax**2) ** 0.5 * torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    out = sampling.sample(wiener, x_init, sampling.sigma_schedule(400, smax, 1e-3), progress=False)
    assert out.var().item() == pytest.approx(v, rel=0.03)


def test_empirical_sampler_returns_training_points():
    g = torch.Generator().manual_seed(4)
    X = 3 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    f = sampling.empirical_denoiser_fn(X)
    x_init = 2.0 * torch.randn(64, 6, generator=g, dtype=torch.float64)
    for stochastic in (False, True):
        out = sampling.sample(f, x_init, sampling.sigma_schedule(60, 2.0, 0.01), stochastic=stochastic,
                              generator=g, progress=False)
        assert metrics.memorization_fraction(out, X) == 1.0


def test_batches_give_the_same_deterministic_result_and_trajectory():
    X = torch.randn(4, 3, dtype=torch.float64)
    f = sampling.empirical_denoiser_fn(X)
    x_init = torch.randn(10, 3, dtype=torch.float64)
    sig = sampling.sigma_schedule(8, 1.0, 0.05)
    a, traj = sampling.sample(f, x_init, sig, progress=False, return_trajectory=True)
    b, traj_b = sampling.sample(f, x_init, sig, progress=False, return_trajectory=True, batch_size=3)
    assert torch.allclose(a, b)
    assert len(traj) == len(sig) == len(traj_b) and traj[0].shape == (10, 3)
    assert torch.allclose(traj[-1], a) and torch.allclose(traj_b[4], traj[4])


def test_sampler_errors_are_clear():
    model = TimeConditionedReLUDAE(6, 4)
    sig = sampling.sigma_schedule(5, 1.0, 0.1)
    with pytest.raises(ValueError, match="shape"):
        sampling.sample(model, torch.randn(3, 5), sig, progress=False)
    with pytest.raises(ValueError, match="batch"):
        sampling.sample(model, torch.randn(6), sig, progress=False)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sampling.sample(model, torch.randn(3, 6), sig.flip(0), progress=False)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sampling.sample(model, torch.randn(3, 6), torch.tensor([1.0, 0.5, 0.5, 0.0]), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        sampling.sample(model, torch.full((3, 6), float("nan")), sig, progress=False)
    with pytest.raises(TypeError):
        sampling.sample(model, [[0.0] * 6], sig, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        sampling.sample(model, torch.randn(3, 6), sig, progress=False, batch_size=0)


def test_sampler_rejects_a_model_on_another_device():
    model = TimeConditionedReLUDAE(6, 4).to("meta")
    with pytest.raises(RuntimeError, match="device|on meta"):
        sampling.sample(model, torch.randn(3, 6), sampling.sigma_schedule(5, 1.0, 0.1), progress=False)


def test_sampler_rejects_bad_denoiser_output():
    sig = sampling.sigma_schedule(5, 1.0, 0.1)
    with pytest.raises(ValueError, match="same shape"):
        sampling.sample(lambda x, s: x[:, :2], torch.randn(3, 4), sig, progress=False)
    with pytest.raises(FloatingPointError):
        sampling.sample(lambda x, s: x * float("nan"), torch.randn(3, 4), sig, progress=False)
    f = sampling.empirical_denoiser_fn(torch.randn(4, 3))
    with pytest.raises(ValueError):
        f(torch.randn(2, 5), 0.5)


def test_euler_maruyama_step_formula():
    x, f, z = torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3)
    out = sampling.euler_maruyama_step(x, f, 2.0, 1.0, z)
    # x + (4 - 1)(0 - 1)/4 + sqrt(3) z
    assert torch.allclose(out, torch.full((2, 3), 1 - 0.75 + 3**0.5))


def test_memorizing_relu_denoiser_matches_cor32_on_a_stored_point():
    X = torch.tensor([[2.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    f = sampling.memorizing_relu_denoiser_fn(X)
    out = f(X[:1], 0.5)  # only the first unit fires: gain ||x||^2 / (||x||^2 + sigma^2) along x_1
    assert torch.allclose(out, X[:1] * 4 / (4 + 0.25))


def test_smoothed_kl_is_zero_for_the_same_points_and_positive_otherwise():
    X = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    assert abs(sampling.smoothed_kl(X, X, 0.1, n_mc=500)) < 1e-9
    assert sampling.smoothed_kl(X + torch.tensor([0.5, 0.0], dtype=torch.float64), X, 0.1, n_mc=500) > 5


def test_sample_with_the_papers_step_and_iterate_clamp_stays_in_range():
    X = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    sched = sampling.sigma_schedule(20, 3, 0.02)
    out = sampling.sample(sampling.empirical_denoiser_fn(X), 3 * torch.randn(16, 2), sched,
                          stochastic=True, stochastic_step="euler_maruyama", clamp_iterate=(-1.0, 1.0),
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert out.abs().max() <= 1.0
    with pytest.raises(ValueError, match="stochastic_step"):
        sampling.sample(sampling.empirical_denoiser_fn(X), torch.randn(4, 2), sampling.sigma_schedule(5, 3, 0.1),
                        stochastic=True, stochastic_step="heun", progress=False)
