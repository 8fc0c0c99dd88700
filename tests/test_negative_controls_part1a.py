"""Negative controls for the checks of Chapters 1-3 (issue 21; Chapter 4: test_negative_controls_ch04.py).

Every check that carries a claim in Chapters 1-4 is a library function (``repdiff.theory.check_*``,
``repdiff.metrics.check_*``) that the chapter calls. Here the *same* function runs on a named wrong answer
(the identity map, σ for σ², an untrained network, the linear DAE of Chapter 2, a saddle point, a
memorizer, ...) and must raise :class:`repdiff.CheckFailed`. The data and settings are the chapters' own.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repdiff import CheckFailed, check
from repdiff.dae.models import ReLUDAE
from repdiff.data.synthetic import GaussianMixture, load_digits, separable_samples
from repdiff.metrics import check_copy_fraction, check_participation
from repdiff.sampling import sample, sigma_schedule
from repdiff.theory import (
    check_all_memorize,
    check_dsm_minimiser,
    check_linear_dae_fit,
    check_linear_dae_minimum,
    check_local_minimum,
    check_memorizer,
    check_monte_carlo,
    check_no_lower_loss,
    check_not_affine,
    check_separable,
    check_tweedie,
    empirical_denoiser,
    empirical_log_density,
    linear_dae_loss,
    linear_dae_solution,
    linearity_defect,
    memorization_errors,
    memorization_loss,
    memorization_solution,
    relu_dae_loss_mc,
    tweedie_denoiser,
    wiener_denoiser,
)

pytestmark = pytest.mark.negative_control


# ----------------------------------------------------------------------------------------------------- Ch 1
@pytest.fixture(scope="module")
def ch1_digits():
    X = load_digits(n=200)
    rng = np.random.default_rng(0)
    y = X[:16] + 0.6 * rng.standard_normal((16, X.shape[1]))
    mu = X.mean(0)
    cov = np.cov(X, rowvar=False) + 1e-3 * np.eye(X.shape[1])
    return X, y, mu, cov


def test_ch01_tweedie_check_rejects_identity_map(ch1_prior):
    prior, queries, sigma = ch1_prior
    # the chapter's tolerance is five Monte-Carlo standard errors (about 1e-2 relative); take 0.02 generously
    with pytest.raises(CheckFailed):
        check_tweedie("posterior mean: Monte Carlo vs Tweedie", prior.log_density, queries, sigma,
                      queries.numpy(), tol=0.02)


def test_ch01_tweedie_check_rejects_sigma_for_sigma2(ch1_prior):
    prior, queries, sigma = ch1_prior
    t = tweedie_denoiser(prior.log_density, queries, sigma)
    wrong = queries.numpy() + (t - queries.numpy()) / sigma**2 * sigma  # y + σ ∇log p_σ(y)
    with pytest.raises(CheckFailed):
        check_tweedie("posterior mean: Monte Carlo vs Tweedie", prior.log_density, queries, sigma, wrong, tol=0.02)


def test_ch01_mixture_formula_check_rejects_sigma_for_sigma2(ch1_prior):
    prior, queries, sigma = ch1_prior
    wrong = prior.posterior_mean(queries, math.sqrt(sigma))  # noise variance σ instead of σ²
    with pytest.raises(CheckFailed):
        check_tweedie("posterior mean: exact mixture formula vs Tweedie", prior.log_density, queries, sigma,
                      wrong, tol=1e-10)


def test_ch01_dsm_check_rejects_a_shrunk_posterior_mean_as_optimum(ch1_prior):
    prior, _, sigma = ch1_prior
    rng = np.random.default_rng(1)
    x, _ = prior.sample(20_000, rng)
    y = x + sigma * rng.standard_normal(x.shape)
    f_star = prior.posterior_mean(torch.from_numpy(y), sigma).numpy()
    outputs = {"posterior mean f*": f_star, "identity f(y) = y": y, "f* shrunk by 0.9": 0.9 * f_star}
    with pytest.raises(CheckFailed):
        check_dsm_minimiser(x, outputs, best="f* shrunk by 0.9")


def test_ch01_femp_tweedie_check_rejects_nearest_training_point(ch1_digits):
    X, y, _, _ = ch1_digits
    Xt = torch.from_numpy(X)
    nearest = X[np.argmin(((y[:, None] - X[None]) ** 2).sum(-1), axis=1)]  # the σ → 0 limit of f_emp
    with pytest.raises(CheckFailed):
        check_tweedie("f_emp vs Tweedie on the empirical density (d = 64)",
                      lambda yy, s: empirical_log_density(yy, Xt, s), y, 0.6, nearest, tol=1e-10)


def test_ch01_femp_chunk_check_rejects_unweighted_chunk_average(ch1_digits):
    X, y, _, _ = ch1_digits
    # the bug the log-sum-exp merge avoids: averaging per-chunk denoisers without their chunks' total weights
    wrong = np.mean([empirical_denoiser(y, X[i:i + 7], 0.6) for i in range(0, len(X) - 7 + 1, 7)], axis=0)
    with pytest.raises(CheckFailed):
        check("f_emp: chunk size 7 vs one chunk", wrong, empirical_denoiser(y, X, 0.6), tol=1e-12)


def test_ch01_tiny_sigma_check_rejects_naive_softmax():
    rng = np.random.default_rng(0)
    X_big = rng.standard_normal((500, 4096))
    y_big = X_big[:8] + 1e-3 * rng.standard_normal((8, 4096))
    with np.errstate(all="ignore"):
        w = np.exp(-((y_big[:, None] - X_big[None]) ** 2).sum(-1) / (2 * 1e-3**2))
        naive = (w @ X_big) / w.sum(1, keepdims=True)
    with pytest.raises(CheckFailed):
        check("f_emp at sigma = 1e-3, d = 4096: returns the nearest training point", naive, X_big[:8], tol=1e-12,
              relative=False)


def test_ch01_wiener_tweedie_check_rejects_sigma_for_sigma2(ch1_digits):
    X, y, mu, cov = ch1_digits
    gauss = GaussianMixture(weights=[1.0], means=[mu], covs=[cov])
    with pytest.raises(CheckFailed):
        check_tweedie("Wiener formula vs Tweedie on the Gaussian's noisy density (d = 64)", gauss.log_density, y,
                      0.6, wiener_denoiser(y, mu, cov, math.sqrt(0.6)), tol=1e-10)


def test_ch01_not_affine_check_rejects_wiener_filter(ch1_digits):
    X, _, mu, cov = ch1_digits
    sig_grid = np.geomspace(0.05, 20, 14)
    defects = [linearity_defect(lambda yy, s: wiener_denoiser(yy, mu, cov, s), X, s, n_pairs=100, seed=i)
               for i, s in enumerate(sig_grid)]
    with pytest.raises(CheckFailed):
        check_not_affine("largest linearity defect of f_emp over the sigma grid", defects, low=0.1)


@pytest.fixture(scope="module")
def ch1_samples(ch1_digits):
    X, _, mu, cov = ch1_digits
    Xt = torch.from_numpy(X)
    sigmas = sigma_schedule(60, sigma_max=20.0, sigma_min=0.01)
    x_T = sigmas[0] * torch.randn(64, X.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    emp = sample(lambda x, s: empirical_denoiser(x, Xt, s), x_T, sigmas, progress=False)
    wien = sample(lambda x, s: wiener_denoiser(x, mu, cov, s), x_T, sigmas, progress=False)
    return Xt, emp, wien


def test_ch01_copy_check_rejects_wiener_samples_as_copies(ch1_samples):
    Xt, _, wien = ch1_samples
    with pytest.raises(CheckFailed):
        check_copy_fraction("memorization fraction of f_emp samples", wien, Xt, low=1.0)


def test_ch01_no_copy_check_rejects_femp_samples(ch1_samples):
    Xt, emp, _ = ch1_samples
    with pytest.raises(CheckFailed):
        check_copy_fraction("memorization fraction of Wiener samples", emp, Xt, high=0.05)


# ----------------------------------------------------------------------------------------------------- Ch 2
@pytest.fixture(scope="module")
def ch2():
    X = load_digits(n=300)
    return X, 0.5, 0.45, 12


def test_ch02_monte_carlo_check_rejects_sigma_for_sigma2(ch2):
    X, sigma, lam, p = ch2
    rng = np.random.default_rng(0)
    n, d = X.shape
    W1, W2 = 0.1 * rng.standard_normal((d, p)), 0.1 * rng.standard_normal((d, p))
    eps = rng.standard_normal((400, n, d))
    per_draw = (((X + sigma * eps) @ W1 @ W2.T - X) ** 2).sum(-1).mean(-1) + lam * ((W1**2).sum() + (W2**2).sum())
    check_monte_carlo("right loss", per_draw, linear_dae_loss(W1, W2, X, sigma, lam))  # the control passes
    wrong = linear_dae_loss(W1, W2, X, math.sqrt(sigma), lam)  # noise term σ‖M‖² instead of σ²‖M‖²
    with pytest.raises(CheckFailed):
        check_monte_carlo("|Monte Carlo - exact loss| in standard errors", per_draw, wrong, n_se=4.0)


def test_ch02_minimum_check_rejects_sigma_for_sigma2_closed_form(ch2):
    X, sigma, lam, p = ch2
    W = linear_dae_solution(X, p, math.sqrt(sigma), lam)
    with pytest.raises(CheckFailed):
        check_linear_dae_minimum(W, W, X, p, sigma, lam, tol=1e-10)


def test_ch02_minimum_check_rejects_closed_form_without_weight_decay(ch2):
    X, sigma, lam, p = ch2
    W = linear_dae_solution(X, p, sigma, 0.0)
    with pytest.raises(CheckFailed):
        check_linear_dae_minimum(W, W, X, p, sigma, lam, tol=1e-10)


def test_ch02_fit_check_rejects_untrained_start(ch2):
    X, sigma, lam, p = ch2
    rng = np.random.default_rng(0)
    W_star = linear_dae_solution(X, p, sigma, lam)
    W1, W2 = rng.standard_normal(W_star.shape) / 8, rng.standard_normal(W_star.shape) / 8
    with pytest.raises(CheckFailed, match="W2 W1"):
        check_linear_dae_fit(W1, W2, W_star, tol=1e-6)


def test_ch02_tie_check_rejects_lambda0_factorisation(ch2):
    X, sigma, lam, p = ch2
    W_star = linear_dae_solution(X, p, sigma, lam)
    C = np.eye(p) + 0.3 * np.random.default_rng(1).standard_normal((p, p))
    W1, W2 = W_star @ C, W_star @ np.linalg.inv(C).T  # same product, unbalanced factors
    with pytest.raises(CheckFailed, match="W1 vs W2"):
        check_linear_dae_fit(W1, W2, W_star, tol=1e-6)


def test_ch02_no_lower_loss_check_rejects_a_wrong_minimum(ch2):
    X, sigma, lam, p = ch2
    W_star = linear_dae_solution(X, p, sigma, lam)
    W_typo = linear_dae_solution(X, p, math.sqrt(sigma), lam)
    found = linear_dae_loss(W_star, W_star, X, sigma, lam)  # what training reaches
    with pytest.raises(CheckFailed):
        check_no_lower_loss([found], linear_dae_loss(W_typo, W_typo, X, sigma, lam))


# ----------------------------------------------------------------------------------------------------- Ch 3
@pytest.fixture(scope="module")
def ch3():
    n, d, p = 5, 64, 16
    sigma, lam = 0.2, 1e-3
    X = separable_samples(n, d, norm=3 * math.sqrt(0.8), seed=0)
    W_mem = memorization_solution(X, p, sigma, lam, require_separable=True)
    return X, W_mem, sigma, lam, n, d, p


def test_ch03_separability_check_rejects_positively_correlated_data(ch3):
    X, *_ = ch3
    with pytest.raises(CheckFailed, match="beta"):
        check_separable(list((X + 1.0)[:, None]), 0.2, min_margin=3.0)


def test_ch03_monte_carlo_check_rejects_sigma_for_sigma2_loss(ch3):
    X, W_mem, sigma, lam, *_ = ch3
    batches = [relu_dae_loss_mc(W_mem, W_mem, X, sigma, lam, n_draws=2000, seed=s) for s in range(1, 11)]
    check_monte_carlo("right loss", batches, memorization_loss(X, sigma, lam))  # the control passes
    with pytest.raises(CheckFailed):
        check_monte_carlo("|Monte Carlo - closed-form loss| in standard errors", batches,
                          memorization_loss(X, math.sqrt(sigma), lam), n_se=4.0)


def test_ch03_relative_loss_check_rejects_sigma_for_sigma2_loss(ch3):
    X, W_mem, sigma, lam, *_ = ch3
    L_mc = float(np.mean([relu_dae_loss_mc(W_mem, W_mem, X, sigma, lam, n_draws=2000, seed=s) for s in range(1, 11)]))
    with pytest.raises(CheckFailed):
        check("closed-form loss vs Monte Carlo of the ReLU loss at W_mem", L_mc,
              memorization_loss(X, math.sqrt(sigma), lam), tol=0.01)


def test_ch03_local_minimum_check_rejects_the_zero_saddle(ch3):
    X, W_mem, sigma, lam, *_ = ch3
    masks = X @ W_mem > 0
    W0 = np.zeros_like(W_mem)  # stationary (gradient 0) but the loss falls along every x_i
    with pytest.raises(CheckFailed, match="eigenvalue"):
        check_local_minimum(W0, W0, X, sigma, lam, masks)


def test_ch03_local_minimum_check_rejects_a_dropped_sample(ch3):
    X, W_mem, sigma, lam, *_ = ch3
    masks = X @ W_mem > 0
    W = W_mem.copy()
    W[:, 0] = 0.0  # a memorizer that forgot sample 1: stationary, a saddle
    with pytest.raises(CheckFailed, match="eigenvalue"):
        check_local_minimum(W, W, X, sigma, lam, masks)


def test_ch03_local_minimum_check_rejects_sigma_for_sigma2_radii(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    masks = X @ W_mem > 0
    W = memorization_solution(X, p, math.sqrt(sigma), lam)  # r_i with σ in place of σ²
    with pytest.raises(CheckFailed, match="gradient"):
        check_local_minimum(W, W, X, sigma, lam, masks)


def test_ch03_flat_direction_check_rejects_the_frozen_pattern(ch3):
    X, W_mem, sigma, lam, *_ = ch3
    # with the frozen pattern of W_mem (no unused unit on for any sample) there is no flat direction to find
    with pytest.raises(CheckFailed, match="flat directions"):
        check_local_minimum(W_mem, W_mem, X, sigma, lam, X @ W_mem > 0, n_flat=1)


def test_ch03_memorizer_check_rejects_untrained_network(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    model = ReLUDAE(d, p, tied=True, seed=0, dtype=torch.float64)
    W = model.W1.detach().numpy()
    with pytest.raises(CheckFailed):
        check_memorizer(W, W, X, sigma, lam, W_mem, n_draws=500)


def test_ch03_memorizer_check_rejects_linear_dae(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    W_lin = linear_dae_solution(X, p, sigma, lam)  # Chapter 2's solution: no ReLU, shared directions
    with pytest.raises(CheckFailed):
        check_memorizer(W_lin, W_lin, X, sigma, lam, W_mem, n_draws=500)


def test_ch03_memorizer_check_rejects_sigma_for_sigma2_radii(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    W = memorization_solution(X, p, math.sqrt(sigma), lam)
    with pytest.raises(CheckFailed):
        check_memorizer(W, W, X, sigma, lam, W_mem, n_draws=500)


def test_ch03_one_hot_check_rejects_linear_dae_representation(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    rng = np.random.default_rng(0)
    noisy = np.repeat(X, 50, axis=0) + sigma * rng.standard_normal((n * 50, d))
    W_lin = linear_dae_solution(X, p, sigma, lam)
    with pytest.raises(CheckFailed):
        check_participation("closed form: largest PR over noisy training inputs", np.maximum(noisy @ W_lin, 0),
                            high=1.01, reduce="max")


def test_ch03_all_memorize_check_rejects_a_linear_dae_variant(ch3):
    X, W_mem, sigma, lam, n, d, p = ch3
    L_ref = relu_dae_loss_mc(W_mem, W_mem, X, sigma, lam, n_draws=500, seed=1)
    errs, gaps = [], []
    for W in (W_mem, linear_dae_solution(X, p, sigma, lam)):
        errs.append(memorization_errors(W, W, X, W_mem)["err_span"])
        gaps.append(relu_dae_loss_mc(W, W, X, sigma, lam, n_draws=500, seed=1) / L_ref - 1)
    with pytest.raises(CheckFailed):
        check_all_memorize(errs, gaps)
