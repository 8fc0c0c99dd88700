"""Independent checks of the DAE closed forms in repdiff.theory (Chapters 2-5).

Each closed form is compared with a computation that does not use it: brute-force minimisation of the
linear loss (scipy L-BFGS with a hand-written gradient) from several random starts, sums written out
sample by sample, Monte Carlo over the noise, and the identities the paper states.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from repdiff import theory
from repdiff.data import synthetic as data

TOL = 1e-6


def _brute_force_linear(X, p, sigma, lam, seed):
    """Minimise the exact linear DAE loss over (W1, W2) with scipy, gradient written out by hand."""
    n, d = X.shape
    rng = np.random.default_rng(seed)

    def fun(z):
        A, B = z[: d * p].reshape(d, p), z[d * p :].reshape(d, p)
        M = A @ B.T
        R = X @ M - X
        f = (R**2).sum() / n + sigma**2 * (M**2).sum() + lam * ((A**2).sum() + (B**2).sum())
        gM = 2 * X.T @ R / n + 2 * sigma**2 * M  # dL/dM
        gA = gM @ B + 2 * lam * A
        gB = gM.T @ A + 2 * lam * B
        return f, np.concatenate([gA.ravel(), gB.ravel()])

    z0 = 0.3 * rng.standard_normal(2 * d * p)
    res = minimize(fun, z0, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "gtol": 1e-13, "ftol": 1e-16})
    A, B = res.x[: d * p].reshape(d, p), res.x[d * p :].reshape(d, p)
    return A, B, res.fun


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_solution_matches_brute_force(seed):
    rng = np.random.default_rng(10 + seed)
    X = rng.standard_normal((40, 6)) * np.array([3.0, 2.0, 1.5, 1.0, 0.5, 0.2])
    p, sigma, lam = 3, 0.4, 0.05
    W = theory.linear_dae_solution(X, p, sigma, lam)
    A, B, fmin = _brute_force_linear(X, p, sigma, lam, seed)
    assert _rel(A @ B.T, W @ W.T) < TOL
    assert theory.linear_dae_loss(W, W, X, sigma, lam) <= fmin + 1e-10
    assert _rel(A, B) < 1e-5  # W1 = W2 at the optimum (up to the solver's precision)


def test_linear_solution_switches_off_weak_directions():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 5)) * np.array([3.0, 2.0, 0.3, 0.2, 0.1])
    n = len(X)
    eig = np.sort(np.linalg.eigvalsh(X.T @ X))[::-1]
    lam = float(eig[2] * 1.5 / n)  # nλ between λ_2 and λ_3
    W = theory.linear_dae_solution(X, 4, 0.3, lam)
    assert np.allclose(W[:, 2:], 0.0)
    A, B, _ = _brute_force_linear(X, 4, 0.3, lam, 0)
    assert _rel(A @ B.T, W @ W.T) < TOL


def test_linear_loss_matches_eigenbasis_formula_and_samplewise_sum():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((15, 5))
    n, (sigma, lam) = len(X), (0.7, 0.02)
    W = theory.linear_dae_solution(X, 5, sigma, lam)
    eig = np.sort(np.linalg.eigvalsh(X.T @ X))[::-1]
    a = np.clip((eig - n * lam) / (eig + n * sigma**2), 0, None)
    formula = np.sum(eig * (a - 1) ** 2 + n * sigma**2 * a**2 + 2 * n * lam * a) / n
    assert abs(theory.linear_dae_loss(W, W, X, sigma, lam) - formula) < 1e-9 * formula
    # arbitrary weights: sample-by-sample E‖M(x+σε) − x‖² = ‖(M − I)x‖² + σ² tr(MᵀM)
    A, B = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    M = B @ A.T  # column form f(x) = W2 W1ᵀ x
    per = [np.sum((M @ x - x) ** 2) + sigma**2 * np.trace(M.T @ M) for x in X]
    expected = np.mean(per) + lam * (np.sum(A**2) + np.sum(B**2))
    assert abs(theory.linear_dae_loss(A, B, X, sigma, lam) - expected) < 1e-10 * expected


def test_linear_loss_matches_monte_carlo():
    rng = np.random.default_rng(5)
    X, A, B = rng.standard_normal((8, 4)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    sigma = 0.5
    eps = rng.standard_normal((20000, 8, 4))
    vals = (((X + sigma * eps) @ A @ B.T - X) ** 2).sum(-1).mean(-1)
    exact = theory.linear_dae_loss(A, B, X, sigma, 0.0)
    assert abs(vals.mean() - exact) < 4 * vals.std() / np.sqrt(len(vals))


def test_torch_in_torch_out_and_gradients():
    X = torch.randn(10, 4, dtype=torch.float64)
    W = theory.linear_dae_solution(X, 2, 0.3, 0.01)
    assert isinstance(W, torch.Tensor) and W.shape == (4, 2)
    W1 = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    loss = theory.linear_dae_loss(W1, W1, X, 0.3, 0.01)
    loss.backward()
    assert W1.grad is not None and torch.isfinite(W1.grad).all()
    assert isinstance(theory.linear_dae_solution(X.numpy(), 2, 0.3, 0.01), np.ndarray)


def test_cluster_block_equation_8_and_rotations():
    rng = np.random.default_rng(6)
    mu = np.zeros(8)
    mu[0] = 3.0
    Xk = mu + rng.standard_normal((50, 8)) * np.array([0, 0.8, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    n, p_k, sigma, lam = 120, 3, 0.3, 1e-3
    W = theory.cluster_block(Xk, n, p_k, sigma, lam)
    # Eq. 8 squared: U diag((λ_j − nλ)/(λ_j + n_k σ²)) Uᵀ, from an eigendecomposition of X_kᵀX_k
    ev, U = np.linalg.eigh(Xk.T @ Xk)
    ev, U = ev[::-1][:p_k], U[:, ::-1][:, :p_k]
    expected = (U * ((ev - n * lam) / (ev + len(Xk) * sigma**2))) @ U.T
    assert _rel(W @ W.T, expected) < 1e-10
    Wb = theory.cluster_block(Xk, n, p_k, sigma, lam, rotation="balanced")
    assert _rel(Wb @ Wb.T, expected) < 1e-10
    proj = Wb.T @ Xk.mean(0)
    assert np.all(proj > 0) and np.ptp(proj) < 1e-10 * proj.max()
    # a cluster block of one sample is the memorization column
    x = Xk[:1]
    w = theory.cluster_block(x, n, 1, sigma, lam)
    s = float(x[0] @ x[0])
    r = np.sqrt((s - n * lam) / (s**2 + sigma**2 * s))
    assert _rel(w[:, 0], r * x[0]) < 1e-12


def test_cluster_block_errors():
    X = np.ones((3, 4)) + np.eye(3, 4)
    with pytest.raises(ValueError, match="lambda_min"):
        theory.cluster_block(X, 10, 1, 0.1, 100.0)  # nλ too large
    with pytest.raises(ValueError, match="rank"):
        theory.cluster_block(X, 10, 4, 0.1, 0.0)  # p_k > rank: λ_4 = 0 = nλ
    with pytest.raises(ValueError, match="n_k"):
        theory.cluster_block(X, 2, 1, 0.1, 0.0)  # n smaller than the cluster
    with pytest.raises(ValueError, match="shape"):
        theory.cluster_block(np.ones(4), 10, 1, 0.1, 0.0)


def test_memorization_solution_and_loss():
    X = data.separable_samples(5, 16, norm=2.0, seed=0)
    sigma, lam, n = 0.2, 1e-3, 5
    W = theory.memorization_solution(X, 8, sigma, lam, require_separable=True)
    assert W.shape == (16, 8) and np.allclose(W[:, 5:], 0)
    sq = (X**2).sum(1)
    r = np.sqrt((sq - n * lam) / (sq**2 + sigma**2 * sq))
    assert _rel(W[:, :5], (X * r[:, None]).T) < 1e-12
    assert np.allclose(np.linalg.norm(W[:, :5], axis=0), np.sqrt((sq - n * lam) / (sq + sigma**2)))
    # same as Eq. 8 with one sample per cluster
    G = theory.generalization_solution([x[None] for x in X], [1] * 5, sigma, lam)
    assert _rel(G, W[:, :5]) < 1e-12
    # loss: closed form = gated loss at W (exact with fixed masks); λ → 0 limit is the paper's value
    gated = theory.relu_dae_loss_gated(W, W, X, sigma, lam)
    assert abs(theory.memorization_loss(X, sigma, lam) - gated) < 1e-10
    lim = np.mean(sigma**2 * sq / (sigma**2 + sq))
    assert abs(theory.memorization_loss(X, sigma, 0.0) - lim) < 1e-12
    assert lim < sigma**2
    # Monte Carlo of the true ReLU loss agrees (the masks almost never flip at this margin)
    mc = theory.relu_dae_loss_mc(W, W, X, sigma, lam, n_draws=4000, seed=1)
    assert abs(mc - gated) < 0.01 * gated


def test_memorization_errors():
    X = data.separable_samples(4, 8, norm=1.0, seed=0)
    with pytest.raises(ValueError, match="p >= n"):
        theory.memorization_solution(X, 3, 0.1, 0.0)
    with pytest.raises(ValueError, match="lam too large"):
        theory.memorization_solution(X, 4, 0.1, 0.3)  # nλ = 1.2 >= ‖x‖² = 1
    with pytest.raises(ValueError, match="negatively correlated"):
        theory.memorization_solution(np.abs(X) + 0.1, 4, 0.1, 0.0, require_separable=True)
    with pytest.raises(ValueError, match="sigma"):
        theory.memorization_solution(X, 4, -0.1, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        theory.memorization_solution(X * np.nan, 4, 0.1, 0.0)
    with pytest.raises(ValueError, match="lam too large"):
        theory.memorization_loss(X, 0.1, 0.3)


def test_hybrid_duplicates_rescale_n_lambda():
    rng = np.random.default_rng(7)
    x = np.zeros(10)
    x[0] = 2.0
    dup = np.tile(x, (6, 1))  # n_ℓ = 6 copies
    mu = np.zeros(10)
    mu[1] = -3.0
    other = mu + 0.2 * rng.standard_normal((30, 10))
    sigma, lam = 0.3, 0.02
    n = 36
    W = theory.generalization_solution([dup, other], [1, 2], sigma, lam)
    assert W.shape == (10, 3)
    s = 4.0
    r = np.sqrt((s - n * lam / 6) / (s**2 + sigma**2 * s))
    assert _rel(W[:, 0], r * x) < 1e-12
    with pytest.raises(ValueError, match="dimension"):
        theory.generalization_solution([dup, other[:, :5]], [1, 2], sigma, lam)
    with pytest.raises(ValueError, match="one width per cluster"):
        theory.generalization_solution([dup, other], [1], sigma, lam)


def test_gated_loss_reduces_to_linear_when_all_units_on():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((12, 5))
    A, B = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    masks = np.ones((12, 3), dtype=bool)
    assert (
        abs(theory.relu_dae_loss_gated(A, B, X, 0.4, 0.1, masks=masks) - theory.linear_dae_loss(A, B, X, 0.4, 0.1))
        < 1e-10
    )
    with pytest.raises(ValueError, match="masks"):
        theory.relu_dae_loss_gated(A, B, X, 0.4, 0.1, masks=masks[:, :2])
    with pytest.raises(ValueError, match="rows"):
        theory.relu_dae_loss_mc(A, B, X[:, :4], 0.4, 0.1)


def test_population_losses_and_limit_block():
    rng = np.random.default_rng(9)
    d = 6
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    s = np.array([9.0, 0.5, 0.2, 0.01, 0.01, 0.01])
    S = (Q * s) @ Q.T
    sigma, p_k = 0.3, 2
    M = theory.limit_block(S, 1.0, p_k, sigma, 0.0)
    exact = theory.wiener_block_test_loss(S, p_k, sigma)
    assert abs(theory.linear_map_population_loss(M, S, sigma) - exact) < 1e-12
    assert abs(exact - (np.sum(sigma**2 * s[:2] / (s[:2] + sigma**2)) + s[2:].sum())) < 1e-12
    printed = theory.printed_test_loss_bound(S, p_k, sigma)
    missing = np.sum(sigma**2 * s[:2] ** 2 / (s[:2] + sigma**2) ** 2)
    assert abs(exact - printed - missing) < 1e-12 and printed < exact
    # the Wiener block is the best rank-2 linear map: perturbing it increases the loss
    U2 = Q[:, :2]
    for _ in range(5):
        E = U2 @ (1e-2 * rng.standard_normal((2, 2))) @ U2.T
        assert theory.linear_map_population_loss(M + E, S, sigma) > exact
    # Eq. 8 on a cluster whose Gram is exactly n_k S, inside a set of size n = n_k/ρ, is the limit block
    Xk = np.sqrt(d) * (Q * np.sqrt(s)) @ Q.T  # d rows, X_kᵀX_k = d S
    lam, rho = 1e-3, 0.5
    Wk = theory.cluster_block(Xk, int(d / rho), p_k, sigma, lam)
    assert _rel(Wk @ Wk.T, theory.limit_block(S, rho, p_k, sigma, lam)) < 1e-10
    typo = theory.limit_block(S, rho, p_k, sigma, lam, printed_typo=True)
    assert _rel(typo, Wk @ Wk.T) > 1e-2
    with pytest.raises(ValueError, match="rho"):
        theory.limit_block(S, 0.0, p_k, sigma, lam)
    with pytest.raises(ValueError, match="symmetric"):
        theory.wiener_block_test_loss(S + np.triu(np.ones((d, d)), 1), 2, sigma)


def test_mc_loss_is_reproducible_and_torch_differentiable():
    X = data.separable_samples(3, 6, norm=1.5)
    W = torch.tensor(theory.memorization_solution(X, 4, 0.1, 0.0), requires_grad=True)
    a = theory.relu_dae_loss_mc(W, W, torch.tensor(X), 0.1, 0.0, n_draws=50, seed=3)
    b = theory.relu_dae_loss_mc(W, W, torch.tensor(X), 0.1, 0.0, n_draws=50, seed=3)
    assert float(a.detach()) == float(b.detach())
    a.backward()
    assert torch.isfinite(W.grad).all()


def test_separable_data_and_mixture():
    X = data.separable_samples(5, 12, norm=3.0, jitter=0.05, seed=1)
    assert np.allclose(np.linalg.norm(X, axis=1), 3.0)
    info = data.separability(list(X[:, None]))
    assert info["alpha"] == 0 and info["beta"] < 0 and info["margin"] > 0 and info["separable"] == 1.0
    with pytest.raises(ValueError, match="n <= d"):
        data.separable_samples(7, 6)
    gm = data.low_rank_gaussian_mixture(16, 2, 2, mean_norm=3.0, mean_cos=-0.6, variances=(0.5, 0.2), seed=0)
    assert np.allclose(np.linalg.norm(gm.means, axis=1), 3.0)
    assert abs(gm.means[0] @ gm.means[1] / 9 + 0.6) < 1e-12
    ev = np.sort(np.linalg.eigvalsh(gm.covs[0]))[::-1]
    assert np.allclose(ev[:3], [0.505, 0.205, 0.005])
    assert abs(gm.covs[0] @ gm.means[0] - 0.005 * gm.means[0]).max() < 1e-12  # covariance ⟂ means
    with pytest.raises(ValueError, match="mean_cos"):
        data.low_rank_gaussian_mixture(16, 3, 1, mean_cos=-0.9, variances=(0.1,))


def test_theory_is_a_facade_over_the_dae_modules():
    """``repdiff.theory`` re-exports the closed forms and checks; their code lives in ``repdiff.dae`` modules
    that import each other directly, never through the facade (so the facade stays a list of names)."""
    import importlib
    import inspect
    from pathlib import Path

    for name in theory.__all__:
        obj = getattr(theory, name)
        home = importlib.import_module(obj.__module__)
        assert home.__name__.startswith("repdiff.dae."), name
        assert getattr(home, name) is obj and name in home.__all__, name
        source = Path(inspect.getfile(home)).read_text()
        assert "repdiff.theory import" not in source and "import theory" not in source, home.__name__
    for name in ("empirical_denoiser", "linear_dae_solution", "cluster_block", "memorization_solution",
                 "generalization_solution", "linear_dae_loss"):  # COURSE.md §5
        assert name in theory.__all__
