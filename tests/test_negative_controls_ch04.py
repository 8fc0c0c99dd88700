"""Negative controls for the checks of Chapter 4, the generalization regime (issue 21).

As in test_negative_controls_part1a.py (Chapters 1-3): the chapter's check functions
(``repdiff.theory.check_*``) run on a named wrong answer (an untrained network, the block with σ for σ², the
pooled linear DAE, the identity map, a memorizer, a different mixture, ...) and must raise
:class:`repdiff.CheckFailed`. The data and settings are the chapter's own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repdiff import CheckFailed
from repdiff.dae.models import ReLUDAE, activation_frequency
from repdiff.data.synthetic import low_rank_gaussian_mixture
from repdiff.metrics import check_participation
from repdiff.theory import (
    check_blocks,
    check_convergence_rates,
    check_mode_maps,
    check_printed_bound_low,
    check_residual_grows,
    check_same_blocks,
    check_separable,
    check_test_loss,
    check_train_test_agree,
    cluster_block,
    empirical_denoiser,
    generalization_solution,
    limit_block,
    linear_dae_solution,
    linear_map_population_loss,
    wiener_block_test_loss,
)

pytestmark = pytest.mark.negative_control


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
