"""Negative controls of the checks added to Chapters 5 and 6 after the prose audit.

Each test feeds a check the wrong answer it exists to reject (named in the test) and asserts ``CheckFailed``;
a few tests without the marker run the same check on the right answer, so a check that always fails is caught.
"""

from __future__ import annotations

import numpy as np
import pytest

from repdiff import CheckFailed
from repdiff.dae import image_checks, phase_checks
from repdiff.data.synthetic import low_rank_gaussian_mixture, separable_samples
from repdiff.theory import check_separable, generalization_solution, memorization_solution

NS, PS = [4, 8, 16, 32, 64, 128], [4, 8, 16, 32, 64]


@pytest.fixture(scope="module")
def hybrid():
    """Chapter 5's hybrid training set (two Gaussian modes and a duplicate) and its closed form at σ = 0.2."""
    mix = low_rank_gaussian_mixture(16, 3, 2, mean_cos=-0.5, variances=(0.5, 0.2), iso_var=0.005, seed=0)
    pool, labels = mix.sample(3000, np.random.default_rng(0))
    clusters = [pool[labels == 0][:300], pool[labels == 1][:300], np.tile(pool[labels == 2][0], (30, 1))]
    W_star = generalization_solution(clusters, [3, 3, 1], 0.2, 1e-3, rotation="balanced")
    return clusters, np.concatenate(clusters), W_star


# --- Chapter 5, item 6: separability needs the margin too ----------------------------------------------------


def test_ch05_hybrid_set_is_separable_at_sigma_02(hybrid):
    clusters, _, _ = hybrid
    check_separable(clusters, 0.2, min_margin=3.0)


@pytest.mark.negative_control
def test_ch05_separability_rejects_the_same_set_at_larger_noise(hybrid):
    """β < 0 still holds, but at σ = 0.5 the margin is below 3σ: the β-only check would have passed it."""
    clusters, _, _ = hybrid
    with pytest.raises(CheckFailed):
        check_separable(clusters, 0.5, min_margin=3.0)


# --- Chapter 5, item 1: a block has distinct directions -------------------------------------------------------


def test_ch05_block_rank_accepts_the_closed_form_block(hybrid):
    _, _, W_star = hybrid
    on = np.array([1, 1, 1, 0, 0, 0, 0], dtype=float)
    assert phase_checks.check_block_rank("closed-form block", W_star, on, low=2.5) > 2.9


@pytest.mark.negative_control
def test_ch05_block_rank_rejects_parallel_copies(hybrid):
    """Chapter 3's split memorizer: three units along one stored direction (participation ratio per input > 1.5)."""
    _, _, W_star = hybrid
    u = W_star[:, 0] / np.linalg.norm(W_star[:, 0])
    W = np.zeros_like(W_star)
    W[:, :3] = np.outer(u, [0.6, 0.5, 0.4])
    with pytest.raises(CheckFailed):
        phase_checks.check_block_rank("parallel copies", W, np.array([1, 1, 1, 0, 0, 0, 0.0]), low=2.5)


# --- Chapter 5, item 14: perturbed starts return to a minimum, not to a saddle ---------------------------------


@pytest.mark.negative_control
def test_ch05_returns_rejects_the_origin(hybrid):
    """W = 0 is a stationary point of Eq. 6 but not a minimum: perturbed starts run away from it."""
    _, X, W_star = hybrid
    ratios = phase_checks.perturb_and_retrain(np.zeros_like(W_star), X[::10], 0.2, 1e-3, rel_eps=0.1, n_pert=1,
                                              steps=300)
    with pytest.raises(CheckFailed):
        phase_checks.check_returns("origin", ratios, high=0.5)


def test_ch05_returns_accepts_ratios_below_the_bound():
    assert phase_checks.check_returns("came back", [0.1, 0.2], high=0.5) == 0.2


# --- Chapter 5, item 11: overlap measured by an AUROC ----------------------------------------------------------


@pytest.mark.negative_control
def test_ch05_auroc_overlap_rejects_separated_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 500), rng.normal(0.6, 0.1, 500)
    with pytest.raises(CheckFailed):
        phase_checks.check_auroc_overlap("separated", a, b, low=0.35, high=0.65)
    with pytest.raises(CheckFailed):
        phase_checks.check_auroc_overlap("separated, reversed", b, a, low=0.35, high=0.65)


