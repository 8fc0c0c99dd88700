"""The regularised linear DAE f(x) = W2 W1ᵀ x: its exact loss and its global minimiser (Chapter 2).

Loss (paper Eq. 6 without the ReLU), rows are samples, X is (n, d), W1 and W2 are (d, p):
    L(W1, W2) = (1/n) Σ_i E_ε ‖W2 W1ᵀ(x_i + σε) − x_i‖² + λ (‖W1‖²_F + ‖W2‖²_F).
The minimiser shrinks the top-p eigen-directions of the Gram matrix XᵀX by a_j = (λ_j − nλ)/(λ_j + nσ²).
"""

from __future__ import annotations

import torch

from repdiff._arrays import ArrayLike, like_input, require_finite, to_tensor
from repdiff.dae.closed_form_inputs import (
    data_matrix,
    loss_inputs,
    nonneg,
    output_like,
    scalar_out,
    top_eig,
    width,
)

__all__ = [
    "shrinkage_factors",
    "linear_dae_solution",
    "linear_dae_loss",
    "linear_dae_min_loss",
]


def shrinkage_factors(eigvals: ArrayLike, n_noise: float, sigma: float, n_lam: float) -> ArrayLike:
    """The eigen-shrinkage of the linear DAE: a_j = max(0, (λ_j − nλ) / (λ_j + n σ²)) (Chapter 2).

    Args:
        eigvals: Gram eigenvalues λ_j of XᵀX, any shape.
        n_noise: the sample count multiplying σ² (n for a whole set, n_k for one cluster in Eq. 8).
        sigma: noise level σ >= 0.
        n_lam: the regularisation term nλ (n = size of the *whole* training set).

    Returns:
        a_j in [0, 1], same shape and kind as ``eigvals``; 0 where λ_j <= nλ (the direction is switched
        off: keeping it would cost more weight decay than it saves in reconstruction); a_j < 1 whenever
        n σ² + nλ > 0, and a_j = 1 exactly when σ = 0 (or ``n_noise`` = 0) and nλ = 0 (a plain projector).
    """
    lam_t, was_np = to_tensor(eigvals, "eigvals")
    sigma = nonneg(sigma, "sigma")
    n_lam = nonneg(n_lam, "n_lam")
    n_noise = nonneg(n_noise, "n_noise")
    require_finite(lam_t, "eigvals")
    denom = lam_t + n_noise * sigma**2
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    a = torch.where(lam_t > n_lam, (lam_t - n_lam) / safe, torch.zeros_like(lam_t))
    return like_input(a, was_np)


def linear_dae_solution(X: ArrayLike, p: int, sigma: float, lam: float) -> ArrayLike:
    """Global minimiser (W1 = W2 = W) of the regularised *linear* DAE f(x) = W2 W1ᵀ x (Chapter 2).

    With XᵀX = U diag(λ_j) Uᵀ (λ_1 >= λ_2 >= ...), the minimiser keeps the top-``p`` eigen-directions
    and shrinks them:

        W = U_p diag(sqrt(a_j)),   a_j = (λ_j − nλ) / (λ_j + nσ²),   so   W Wᵀ = U_p diag(a_j) U_pᵀ.

    Columns with λ_j <= nλ are exactly zero (a_j = 0: such a direction is not worth its weight decay),
    as are columns beyond the rank of X. Any W O with O orthogonal (p × p) is an equally good minimiser;
    this function returns the one with O = I (signs fixed so every column points to the data's side).

    Args:
        X: training set ``(n, d)``; p: hidden width (1 <= p <= d); sigma: σ >= 0; lam: λ >= 0.

    Returns:
        W ``(d, p)``, same kind as ``X``.
    """
    Xt, was_np, dtype = data_matrix(X)
    n, d = Xt.shape
    p = width(p)
    if p > d:
        raise ValueError(f"p = {p} hidden units exceed the data dimension d = {d}: need p <= d")
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    eig, U = top_eig(Xt, p)
    a = shrinkage_factors(eig, n, sigma, n * lam)
    return output_like(U * a.sqrt(), was_np, dtype)


def linear_dae_loss(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float
) -> float | torch.Tensor:
    """Exact expected loss of the *linear* DAE f(x) = W2 W1ᵀ x (Chapter 2).

        L = (1/n) ‖X W1 W2ᵀ − X‖²_F + σ² ‖W2 W1ᵀ‖²_F + λ (‖W1‖²_F + ‖W2‖²_F)

    (the noise averages out exactly: E‖M(x + σε) − x‖² = ‖Mx − x‖² + σ²‖M‖²_F).

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor (differentiable in W1, W2) for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = loss_inputs(W1, W2, X, sigma, lam)
    n = Xt.shape[0]
    M = A @ B.T  # row form: x ↦ x W1 W2ᵀ
    loss = (
        (Xt @ M - Xt).square().sum() / n
        + sigma**2 * M.square().sum()
        + lam * (A.square().sum() + B.square().sum())
    )
    return scalar_out(loss, was_np)


def linear_dae_min_loss(X: ArrayLike, p: int, sigma: float, lam: float) -> float:
    """Minimum value of the linear DAE loss from the eigenbasis formula of Chapter 2 (proof, Step 3):

        (1/n) [ Σ_{j<=p} ( λ_j (a_j − 1)² + n σ² a_j² + 2nλ a_j ) + Σ_{j>p} λ_j ],
        a_j = (λ_j − nλ)_+ / (λ_j + nσ²),  λ_j the eigenvalues of XᵀX.
    """
    Xt, _, _ = data_matrix(X)
    n = Xt.shape[0]
    p = width(p)
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    eig = torch.linalg.svdvals(Xt.double()) ** 2
    eig = torch.cat([eig, torch.zeros(max(0, Xt.shape[1] - len(eig)), dtype=eig.dtype)])
    top = eig[:p]
    a = ((top - n * lam).clamp_min(0) / (top + n * sigma**2))
    val = (top * (a - 1) ** 2 + n * sigma**2 * a**2 + 2 * n * lam * a).sum() + eig[p:].sum()
    return float(val / n)
