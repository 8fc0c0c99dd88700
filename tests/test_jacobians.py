"""Tests of repdiff.dae.jacobians and jacobian_experiments (Chapter 8) against independent computations."""

from __future__ import annotations

import pytest
import torch

from repdiff import theory
from repdiff.dae import jacobian_experiments as jx
from repdiff.dae import jacobians as jac
from repdiff.dae import toy_recipes
from repdiff.dae.toy_diffusion import TimeConditionedReLUDAE


@pytest.mark.parametrize("kw", [{}, {"tied": False}, {"bias": True, "tied": False}, {"skip": False}])
def test_autograd_jacobian_matches_the_relu_formula(kw):
    torch.manual_seed(0)
    m = TimeConditionedReLUDAE(7, 5, seed=1, center=torch.randn(7), **kw)
    with torch.no_grad():
        m.gain_out.bias.normal_()
        if m.s is not None:
            m.s.fill_(0.2)
    x = torch.randn(9, 7)
    J = jac.denoiser_jacobian(m, x, 0.4)
    assert J.shape == (9, 7, 7) and not J.requires_grad
    assert torch.allclose(J, jac.relu_dae_jacobian(m, x, 0.4), atol=1e-6)
    # and against finite differences, one column at a time
    eps = 1e-3
    for j in range(7):
        e = torch.zeros(7)
        e[j] = eps
        with torch.no_grad():
            fd = (m(x + e, 0.4) - m(x - e, 0.4)) / (2 * eps)
        assert torch.allclose(J[:, :, j], fd, atol=1e-2)


def test_jacobian_of_a_linear_map_is_the_matrix():
    A = torch.randn(4, 4, dtype=torch.float64)
    J = jac.denoiser_jacobian(lambda x, s: x @ A.T / (1 + s), torch.randn(3, 4, dtype=torch.float64), 1.0)
    assert torch.allclose(J, (A / 2).expand(3, 4, 4))


def test_jacobian_of_the_wiener_denoiser_is_the_wiener_map():
    B = torch.randn(5, 5, dtype=torch.float64)
    S = B @ B.T + 0.1 * torch.eye(5, dtype=torch.float64)
    f = lambda x, s: theory.wiener_denoiser(x, torch.zeros(5, dtype=torch.float64), S, s)  # noqa: E731
    J = jac.denoiser_jacobian(f, torch.randn(2, 5, dtype=torch.float64), 0.7)
    assert torch.allclose(J, jac.wiener_map(S, 0.7).expand(2, 5, 5), atol=1e-10)


def test_jacobian_of_the_empirical_denoiser_is_the_posterior_covariance():
    # f_emp(y) = Σ w_i x_i  ⇒  J = (Σ w_i x_i x_iᵀ − f fᵀ) / σ²  (Chapter 8, exercise 1)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = X[:2] + 0.8 * torch.randn(2, 5, generator=g, dtype=torch.float64)
    J = jac.denoiser_jacobian(lambda v, s: theory.empirical_denoiser(v, X, s), y, 0.8)
    w = torch.softmax(-torch.cdist(y, X).square() / (2 * 0.8**2), dim=1)
    f = w @ X
    cov = torch.einsum("ni,ia,ib->nab", w, X, X) - f[:, :, None] * f[:, None, :]
    assert cov.abs().max() > 1e-2  # not a trivial (one-hot) case
    assert torch.allclose(J, cov / 0.8**2, atol=1e-10)


def test_wiener_map_truncation_and_shrinkage():
    U, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    ev = torch.tensor([9.0, 4.0, 1.0, 0.5, 0.1, 0.01], dtype=torch.float64)
    S = (U * ev) @ U.T
    W = jac.wiener_map(S, 0.5, rank=2, lam_over_rho=0.1)
    expected = (U[:, :2] * ((ev[:2] - 0.1) / (ev[:2] + 0.25))) @ U[:, :2].T
    assert torch.allclose(W, expected, atol=1e-10)
    assert torch.linalg.matrix_rank(W) == 2
    with pytest.raises(ValueError):
        jac.wiener_map(S, 0.0)
    with pytest.raises(ValueError):
        jac.wiener_map(S, 0.5, rank=7)
    with pytest.raises(ValueError, match="λ/ρ"):
        jac.wiener_map(S, 0.5, rank=6, lam_over_rho=0.05)
    with pytest.raises(ValueError, match="symmetric"):
        jac.wiener_map(S + torch.triu(torch.ones(6, 6, dtype=torch.float64), 1), 0.5)


