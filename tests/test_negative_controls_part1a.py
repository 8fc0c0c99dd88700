"""Negative controls for the checks of Chapters 1-4 (issue 21).

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
from repdiff.dae.models import ReLUDAE, activation_frequency
from repdiff.data.synthetic import GaussianMixture, load_digits, low_rank_gaussian_mixture, separable_samples
from repdiff.metrics import check_copy_fraction, check_participation
from repdiff.sampling import sample, sigma_schedule
from repdiff.theory import (
    check_all_memorize,
    check_blocks,
    check_convergence_rates,
    check_dsm_minimiser,
    check_linear_dae_fit,
    check_linear_dae_minimum,
    check_local_minimum,
    check_memorizer,
    check_mode_maps,
    check_monte_carlo,
    check_no_lower_loss,
    check_not_affine,
    check_printed_bound_low,
    check_residual_grows,
    check_same_blocks,
    check_separable,
    check_test_loss,
    check_train_test_agree,
    check_tweedie,
    cluster_block,
    empirical_denoiser,
    empirical_log_density,
    generalization_solution,
    limit_block,
    linear_dae_loss,
    linear_dae_solution,
    linear_map_population_loss,
    linearity_defect,
    memorization_errors,
    memorization_loss,
    memorization_solution,
    relu_dae_loss_mc,
    tweedie_denoiser,
    wiener_block_test_loss,
    wiener_denoiser,
)

pytestmark = pytest.mark.negative_control


# ----------------------------------------------------------------------------------------------------- Ch 1
@pytest.fixture(scope="module")
def ch1_prior():
    prior = GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]],
        covs=[np.diag([0.30, 0.05]), [[0.10, 0.06], [0.06, 0.10]], np.diag([0.05, 0.40])],
    )
    queries = torch.tensor([[-1.0, 0.5], [0.0, 0.0], [1.2, 0.2], [0.8, -1.0], [2.5, 2.0]], dtype=torch.float64)
    return prior, queries, 0.5


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


# ----------------------------------------------------------------------------------------------------- Ch 4
D4, K4, PK4, SIGMA4, LAM4 = 32, 2, 2, 0.2, 1e-4


def _mixture(seed: int = 0, mean_cos: float = -0.6):
    return low_rank_gaussian_mixture(D4, K4, 2, mean_norm=3.0, mean_cos=mean_cos, variances=(0.5, 0.2),
                                     iso_var=0.005, seed=seed)


def _second_moments(mix):
    return [mix.covs[k] + np.outer(mix.means[k], mix.means[k]) for k in range(K4)]


@pytest.fixture(scope="module")
def ch4():
    mix = _mixture()
    g = np.random.default_rng(1)
    clusters = [g.multivariate_normal(mix.means[k], mix.covs[k], size=2000, method="eigh") for k in range(K4)]
    return mix, _second_moments(mix), clusters


def test_ch04_separability_check_rejects_positively_correlated_modes():
    mix = _mixture(mean_cos=0.6)
    g = np.random.default_rng(1)
    clusters = [g.multivariate_normal(mix.means[k], mix.covs[k], size=500, method="eigh") for k in range(K4)]
    with pytest.raises(CheckFailed):
        check_separable(clusters, SIGMA4, min_margin=3.0)


def test_ch04_block_check_rejects_untrained_network(ch4):
    _, _, clusters = ch4
    model = ReLUDAE(D4, K4 * PK4, tied=True, seed=0)
    freq = np.stack([activation_frequency(model, torch.tensor(c[:1000], dtype=torch.float32), sigma=SIGMA4,
                                          n_draws=4, seed=k).numpy() for k, c in enumerate(clusters)])
    with pytest.raises(CheckFailed):
        check_blocks(freq, PK4, leak_max=0.01)


def _ch4_targets(S, clusters):
    W_gen = generalization_solution(clusters, [PK4] * K4, SIGMA4, LAM4)
    blocks = [W_gen[:, k * PK4:(k + 1) * PK4] @ W_gen[:, k * PK4:(k + 1) * PK4].T for k in range(K4)]
    limits = [limit_block(S[k], 0.5, PK4, SIGMA4, LAM4) for k in range(K4)]
    typos = [limit_block(S[k], 0.5, PK4, SIGMA4, LAM4, printed_typo=True) for k in range(K4)]
    return blocks, limits, typos


def test_ch04_mode_map_check_rejects_sigma_for_sigma2_network(ch4):
    _, S, clusters = ch4
    blocks, limits, typos = _ch4_targets(S, clusters)
    with pytest.raises(CheckFailed):
        check_mode_maps(typos, blocks, limits, typos, tol=0.03, typo_ratio=5.0)


def test_ch04_mode_map_check_rejects_pooled_linear_dae(ch4):
    _, S, clusters = ch4
    blocks, limits, typos = _ch4_targets(S, clusters)
    W = linear_dae_solution(np.concatenate(clusters), K4 * PK4, SIGMA4, LAM4)  # one map for both modes
    with pytest.raises(CheckFailed):
        check_mode_maps([W @ W.T] * K4, blocks, limits, typos, tol=0.03, typo_ratio=5.0)


def test_ch04_balanced_check_rejects_one_unit_per_mode(ch4):
    _, _, clusters = ch4
    W1 = generalization_solution(clusters, [1] * K4, SIGMA4, LAM4, rotation="balanced")
    W = np.concatenate([W1, np.zeros((D4, K4 * PK4 - K4))], axis=1)  # a spiky code: one unit per mode
    rng = np.random.default_rng(0)
    H = np.concatenate([np.maximum((c[:500] + SIGMA4 * rng.standard_normal(c[:500].shape)) @ W, 0)
                        for c in clusters])
    with pytest.raises(CheckFailed):
        check_participation("mean participation ratio of noisy test inputs (block width p_k = 2)", H,
                            low=1.5, high=2.0)


def test_ch04_test_loss_check_rejects_identity_map(ch4):
    _, S, _ = ch4
    exact = sum(0.5 * wiener_block_test_loss(S[k], PK4, SIGMA4) for k in range(K4))
    ident = sum(0.5 * linear_map_population_loss(np.eye(D4), S[k], SIGMA4) for k in range(K4))  # = d σ²
    with pytest.raises(CheckFailed):
        check_test_loss(ident, ident, exact)


def test_ch04_test_loss_check_rejects_sigma_for_sigma2_block(ch4):
    _, S, _ = ch4
    exact = sum(0.5 * wiener_block_test_loss(S[k], PK4, SIGMA4) for k in range(K4))
    typo = sum(0.5 * linear_map_population_loss(limit_block(S[k], 0.5, PK4, SIGMA4, 0.0, printed_typo=True),
                                                 S[k], SIGMA4) for k in range(K4))
    with pytest.raises(CheckFailed):
        check_test_loss(typo, typo, exact)


def test_ch04_printed_bound_check_rejects_a_bound_with_the_noise_term(ch4):
    _, S, _ = ch4
    exact = sum(0.5 * wiener_block_test_loss(S[k], PK4, SIGMA4) for k in range(K4))
    with pytest.raises(CheckFailed):
        check_printed_bound_low(exact, exact, high=0.95)


def test_ch04_train_test_check_rejects_a_memorizer(ch4):
    mix, _, clusters = ch4
    X = np.concatenate([c[:100] for c in clusters])  # f_emp of 200 training points: the memorizer
    g = np.random.default_rng(5)
    X_test = np.concatenate([g.multivariate_normal(mix.means[k], mix.covs[k], size=100) for k in range(K4)])

    def loss(data):
        noisy = data + SIGMA4 * g.standard_normal(data.shape)
        return float(((empirical_denoiser(noisy, X, SIGMA4) - data) ** 2).sum(1).mean())

    with pytest.raises(CheckFailed):
        check_train_test_agree(loss(X), loss(X_test), tol=0.02)


def test_ch04_convergence_check_rejects_errors_against_the_printed_limit(ch4):
    mix, S, _ = ch4
    sizes = [25, 100, 400, 1600, 6400]
    typo0 = limit_block(S[0], 0.5, PK4, SIGMA4, 0.0, printed_typo=True)
    best0 = wiener_block_test_loss(S[0], PK4, SIGMA4)
    errs, excess = [], []
    for m in sizes:
        Xk = np.random.default_rng(100).multivariate_normal(mix.means[0], mix.covs[0], size=m, method="eigh")
        Bk = cluster_block(Xk, 2 * m, PK4, SIGMA4, 0.0)
        errs.append(np.linalg.norm(Bk @ Bk.T - typo0) / np.linalg.norm(typo0))  # plateaus at the typo's bias
        excess.append(linear_map_population_loss(Bk @ Bk.T, S[0], SIGMA4) - best0)
    with pytest.raises(CheckFailed, match="block error"):
        check_convergence_rates(sizes, errs, excess)


def test_ch04_convergence_check_rejects_excess_measured_against_the_printed_block(ch4):
    mix, S, _ = ch4
    sizes = [25, 100, 400, 1600, 6400]
    lim0 = limit_block(S[0], 0.5, PK4, SIGMA4, 0.0)
    typo_loss = linear_map_population_loss(limit_block(S[0], 0.5, PK4, SIGMA4, 0.0, printed_typo=True), S[0], SIGMA4)
    errs, excess = [], []
    for m in sizes:
        Xk = np.random.default_rng(100).multivariate_normal(mix.means[0], mix.covs[0], size=m, method="eigh")
        Bk = cluster_block(Xk, 2 * m, PK4, SIGMA4, 0.0)
        errs.append(np.linalg.norm(Bk @ Bk.T - lim0) / np.linalg.norm(lim0))
        excess.append(abs(linear_map_population_loss(Bk @ Bk.T, S[0], SIGMA4) - typo_loss))  # wrong minimum
    with pytest.raises(CheckFailed, match="excess"):
        check_convergence_rates(sizes, errs, excess)


def test_ch04_same_blocks_check_rejects_a_different_mixture(ch4):
    _, S, _ = ch4
    S_other = _second_moments(_mixture(seed=1))
    maps_a = [limit_block(S[k], 0.5, PK4, SIGMA4, LAM4) for k in range(K4)]
    maps_b = [limit_block(S_other[k], 0.5, PK4, SIGMA4, LAM4) for k in range(K4)]
    with pytest.raises(CheckFailed):
        check_same_blocks(maps_a, maps_b, tol=0.05)


def test_ch04_same_blocks_check_rejects_swapped_modes(ch4):
    _, S, _ = ch4
    maps = [limit_block(S[k], 0.5, PK4, SIGMA4, LAM4) for k in range(K4)]
    with pytest.raises(CheckFailed):
        check_same_blocks(maps, maps[::-1], tol=0.05)


def test_ch04_residual_check_rejects_a_residual_that_does_not_grow():
    # the frozen-gate minimiser is the block form at every σ: its residual stays at the training floor
    floor = 0.008
    with pytest.raises(CheckFailed):
        check_residual_grows([floor, 1.1 * floor, 0.9 * floor, 1.2 * floor], floor, low=2.0)
