"""Negative controls of Chapters 5 and 6: every check that carries a claim, run on a named wrong answer, fails.

Each test calls the *same* function the chapter calls (from :mod:`repdiff.dae.phase`), with the chapter's data and
thresholds, on the natural competitor of the claim (the identity map, the Wiener filter, shuffled model labels,
an untrained model, a table that ignores the width or the noise level, ...) and asserts ``CheckFailed``. Two
tests without the marker run the same checks on the right answer, so a check that always fails is caught too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repdiff import CheckFailed
from repdiff.dae import image_checks, measures, phase, phase_checks
from repdiff.dae.models import ReLUDAE
from repdiff.data import images as imd
from repdiff.data.synthetic import low_rank_gaussian_mixture
from repdiff.metrics import denoiser_memorization
from repdiff.theory import (
    empirical_denoiser,
    generalization_solution,
    linear_dae_solution,
    memorization_loss,
    memorization_solution,
    relu_dae_loss_mc,
    wiener_denoiser,
)

# --- Chapter 5's data: the phase diagram's power-law Gaussian, the hybrid mixture ---------------------------

NS, PS, SIGMAS = [4, 8, 16, 32, 64, 128], [4, 8, 16, 32, 64], [0.2, 0.5, 1.0]


@pytest.fixture(scope="module")
def ch05_pd():
    X_pool = phase.power_law_gaussian(max(NS), 16, decay=1.0, seed=0)
    X_test = phase.power_law_gaussian(256, 16, decay=1.0, seed=1)
    return X_pool, X_test, phase.power_law_covariance(16, decay=1.0)


@pytest.fixture(scope="module")
def ch05_mixture():
    mix = low_rank_gaussian_mixture(16, 3, 2, mean_cos=-0.5, variances=(0.5, 0.2), iso_var=0.005, seed=0)
    pool, labels = mix.sample(3000, np.random.default_rng(0))
    return pool, labels


@pytest.mark.parametrize("n", [4, 128])
@pytest.mark.negative_control
def test_ch05_memorizer_check_rejects_the_identity_map(ch05_pd, n):
    X_pool, X_test, _ = ch05_pd
    with pytest.raises(CheckFailed):
        phase_checks.check_memorizer("identity", lambda y: y, X_pool[:n], X_test, 0.2, low=0.9, n_draws=4, seed=1)


@pytest.mark.parametrize("n", [4, 128])
@pytest.mark.negative_control
def test_ch05_memorizer_check_rejects_the_wiener_filter(ch05_pd, n):
    X_pool, X_test, C = ch05_pd
    with pytest.raises(CheckFailed):
        phase_checks.check_memorizer("Wiener", lambda y: wiener_denoiser(y, np.zeros(16), C, 0.2), X_pool[:n], X_test,
                              0.2, low=0.9, n_draws=4, seed=1)


def test_ch05_memorizer_check_passes_the_empirical_optimal_denoiser(ch05_pd):
    """The positive side of the same check (the chapter runs it for every n)."""
    X_pool, X_test, _ = ch05_pd
    phase_checks.check_memorizer("f_emp", lambda y: empirical_denoiser(y, X_pool[:128], 0.2), X_pool[:128], X_test, 0.2,
                          low=0.9, n_draws=4, seed=1)


@pytest.mark.negative_control
def test_ch05_far_below_reference_rejects_the_reference_itself(ch05_pd):
    """f_emp put in the place of the DAEs: it copies as often as the reference (ratio 1)."""
    X_pool, X_test, _ = ch05_pd
    emp = np.array([denoiser_memorization(lambda y, n=n: empirical_denoiser(y, X_pool[:n], 0.2), X_pool[:n],
                                          X_test, 0.2, n_draws=1, seed=1) for n in NS[:3]])
    with pytest.raises(CheckFailed):
        phase_checks.check_far_below_reference("f_emp as the model", np.tile(emp[:, None], (1, len(PS))), emp[:, None],
                                        high=0.25)


@pytest.mark.negative_control
def test_ch05_memorizing_gap_rejects_the_wiener_filter(ch05_pd):
    """The Wiener filter treats new points like training points: relative gap near 0 in every cell."""
    X_pool, X_test, C = ch05_pd
    rng = np.random.default_rng(0)
    gaps = []
    for n in NS:
        X_rep = np.tile(X_pool[:n], (8, 1))
        tr = np.mean(np.sum((wiener_denoiser(X_rep + 0.2 * rng.standard_normal(X_rep.shape), np.zeros(16), C, 0.2)
                             - X_rep) ** 2, axis=1))
        te = np.mean(np.sum((wiener_denoiser(X_test + 0.2 * rng.standard_normal(X_test.shape), np.zeros(16), C, 0.2)
                             - X_test) ** 2, axis=1))
        gaps.append(1 - tr / te)
    with pytest.raises(CheckFailed):
        phase_checks.check_memorizing_gap("Wiener", np.tile(np.array(gaps)[:, None], (1, len(PS))), NS, PS, low=0.75)


@pytest.mark.negative_control
def test_ch05_boundary_check_rejects_a_boundary_at_fixed_n():
    """A gap that depends on n only (the crossing at the same n for every width) has slope 0."""
    n = np.asarray(NS, dtype=float)
    gap_n_only = np.tile((1 / (1 + n / 24))[:, None], (1, len(PS)))
    with pytest.raises(CheckFailed):
        phase_checks.check_boundary_moves_with_p("fixed n", gap_n_only, NS, PS, low=0.4, high=1.6)


def test_ch05_boundary_check_accepts_a_boundary_along_n_proportional_to_p():
    n, p = np.asarray(NS, dtype=float)[:, None], np.asarray(PS, dtype=float)[None, :]
    out = phase_checks.check_boundary_moves_with_p("n* = 4p", 1 / (1 + n / (4 * p)), NS, PS, low=0.4, high=1.6)
    np.testing.assert_allclose(out["slope"], 1.0, atol=0.05)


@pytest.mark.negative_control
def test_ch05_region_check_rejects_a_table_that_ignores_sigma():
    rng = np.random.default_rng(0)
    one = rng.uniform(size=(len(NS), len(PS)))
    with pytest.raises(CheckFailed):
        phase_checks.check_region_shrinks("σ-independent", np.stack([one] * len(SIGMAS), axis=-1), high=-3)


@pytest.mark.negative_control
def test_ch05_pr_check_rejects_a_code_flat_in_n():
    """Participation ratio that depends on the width only (every model uses its units alike, whatever n)."""
    flat = np.tile(np.asarray(PS, dtype=float)[None, :] / 3, (len(NS), 1))
    with pytest.raises(CheckFailed):
        phase_checks.check_pr_rises_with_n("flat in n", flat, low=1.1)


def _hybrid(ch05_mixture):
    pool, labels = ch05_mixture
    clusters = [pool[labels == 0][:300], pool[labels == 1][:300], np.tile(pool[labels == 2][0], (30, 1))]
    W_star = generalization_solution(clusters, [3, 3, 1], 0.2, 1e-3, rotation="balanced")
    return np.concatenate(clusters), W_star


@pytest.mark.negative_control
def test_ch05_distinct_minimum_rejects_a_random_start(ch05_mixture):
    """An untrained model is no stationary point: its gradient is far above the Monte-Carlo floor."""
    X_h, W_star = _hybrid(ch05_mixture)
    init = ReLUDAE(16, 7, seed=2)
    W1, W2 = init.W1.detach().double().numpy(), init.W2.detach().double().numpy()
    with pytest.raises(CheckFailed):
        phase_checks.check_distinct_minimum("random start", W1, W2, W_star, X_h, 0.2, 1e-3)


@pytest.mark.negative_control
def test_ch05_distinct_minimum_rejects_the_closed_form_itself(ch05_mixture):
    """The closed form is stationary but has no higher loss: not *another* minimum."""
    X_h, W_star = _hybrid(ch05_mixture)
    with pytest.raises(CheckFailed):
        phase_checks.check_distinct_minimum("closed form", W_star, W_star, W_star, X_h, 0.2, 1e-3)


def _closed_form_std(ch05_mixture):
    pool, labels = ch05_mixture
    X_m = np.stack([pool[labels == k][0] for k in range(3)])
    cl = [pool[labels == k][300:600] for k in range(3)]
    lam_m = 0.085 * float(np.mean(np.sum(X_m**2, axis=1))) / 3
    W_m = memorization_solution(X_m, 9, 0.2, lam_m)
    W_g = generalization_solution(cl, [3, 3, 3], 0.2, 1e-3, rotation="balanced")
    X_g = np.concatenate(cl)
    return (measures.representation_stats(W_m, X_m, 0.2, n_draws=300, seed=1)["std"],
            measures.representation_stats(W_g, X_g, 0.2, n_draws=1, seed=1)["std"],
            measures.representation_stats(W_g, X_g, 0.2, n_draws=1, seed=2)["std"])


@pytest.mark.negative_control
def test_ch05_std_check_rejects_shuffled_model_labels(ch05_mixture):
    std_m, std_g, _ = _closed_form_std(ch05_mixture)
    phase_checks.check_median_ratio("closed forms (the chapter's pair passes)", std_m, std_g, low=1.1)
    a, b = phase_checks.shuffled_labels(std_m, std_g, seed=0)
    with pytest.raises(CheckFailed):
        phase_checks.check_median_ratio("shuffled labels", a, b, low=1.1)


@pytest.mark.negative_control
def test_ch05_std_check_rejects_two_generalizing_models(ch05_mixture):
    _, std_g, std_g2 = _closed_form_std(ch05_mixture)
    with pytest.raises(CheckFailed):
        phase_checks.check_median_ratio("two generalizing", std_g2, std_g, low=1.1)


@pytest.mark.negative_control
def test_ch05_trained_std_window_rejects_the_closed_forms(ch05_mixture):
    """The 'no clear separation' window of the trained models rejects the closed forms' ratio."""
    std_m, std_g, _ = _closed_form_std(ch05_mixture)
    with pytest.raises(CheckFailed):
        phase_checks.check_median_ratio("closed forms in the trained window", std_m, std_g, low=0.9, high=1.1)