def test_rank_one_alignment_and_spectra():
    v = torch.randn(3, 6)
    J = 2.0 * v[:, :, None] * v[:, None, :] / v.square().sum(1)[:, None, None]
    cos, ratio = jac.rank_one_alignment(J, v)
    assert torch.allclose(cos, torch.ones(3), atol=1e-5) and (ratio < 1e-5).all()
    sv = jac.singular_values(J)
    assert torch.allclose(sv[:, 0], torch.full((3,), 2.0), atol=1e-5)
    assert torch.allclose(jac.effective_rank(jac.singular_values(torch.eye(4)[None])), torch.tensor([4.0]))
    with pytest.raises(ValueError):
        jac.singular_values(torch.randn(3, 4))
    with pytest.raises(ValueError):
        jac.singular_values(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError):
        jac.effective_rank(torch.zeros(1, 3))


def test_subspace_cosines():
    Q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    A = Q[:, :2]
    assert torch.allclose(jac.subspace_cosines(A, A @ torch.randn(2, 2, dtype=torch.float64)),
                          torch.ones(2, dtype=torch.float64))
    assert torch.allclose(jac.subspace_cosines(A, Q[:, 2:4]), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError):
        jac.subspace_cosines(A, torch.randn(4, 2, dtype=torch.float64))


def test_input_validation():
    m = TimeConditionedReLUDAE(4, 3)
    with pytest.raises(ValueError):
        jac.denoiser_jacobian(m, torch.randn(2, 5), 0.3)
    with pytest.raises(ValueError):
        jac.denoiser_jacobian(m, torch.randn(2, 4), -1.0)
    with pytest.raises(ValueError):
        jac.relu_dae_jacobian(m, torch.full((2, 4), float("nan")), 0.3)
    with pytest.raises(TypeError):
        jac.denoiser_jacobian(m, [[0.0] * 4], 0.3)
    with pytest.raises(ValueError):
        jac.relative_error(torch.zeros(2, 2), torch.zeros(3, 3))


def test_gain_along_reads_a_diagonal_map():
    J = torch.diag(torch.tensor([2.0, 0.5, 0.0]))[None].repeat(2, 1, 1)
    g = jac.gain_along(J, torch.tensor([0.0, 3.0, 0.0]))
    assert torch.allclose(g, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError):
        jac.gain_along(J, torch.zeros(3))


def test_gain_candidates_formulas():
    c = jac.gain_candidates(torch.tensor([4.0]), 2.0, n_lam=1.0)
    assert torch.allclose(c["wiener"], torch.tensor([3 / 8], dtype=torch.float64))
    assert torch.allclose(c["sigma typo"], torch.tensor([3 / 6], dtype=torch.float64))
    assert torch.allclose(c["projector"], torch.tensor([3 / 4], dtype=torch.float64))


def test_gain_check_passes_on_the_wiener_gain_where_candidates_differ():
    s = torch.full((4,), 0.505, dtype=torch.float64)  # Chapter 8's second MoG eigenvalue
    w = jac.gain_candidates(s, 1.5)["wiener"]
    assert jac.check_gain_prediction("Wiener as learned", w, s, 1.5, tol=0.1) < 1e-12


def _mog_setup():
    data = {"kind": "mog", "n": 200, "K": 2, "d": 8, "rank": 1, "spread": [0.4], "seed": 1}
    X, labels = toy_recipes.make_training_data(data)
    _, _, S = toy_recipes.mog_clusters(K=2, d=8, rank=1, spread=(0.4,), seed=1)
    model = TimeConditionedReLUDAE(8, 4, skip=False, seed=0)
    return model, torch.tensor(X, dtype=torch.float32), labels, torch.tensor(S, dtype=torch.float32)


def test_wiener_comparison_rows_summary_and_table():
    model, X, labels, S = _mog_setup()
    rows = jx.wiener_comparison(model, X, labels, S, (0.05, 0.5), torch.Generator().manual_seed(0), n=6)
    assert [(r.sigma, r.cluster) for r in rows] == [(0.05, 0), (0.05, 1), (0.5, 0), (0.5, 1)]
    assert all(0.0 <= r.cos2 <= 1.0 + 1e-6 and r.err >= 0 for r in rows)
    summary = jx.wiener_summary(rows)
    assert summary["err_max_small"] == max(r.err for r in rows[:2])
    assert summary["err_max_05"] == max(r.err for r in rows[2:])
    assert len(jx.wiener_table(rows).splitlines()) == 1 + len(rows)


def test_cluster_gains_match_gain_along_and_gain_table():
    model, X, labels, S = _mog_setup()
    res = jx.cluster_gains(model, X, labels, S, [0.1, 1.0], n=5)
    assert res.s_u.shape == (2, 2) and res.gain[2][1.0].shape == (2,)
    xs = X[torch.as_tensor(labels == 1)][:5]
    E = torch.linalg.eigh(S[1])[1]
    direct = jac.gain_along(jac.denoiser_jacobian(model, xs, 0.1), E[:, -1]).median()
    assert torch.allclose(res.gain[1][0.1][1], direct.double())
    table = jx.gain_table(res.gain[2], res.s_u[:, 1])
    assert len(table.splitlines()) == 3 and "Wiener" in table
