"""Chapter 1's theory: the empirical denoiser, the blurred empirical density, the Wiener denoiser."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from repdiff.data.synthetic import GaussianMixture
from repdiff.theory import (
    empirical_denoiser,
    empirical_log_density,
    posterior_mean_monte_carlo,
    wiener_denoiser,
)

rng = np.random.default_rng(0)


def brute_force_femp(y, X, sigma):
    logits = -((y[:, None, :] - X[None]) ** 2).sum(-1) / (2 * sigma**2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    return (w / w.sum(1, keepdims=True)) @ X


@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0])
def test_femp_matches_brute_force(sigma):
    X = rng.standard_normal((50, 7))
    y = rng.standard_normal((13, 7)) * 2
    np.testing.assert_allclose(empirical_denoiser(y, X, sigma), brute_force_femp(y, X, sigma), atol=1e-12)


def test_femp_chunking_and_single_vector():
    X = rng.standard_normal((101, 5))
    y = rng.standard_normal((9, 5))
    full = empirical_denoiser(y, X, 0.4)
    np.testing.assert_allclose(empirical_denoiser(y, X, 0.4, chunk_size=3), full, atol=1e-13)
    single = empirical_denoiser(y[0], X, 0.4)
    assert single.shape == (5,)
    np.testing.assert_allclose(single, full[0], atol=1e-13)


def test_femp_tiny_sigma_large_d_returns_nearest_point():
    X = rng.standard_normal((300, 2048))
    y = X[:5] + 1e-4 * rng.standard_normal((5, 2048))
    out = empirical_denoiser(y, X, 1e-5)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, X[:5], atol=1e-12)


def test_femp_keeps_the_input_kind():
    X = torch.randn(20, 3, dtype=torch.float32)
    out = empirical_denoiser(torch.randn(4, 3), X, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (4, 3)
    assert isinstance(empirical_denoiser(np.zeros((2, 3)), X.numpy(), 0.5), np.ndarray)


def test_femp_is_tweedie_of_the_empirical_density():
    X = torch.from_numpy(rng.standard_normal((40, 6)))
    y = torch.from_numpy(rng.standard_normal((8, 6))).requires_grad_(True)
    (g,) = torch.autograd.grad(empirical_log_density(y, X, 0.7).sum(), y)
    np.testing.assert_allclose(empirical_denoiser(y.detach(), X, 0.7), (y + 0.49 * g).detach(), atol=1e-12)


def test_empirical_log_density_matches_scipy():
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal((4, 3))
    expected = [
        logsumexp([multivariate_normal(x, 0.8**2 * np.eye(3)).logpdf(q) for x in X]) - np.log(6) for q in y
    ]
    np.testing.assert_allclose(empirical_log_density(y, X, 0.8), expected, atol=1e-12)


@pytest.mark.parametrize(
    ("y", "X", "sigma", "match"),
    [
        (np.zeros((2, 3)), np.zeros((5, 4)), 1.0, "d = 4"),
        (np.zeros(3), np.zeros((5, 3)), 0.0, "sigma must be a finite number > 0"),
        (np.zeros(3), np.zeros((5, 3)), -1.0, "sigma must be"),
        (np.zeros(3), np.zeros((5, 3)), float("nan"), "sigma must be"),
        (np.zeros(3), np.zeros((0, 3)), 1.0, "empty"),
        (np.array([0.0, np.nan, 0.0]), np.zeros((5, 3)), 1.0, "y contains 1 NaN"),
        (np.zeros(3), np.full((5, 3), np.inf), 1.0, "X contains"),
        (np.zeros(3), np.zeros(3), 1.0, r"X must have shape \(n, d\)"),
    ],
)
def test_femp_bad_input_gets_a_clear_error(y, X, sigma, match):
    with pytest.raises(ValueError, match=match):
        empirical_denoiser(y, X, sigma)


def test_wiener_is_the_gaussian_posterior_mean_and_mixture_density_is_exact():
    d = 4
    A = rng.standard_normal((d, d))
    cov = A @ A.T + 0.1 * np.eye(d)
    mu = rng.standard_normal(d)
    y = rng.standard_normal((6, d))
    gm = GaussianMixture(weights=[1.0], means=[mu], covs=[cov])
    np.testing.assert_allclose(
        wiener_denoiser(y, mu, cov, 0.5), gm.posterior_mean(torch.from_numpy(y), 0.5).numpy(), atol=1e-12
    )
    # explicit formula mu + Sigma (Sigma + s^2 I)^-1 (y - mu), column by column
    expected = np.stack([mu + cov @ np.linalg.solve(cov + 0.25 * np.eye(d), q - mu) for q in y])
    np.testing.assert_allclose(wiener_denoiser(y, mu, cov, 0.5), expected, atol=1e-12)
    gm2 = GaussianMixture(weights=[0.3, 0.7], means=[mu, -mu], covs=[cov, 0.5 * cov])
    dens = 0.3 * multivariate_normal(mu, cov + 0.25 * np.eye(d)).pdf(y) + 0.7 * multivariate_normal(
        -mu, 0.5 * cov + 0.25 * np.eye(d)
    ).pdf(y)
    np.testing.assert_allclose(gm2.log_density(torch.from_numpy(y), 0.5).numpy(), np.log(dens), atol=1e-10)


def test_mixture_posterior_mean_matches_tweedie():
    gm = GaussianMixture(
        weights=[0.5, 0.5], means=[[1.0, 0.0], [-1.0, 1.0]], covs=[np.eye(2) * 0.2, np.diag([0.1, 0.5])]
    )
    y = torch.from_numpy(rng.standard_normal((10, 2))).requires_grad_(True)
    (g,) = torch.autograd.grad(gm.log_density(y, 0.3).sum(), y)
    np.testing.assert_allclose(gm.posterior_mean(y.detach(), 0.3), (y + 0.09 * g).detach(), atol=1e-12)


def test_gaussian_mixture_rejects_bad_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(weights=[0.5, 0.6], means=np.zeros((2, 2)), covs=np.stack([np.eye(2)] * 2))
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(weights=[1.0], means=np.zeros((1, 2)), covs=np.eye(3)[None])


def test_posterior_mean_monte_carlo_agrees_with_the_exact_mixture_formula():
    """Likelihood weighting of prior draws (Chapter 1's Tweedie check) lands within a few standard errors
    of the exact posterior mean of a Gaussian mixture, and its standard errors shrink like 1/sqrt(M)."""
    prior = GaussianMixture(weights=[0.6, 0.4], means=[[-1.0, 0.0], [1.0, 0.5]],
                            covs=[np.diag([0.2, 0.1]), np.diag([0.1, 0.3])])
    y = np.array([[-0.5, 0.2], [0.3, 0.0], [1.5, 1.0]])
    g = np.random.default_rng(5)
    x_small, _ = prior.sample(20_000, g)
    x_big, _ = prior.sample(80_000, g)
    est, se = posterior_mean_monte_carlo(x_big, y, 0.5)
    exact = prior.posterior_mean(torch.from_numpy(y), 0.5).numpy()
    assert est.shape == (3, 2) and se.shape == (3,)
    assert np.all(np.abs(est - exact).max(1) < 5 * se)
    _, se_small = posterior_mean_monte_carlo(x_small, y, 0.5)
    np.testing.assert_allclose(se_small / se, 2.0, rtol=0.2)


def test_posterior_mean_monte_carlo_rejects_bad_input():
    with pytest.raises(ValueError, match="same d"):
        posterior_mean_monte_carlo(np.zeros((10, 3)), np.zeros((2, 2)), 0.5)
    with pytest.raises(ValueError, match="sigma"):
        posterior_mean_monte_carlo(np.zeros((10, 2)), np.zeros((2, 2)), 0.0)