# --- Chapter 6's data: centred digits, one per class for the memorizing model --------------------------------


@pytest.fixture(scope="module")
def ch06_digits():
    X_all, labels = imd.digits_with_labels()
    perm = np.random.default_rng(0).permutation(len(X_all))
    train_idx, test_idx = perm[:1500], perm[1500:1797]
    mu = X_all[train_idx].mean(0)
    X_mem_raw = X_all[train_idx][imd.one_per_class(labels[train_idx])]
    return X_mem_raw, X_mem_raw - mu, X_all[train_idx] - mu, X_all[test_idx] - mu


def _identity_dae(d: int) -> ReLUDAE:
    """A ReLU DAE with p = 2d units that computes the identity: x = relu(x) − relu(−x)."""
    model = ReLUDAE(d, 2 * d, seed=0, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        model.W1.copy_(torch.cat([eye, -eye], dim=1))
        model.W2.copy_(torch.cat([eye, -eye], dim=1))
    return model


def _closed_form_dae(X: np.ndarray, p: int, sigma: float, lam: float) -> ReLUDAE:
    """The memorizing closed form of Cor. 3.2 as a model (W1 = W2)."""
    W = torch.as_tensor(memorization_solution(X, p, sigma, lam))
    model = ReLUDAE(X.shape[1], p, seed=0, dtype=torch.float64)
    with torch.no_grad():
        model.W1.copy_(W)
        model.W2.copy_(W)
    return model


@pytest.mark.negative_control
def test_ch06_centred_cosine_check_rejects_raw_images(ch06_digits):
    X_mem_raw, *_ = ch06_digits
    with pytest.raises(CheckFailed):
        image_checks.check_mean_pairwise_cosine("raw images as if centred", X_mem_raw, low=-0.15, high=0.0)


@pytest.mark.negative_control
def test_ch06_raw_cosine_check_rejects_centred_images(ch06_digits):
    _, X_mem, _, _ = ch06_digits
    with pytest.raises(CheckFailed):
        image_checks.check_mean_pairwise_cosine("centred images as if raw", X_mem, low=0.45)


@pytest.mark.parametrize("low", [0.08, 0.05, 0.15])  # mem vs gen, authors' vs our decay, centred vs raw
@pytest.mark.negative_control
def test_ch06_units_closer_rejects_the_same_model_on_both_sides(ch06_digits, low):
    _, X_mem, _, _ = ch06_digits
    W = ReLUDAE(64, 16, seed=0).W1
    with pytest.raises(CheckFailed):
        image_checks.check_units_closer("same model", W, X_mem, W, X_mem, k=len(X_mem), low=low)


@pytest.mark.negative_control
def test_ch06_units_closer_rejects_untrained_units_against_stored_digits(ch06_digits):
    _, X_mem, _, _ = ch06_digits
    W_stored = memorization_solution(X_mem, 16, 0.3, 1e-3)
    with pytest.raises(CheckFailed):
        image_checks.check_units_closer("untrained vs stored", ReLUDAE(64, 16, seed=0).W1, X_mem, W_stored, X_mem,
                                 k=len(X_mem), low=0.08)


@pytest.mark.negative_control
def test_ch06_loss_ratio_window_rejects_an_untrained_model_and_the_formula_itself(ch06_digits):
    _, X_mem, _, _ = ch06_digits
    formula = memorization_loss(X_mem, 0.3, 1e-3)
    init = ReLUDAE(64, 16, seed=0)
    untrained = relu_dae_loss_mc(init.W1.detach().double().numpy(), init.W2.detach().double().numpy(), X_mem,
                                 0.3, 1e-3)
    with pytest.raises(CheckFailed):
        image_checks.check_ratio("untrained model", untrained, formula, low=1.3, high=1.8)
    with pytest.raises(CheckFailed):  # a model that reached the separable-data formula: not what digits allow
        image_checks.check_ratio("the closed form's own loss", formula, formula, low=1.3, high=1.8)


@pytest.mark.negative_control
def test_ch06_authors_loss_window_rejects_an_untrained_model(ch06_digits):
    _, X_mem, _, _ = ch06_digits
    lam_auth = 0.085 * float(np.mean(np.sum(X_mem**2, axis=1))) / len(X_mem)
    init = ReLUDAE(64, 16, seed=0)
    untrained = relu_dae_loss_mc(init.W1.detach().double().numpy(), init.W2.detach().double().numpy(), X_mem,
                                 0.3, lam_auth)
    with pytest.raises(CheckFailed):
        image_checks.check_ratio("untrained", untrained, memorization_loss(X_mem, 0.3, lam_auth), low=0.95, high=1.1)


@pytest.mark.negative_control
def test_ch06_memorizing_psnr_gap_rejects_the_identity_map(ch06_digits):
    _, X_mem, _, X_test = ch06_digits
    with pytest.raises(CheckFailed):
        image_checks.check_psnr_gap("identity as the memorizing model", _identity_dae(64), X_mem, X_test, 0.3, low=18.0)


@pytest.mark.negative_control
def test_ch06_generalizing_psnr_gap_rejects_a_memorizing_model(ch06_digits):
    _, X_mem, _, X_test = ch06_digits
    mem = _closed_form_dae(X_mem, 16, 0.3, 1e-3)
    with pytest.raises(CheckFailed):
        image_checks.check_psnr_gap("memorizing model as the generalizing one", mem, X_mem, X_test, 0.3, high=0.5,
                             absolute=True)


@pytest.mark.negative_control
def test_ch06_psnr_gain_rejects_the_identity_map(ch06_digits):
    *_, X_test = ch06_digits
    with pytest.raises(CheckFailed):
        image_checks.check_psnr_gain("identity", _identity_dae(64), X_test, 0.3, low=0.3)


@pytest.mark.parametrize("key,low", [("std", 1.2), ("pr", 1.3)])
@pytest.mark.negative_control
def test_ch06_spikiness_checks_reject_shuffled_model_labels(ch06_digits, key, low):
    _, X_mem, X_gen, _ = ch06_digits
    mem = measures.representation_stats(memorization_solution(X_mem, 16, 0.3, 1e-3), X_mem, 0.3, n_draws=100, seed=1)
    gen = measures.representation_stats(linear_dae_solution(X_gen, 16, 0.3, 1e-3), X_gen[:1000], 0.3, seed=1)
    a, b = (mem[key], gen[key]) if key == "std" else (gen[key], mem[key])
    a, b = phase_checks.shuffled_labels(a, b, seed=0)
    with pytest.raises(CheckFailed):
        phase_checks.check_median_ratio(f"shuffled labels ({key})", a, b, low=low)


@pytest.mark.negative_control
def test_ch06_out_of_span_check_rejects_an_untrained_model(ch06_digits):
    """Random units lie mostly outside the 10-dimensional span of the stored digits (in d = 64)."""
    _, X_mem, _, _ = ch06_digits
    with pytest.raises(CheckFailed):
        image_checks.check_out_of_span("untrained", ReLUDAE(64, 16, seed=0).W1, X_mem, k=len(X_mem), high=0.1)
    image_checks.check_out_of_span("the closed form (inside the span)", memorization_solution(X_mem, 16, 0.3, 1e-3),
                                   X_mem, k=len(X_mem), high=0.1)