def test_ch05_auroc_overlap_accepts_one_distribution_split_in_two():
    rng = np.random.default_rng(0)
    phase_checks.check_auroc_overlap("same law", rng.normal(size=500), rng.normal(size=500), low=0.35, high=0.65)


# --- Chapter 5, item 5: the DAE/f_emp ratio at σ = 1 -------------------------------------------------------------


@pytest.mark.negative_control
def test_ch05_far_below_reference_at_sigma_1_rejects_a_model_copying_half_as_often():
    """At σ = 1 the window is a third of f_emp's fraction; a model copying half as often as f_emp fails."""
    emp = np.array([0.74, 0.61, 0.53, 0.41, 0.29, 0.21])[:, None]
    with pytest.raises(CheckFailed):
        phase_checks.check_far_below_reference("half of f_emp", np.tile(emp / 2, (1, len(PS))), emp, high=1 / 3)


# --- Chapter 5, item 13: PR grows more with p than with n --------------------------------------------------------


@pytest.mark.negative_control
def test_ch05_pr_more_with_p_rejects_a_table_depending_on_n_only():
    n = np.asarray(NS, dtype=float)
    table = np.tile((1 + np.log2(n) / 4)[:, None], (1, len(PS)))
    with pytest.raises(CheckFailed):
        phase_checks.check_pr_rises_more_with_p("n only", table, low=1.5)


def test_ch05_pr_more_with_p_accepts_a_table_growing_with_p():
    n, p = np.asarray(NS, dtype=float)[:, None], np.asarray(PS, dtype=float)[None, :]
    out = phase_checks.check_pr_rises_more_with_p("p mostly", (p / 4) * (1 + np.log2(n) / 20), low=1.5)
    assert out["ratio_p"].min() > 10


# --- Chapter 6, item 9: the data term against Cor. 3.2 -----------------------------------------------------------


@pytest.fixture(scope="module")
def simplex():
    """Ten pairwise negatively correlated samples of norm 10 (margin 10/9 ≈ 3.7σ at σ = 0.3) and Cor. 3.2."""
    X = separable_samples(10, 64, norm=10.0, seed=0)
    return X, memorization_solution(X, 16, 0.3, 1e-3)


@pytest.mark.negative_control
def test_ch06_data_term_rejects_right_norms_wrong_fit(simplex):
    """The closed form with its W2 columns permuted: the same weight norms (weight-decay term), a wrong data fit."""
    X, W = simplex
    perm = np.roll(np.arange(W.shape[1]), 1)
    with pytest.raises(CheckFailed):
        image_checks.check_data_term_ratio("permuted W2", W, W[:, perm], X, 0.3, 1e-3, low=1.3, high=2.0)


@pytest.mark.negative_control
def test_ch06_data_term_rejects_a_fit_as_cor32_says(simplex):
    """On separable data the closed form fits the data as Cor. 3.2 says (ratio 1): the chapter's lower bound
    (the digits' overlap still costs) rejects it."""
    X, W = simplex
    ratio = image_checks.data_term_ratio(W, W, X, 0.3, 1e-3)
    assert abs(ratio - 1) < 0.05
    with pytest.raises(CheckFailed):
        image_checks.check_data_term_ratio("Cor. 3.2 on a simplex", W, W, X, 0.3, 1e-3, low=1.3, high=2.0)


# --- Chapter 6, item 16: other digits' units switched on ---------------------------------------------------------


@pytest.mark.negative_control
def test_ch06_other_units_rejects_separable_samples(simplex):
    """A centred simplex (pairwise cosine −1/9, margin ≈ 3.7σ): a noisy sample almost never switches on another unit."""
    X, _ = simplex
    with pytest.raises(CheckFailed):
        image_checks.check_other_units_on("simplex", X, 0.3, low=1.0)


def test_ch06_other_units_counts_overlapping_samples():
    """Positively correlated samples (a shared offset): every noisy sample switches on all other units."""
    X = separable_samples(10, 64, norm=3.0, seed=0) + 1.0
    assert image_checks.other_units_on(X, 0.3) > 8.5
