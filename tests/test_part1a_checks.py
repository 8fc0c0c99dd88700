"""Unit tests of the computations behind Chapters 1-4's check functions (repdiff.theory, repdiff.metrics),
against independent computations. Their negative controls are in test_negative_controls_part1a.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repdiff.data.synthetic import GaussianMixture, separable_samples
from repdiff.metrics import check_participation
from repdiff.theory import (
    block_residual,
    check_local_minimum,
    check_monte_carlo,
    gated_loss_hessian,
    linear_dae_loss,
    linear_dae_min_loss,
    linear_dae_solution,
    linearity_defect,
    memorization_solution,
    relu_dae_loss_gated,
    storage_shares,
    subspace_angles_deg,
    tweedie_denoiser,
    wiener_denoiser,
)


def test_tweedie_denoiser_of_a_gaussian_is_the_wiener_filter():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    cov, mu = A @ A.T + 0.1 * np.eye(4), rng.standard_normal(4)
    y = rng.standard_normal((6, 4))
    g = GaussianMixture(weights=[1.0], means=[mu], covs=[cov])
    np.testing.assert_allclose(tweedie_denoiser(g.log_density, y, 0.7), wiener_denoiser(y, mu, cov, 0.7), atol=1e-10)


def test_linear_dae_min_loss_is_the_loss_of_the_closed_form():
    X = np.random.default_rng(1).standard_normal((50, 10)) * np.linspace(3, 0.1, 10)
    for lam in (0.0, 0.05):
        W = linear_dae_solution(X, 4, 0.3, lam)
        assert linear_dae_min_loss(X, 4, 0.3, lam) == pytest.approx(linear_dae_loss(W, W, X, 0.3, lam), rel=1e-10)


def test_gated_hessian_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 4))
    W1, W2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    masks = rng.random((3, 3)) > 0.4
    g, H = gated_loss_hessian(W1, W2, X, 0.3, 0.01, masks)

    def grad(w: np.ndarray) -> np.ndarray:
        a = torch.tensor(w[:12].reshape(4, 3), requires_grad=True)
        b = torch.tensor(w[12:].reshape(4, 3), requires_grad=True)
        ga, gb = torch.autograd.grad(relu_dae_loss_gated(a, b, X, 0.3, 0.01, masks=masks), (a, b))
        return torch.cat([ga.flatten(), gb.flatten()]).numpy()

    w0 = np.concatenate([W1.ravel(), W2.ravel()])
    np.testing.assert_allclose(g, grad(w0), atol=1e-12)
    h = 1e-6
    fd = np.stack([(grad(w0 + h * e) - grad(w0 - h * e)) / (2 * h) for e in np.eye(24)], axis=1)
    np.testing.assert_allclose(H, fd, atol=1e-6)


def test_memorization_solution_passes_the_local_minimum_check():
    X = separable_samples(4, 12, norm=2.0, seed=0)
    W = memorization_solution(X, 6, 0.2, 1e-3)
    out = check_local_minimum(W, W, X, 0.2, 1e-3, X @ W > 0)
    assert out["eigvals"][0] == pytest.approx(2e-3, rel=1e-6)  # the unused units, held by weight decay only


def test_block_residual_is_rotation_invariant_and_zero_at_the_block_form():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((8, 3))
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    assert block_residual(W @ Q, W) == pytest.approx(0.0, abs=1e-12)
    E = 0.01 * rng.standard_normal((8, 3))
    assert block_residual(W @ Q + E, W) <= np.linalg.norm(E) + 1e-12
    with pytest.raises(ValueError, match="shape"):
        block_residual(W, W[:, :2])


def test_subspace_angles_zero_for_the_same_plane_and_90_for_orthogonal_planes():
    e = np.eye(4)
    M_a = np.outer(e[0], e[0]) + 2 * np.outer(e[1], e[1])
    M_b = 3 * np.outer(e[2], e[2]) + np.outer(e[3], e[3])
    np.testing.assert_allclose(subspace_angles_deg(M_a, 5 * M_a, 2), [0, 0], atol=1e-6)
    np.testing.assert_allclose(subspace_angles_deg(M_a, M_b, 2), [90, 90], atol=1e-6)


def test_linearity_defect_zero_for_affine_and_positive_for_tanh():
    X = np.random.default_rng(4).standard_normal((20, 3))
    assert linearity_defect(lambda y, s: 2 * y + 1, X, 0.5) < 1e-12
    assert linearity_defect(lambda y, s: np.tanh(3 * y), X, 0.5) > 0.05


def test_storage_shares_rows_sum_to_the_stored_weight():
    X = separable_samples(3, 8, norm=2.0, seed=1)
    W = memorization_solution(X, 5, 0.2, 1e-3)
    a = np.linalg.norm(W[:, :3], axis=0) ** 2
    np.testing.assert_allclose(storage_shares(W, W, X).sum(1), a, rtol=1e-12)


def test_check_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="two Monte-Carlo draws"):
        check_monte_carlo("x", [1.0], 1.0)
    with pytest.raises(ValueError, match="reduce"):
        check_participation("x", np.ones((2, 3)), reduce="median")
    assert math.isfinite(check_monte_carlo("x", [1.0, 1.2, 0.9], 1.0)["z"])
