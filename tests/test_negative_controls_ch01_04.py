"""Negative controls for the checks added to Chapters 1, 3 and 4 by the prose audit (fix1a).

Each test runs a chapter's check function (``repdiff.theory.check_*``) on the chapter's own data and settings,
first on the right answer (it must pass, so the control is not trivially failing), then on a named wrong
answer, which must raise :class:`repdiff.CheckFailed`:

- Ch 1, :func:`check_tweedie_monte_carlo`: a Monte-Carlo posterior mean (or a Tweedie side) biased by 1%,
  which the old relative tolerance of five standard errors accepted;
- Ch 3, :func:`check_active_span` (≤ 1.1): a block of the generalizing solution (two distinct directions);
- Ch 4, :func:`check_active_span` (≥ 1.5): memorizers that store each sample in parallel units, whose
  participation ratio is near 2 and passes the chapter's PR window;
- Ch 4, :func:`check_residual_systematic`: two runs that only scatter around the block form (frozen gates),
  and two runs displaced from it already at the smallest σ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repdiff import CheckFailed
from repdiff.dae.models import ReLUDAE
from repdiff.dae.training import train_dae
from repdiff.data.synthetic import low_rank_gaussian_mixture, separable_samples
from repdiff.metrics import check_participation
from repdiff.notebook import check
from repdiff.theory import (
    active_span_dimension,
    block_residual,
    check_active_span,
    check_residual_systematic,
    check_tweedie_monte_carlo,
    generalization_solution,
    memorization_solution,
    posterior_mean_monte_carlo,
    tweedie_denoiser,
)

pytestmark = pytest.mark.negative_control


# ----------------------------------------------------------------------------------------------------- Ch 1
@pytest.fixture(scope="module")
def ch1_mc(ch1_prior):
    prior, queries, sigma = ch1_prior
    x_prior, _ = prior.sample(400_000, np.random.default_rng(0))
    mc, se = posterior_mean_monte_carlo(x_prior, queries, sigma)
    return prior, queries, sigma, mc, se


@pytest.mark.parametrize("bias", [1.01, 0.99])
def test_ch01_tweedie_mc_check_rejects_one_percent_bias(ch1_mc, bias):
    prior, queries, sigma, mc, se = ch1_mc
    check_tweedie_monte_carlo(prior.log_density, queries, sigma, mc, se, n_se=5.0)  # the chapter's run passes
    # the old check (relative error ≤ 5 · max SE / mean |Tweedie|) accepted a 1% bias
    t = tweedie_denoiser(prior.log_density, queries, sigma)
    check("old relative tolerance", bias * mc, t, tol=5 * se.max() / np.abs(t).mean())
    with pytest.raises(CheckFailed):
        check_tweedie_monte_carlo(prior.log_density, queries, sigma, bias * mc, se, n_se=5.0)


def test_ch01_tweedie_mc_check_rejects_biased_tweedie_side(ch1_mc):
    prior, queries, sigma, mc, se = ch1_mc
    # a Tweedie side 1% too large is the same as the estimate 1% too small, relative to it
    with pytest.raises(CheckFailed):
        check_tweedie_monte_carlo(prior.log_density, queries, sigma, mc / 1.01, se, n_se=5.0)


# ----------------------------------------------------------------------------------------------------- Ch 3
N3, D3, P3, SIGMA3, LAM3 = 5, 64, 16, 0.2, 1e-3


@pytest.fixture(scope="module")
def ch3():
    X = separable_samples(N3, D3, norm=3 * math.sqrt(0.8), seed=0)
    W_mem = memorization_solution(X, P3, SIGMA3, LAM3, require_separable=True)
    rng = np.random.default_rng(0)
    noisy = np.repeat(X, 200, axis=0) + SIGMA3 * rng.standard_normal((N3 * 200, D3))
    return X, W_mem, noisy


# ----------------------------------------------------------------------------------------------------- Ch 4
D4, K4, PK4, SIGMA4, LAM4 = 32, 2, 2, 0.2, 1e-4


@pytest.fixture(scope="module")
def ch4():
    mix = low_rank_gaussian_mixture(D4, K4, 2, mean_norm=3.0, mean_cos=-0.6, variances=(0.5, 0.2),
                                    iso_var=0.005, seed=0)
    g = np.random.default_rng(1)
    clusters = [g.multivariate_normal(mix.means[k], mix.covs[k], size=2000, method="eigh") for k in range(K4)]
    noisy = np.concatenate([c[:500] + SIGMA4 * g.standard_normal(c[:500].shape) for c in clusters])
    return clusters, noisy


def test_ch03_active_span_check_rejects_a_generalizing_block(ch3, ch4):
    _, W_mem, noisy3 = ch3
    check_active_span("closed-form memorizer", W_mem, noisy3, high=1.1)  # one direction per input: passes
    clusters, noisy4 = ch4
    W_gen = generalization_solution(clusters, [PK4] * K4, SIGMA4, LAM4, rotation="balanced")
    with pytest.raises(CheckFailed):
        check_active_span("trained: mean effective dimension of the active units' span", W_gen, noisy4, high=1.1)


def _split(W_mem: np.ndarray, n: int, shares: tuple[float, ...]) -> np.ndarray:
    """W_mem with every stored column split over parallel units holding ``shares`` of it (summing to 1): the
    same map W Wᵀ and the same loss, one of the flat directions Chapter 3 describes."""
    W = np.zeros_like(W_mem)
    for c, sh in enumerate(shares):
        W[:, c * n:(c + 1) * n] = W_mem[:, :n] * math.sqrt(sh)
    return W


def test_ch04_active_span_check_rejects_split_memorizer(ch3, ch4):
    X, W_mem, noisy = ch3
    clusters, noisy4 = ch4
    W_gen = generalization_solution(clusters, [PK4] * K4, SIGMA4, LAM4, rotation="balanced")
    check_active_span("generalizing block", W_gen, noisy4, low=1.5)  # the right answer passes
    W_split = _split(W_mem, N3, (0.6, 0.4))
    H = np.maximum(noisy @ W_split, 0)
    # the wrong answer the PR window cannot see: two parallel copies per sample (shares 0.6, 0.4), PR 1.92
    check_participation("mean participation ratio of noisy test inputs (block width p_k = 2)", H,
                        low=1.5, high=2.0)
    assert active_span_dimension(W_split, noisy).mean() < 1.05
    with pytest.raises(CheckFailed):
        check_active_span("mean effective dimension of the active units' span (p_k = 2)", W_split, noisy, low=1.5)


def test_ch04_active_span_check_rejects_trained_memorizer(ch3):
    # Chapter 3's trained network (Adam, tied, 3000 steps): PR about 1.8, samples split over parallel units
    X, _, noisy = ch3
    model = ReLUDAE(D3, P3, tied=True, seed=0, dtype=torch.float64)
    train_dae(model, X, SIGMA3, LAM3, steps=3000, lr=1e-2, noise_draws=16, schedule="cosine", seed=0,
              progress=False)
    W1 = model.W1.detach().numpy()
    check_participation("mean participation ratio of noisy test inputs (block width p_k = 2)",
                        np.maximum(noisy @ W1, 0), low=1.5, high=2.0)  # passes the PR window
    with pytest.raises(CheckFailed):
        check_active_span("mean effective dimension of the active units' span (p_k = 2)", W1, noisy, low=1.5)


def _two_runs(W_ref: np.ndarray, scale: float, seed: int) -> list[np.ndarray]:
    """Two 'runs': W_ref plus independent Gaussian noise, each of Frobenius norm ``scale``."""
    g = np.random.default_rng(seed)
    return [W_ref + scale * e / np.linalg.norm(e) for e in g.standard_normal((2, *W_ref.shape))]


SIG_R = [0.3, 0.6, 1.0, 1.5]


def _shared_and_spread(clusters, centres, scales):
    R_mean, spread = [], []
    for i, (s, W_c, a) in enumerate(zip(SIG_R, centres, scales, strict=True)):
        W_star = generalization_solution(clusters, [PK4] * K4, s, LAM4, rotation="balanced")
        Wa, Wb = _two_runs(W_star if W_c is None else W_c, a, seed=i)
        R_mean.append(block_residual(0.5 * (Wa + Wb), W_star))
        spread.append(block_residual(Wa, Wb))
    return np.array(R_mean), np.array(spread)


def test_ch04_residual_systematic_check_rejects_pure_training_noise(ch4):
    # frozen gates: the minimiser is the block form at every σ, so two runs only scatter around it
    clusters, _ = ch4
    scales = [0.006, 0.009, 0.011, 0.017]  # about the chapter's seed-to-seed distances / sqrt(2)
    R_mean, spread = _shared_and_spread(clusters, [None] * 4, scales)
    with pytest.raises(CheckFailed):
        check_residual_systematic(R_mean, spread, low=2.0, high=2.0)


def test_ch04_residual_systematic_check_rejects_displacement_at_small_sigma(ch4):
    # runs that settle near a wrong block (Eq. 8 at σ = 3) whatever the training σ: displaced at every σ,
    # including the smallest, where the theorem says gates do not flip
    clusters, _ = ch4
    W_wrong = generalization_solution(clusters, [PK4] * K4, 3.0, LAM4, rotation="balanced")
    R_mean, spread = _shared_and_spread(clusters, [W_wrong] * 4, [0.006] * 4)
    z = R_mean / (spread / 2)
    assert z[-1] >= 2.0 and z[0] > 2.0  # passes the large-σ part, so the small-σ part is what rejects it
    with pytest.raises(CheckFailed):
        check_residual_systematic(R_mean, spread, low=2.0, high=2.0)
