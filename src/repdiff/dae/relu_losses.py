"""The loss of the two-layer ReLU DAE (paper Eq. 6): by Monte Carlo, with frozen ReLU gates, and at the
memorizing solution; the gated loss's exact gradient and Hessian (Chapters 3-5).

    L(W1, W2) = (1/n) Σ_i E_ε ‖W2 relu(W1ᵀ(x_i + σε)) − x_i‖² + λ (‖W1‖²_F + ‖W2‖²_F)

(squared error summed over the d coordinates, averaged over the n samples; λ multiplies both norms).
"""

from __future__ import annotations

import numpy as np
import torch

from repdiff._arrays import ArrayLike, to_tensor
from repdiff.dae.closed_form_inputs import (
    data_matrix,
    loss_inputs,
    nonneg,
    scalar_out,
)

__all__ = [
    "relu_dae_loss_mc",
    "relu_dae_loss_gated",
    "memorization_loss",
    "gated_loss_hessian",
]


def relu_dae_loss_mc(
    W1: ArrayLike,
    W2: ArrayLike,
    X: ArrayLike,
    sigma: float,
    lam: float,
    *,
    n_draws: int = 256,
    seed: int = 0,
    chunk_draws: int = 64,
) -> float | torch.Tensor:
    """Monte-Carlo estimate of the ReLU DAE loss (paper Eq. 6) with fixed noise draws (Chapters 3-5).

        (1/n) Σ_i (1/D) Σ_{s=1..D} ‖W2 relu(W1ᵀ(x_i + σ ε_is)) − x_i‖² + λ(‖W1‖²_F + ‖W2‖²_F)

    The same ``seed`` gives the same ε, so two weight matrices are compared on identical noise.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0; n_draws: D >= 1 noise draws per sample.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = loss_inputs(W1, W2, X, sigma, lam)
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    gen = torch.Generator().manual_seed(int(seed))
    n, d = Xt.shape
    # work in blocks of at most ~4M numbers (32 MB), whatever n, d and n_draws are; the block sizes depend
    # only on (n, d, chunk_draws), so the same call always draws the same noise
    budget = 1 << 22
    c_draws = max(1, min(int(chunk_draws), budget // max(1, n * d)))
    c_rows = max(1, min(n, budget // max(1, c_draws * d)))
    total = torch.zeros((), dtype=A.dtype, device=A.device)
    done = 0
    while done < n_draws:
        c = min(c_draws, n_draws - done)
        for start in range(0, n, c_rows):
            Xb = Xt[start : start + c_rows]
            eps = torch.randn(c, Xb.shape[0], d, generator=gen, dtype=torch.float64).to(A)
            out = torch.relu((Xb[None] + sigma * eps) @ A) @ B.T
            total = total + (out - Xb[None]).square().sum()
        done += c
    loss = total / (n * n_draws) + lam * (A.square().sum() + B.square().sum())
    return scalar_out(loss, was_np)


def relu_dae_loss_gated(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *, masks: ArrayLike | None = None
) -> float | torch.Tensor:
    """ReLU DAE loss computed exactly under the assumption that the ReLU pattern does not move with the noise.

    If sample i switches on the units in ``masks[i]`` (default: the units with wᵀx_i > 0 at the clean input)
    for every noisy copy x_i + σε, the DAE is the linear map M_i = W2 D_i W1ᵀ on it and

        L = (1/n) Σ_i [ ‖M_i x_i − x_i‖² + σ² ‖M_i‖²_F ] + λ(‖W1‖²_F + ‖W2‖²_F).

    Under a margin (Definition 3.1) the masks are fixed except with probability ~exp(−γ²/2σ²), which is how
    the paper reduces the ReLU loss to per-cluster linear losses (Chapters 3-4). Compare with
    :func:`relu_dae_loss_mc` to see how small the difference is.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; masks: optional boolean ``(n, p)``.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = loss_inputs(W1, W2, X, sigma, lam)
    n, p = Xt.shape[0], A.shape[1]
    if masks is None:
        D = (Xt @ A > 0).to(A.dtype)
    else:
        D, _ = to_tensor(masks, "masks")
        if D.shape != (n, p):
            raise ValueError(f"masks must have shape (n, p) = {(n, p)}, got {tuple(D.shape)}")
        D = (D != 0).to(A)
    # bias: ‖W2 D_i W1ᵀ x_i − x_i‖²
    out = (Xt @ A * D) @ B.T
    bias = (out - Xt).square().sum()
    # variance: σ² ‖W2 D_i W1ᵀ‖²_F = σ² tr(D_i (W1ᵀW1) D_i (W2ᵀW2)) = σ² D_iᵀ (G1 ∘ G2) D_i
    G = (A.T @ A) * (B.T @ B)
    var = ((D @ G) * D).sum()
    loss = (bias + sigma**2 * var) / n + lam * (A.square().sum() + B.square().sum())
    return scalar_out(loss, was_np)


def memorization_loss(X: ArrayLike, sigma: float, lam: float = 0.0) -> float:
    """Loss (Eq. 6) of the memorizing solution of Corollary 3.2, computed with fixed ReLU masks (Chapter 3).

    With a_i = r_i² ‖x_i‖² = (‖x_i‖² − nλ)/(‖x_i‖² + σ²):

        L = (1/n) Σ_i [ (1 − a_i)² ‖x_i‖² + σ² a_i² ] + 2λ Σ_i a_i,

    which at λ = 0 is (1/n) Σ_i σ²‖x_i‖² / (σ² + ‖x_i‖²) < σ² (the paper's dimension-free value).
    Exact for the ReLU DAE up to the ReLU pattern moving with the noise (probability ~exp(−γ²/2σ²)).

    Args:
        X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0 with nλ < min_i ‖x_i‖².
    """
    Xt, _, _ = data_matrix(X)
    n = Xt.shape[0]
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    sq = Xt.square().sum(1)
    if float(sq.min()) <= n * lam:
        raise ValueError(
            f"lam too large for a real solution: need n*lam < min_i ||x_i||^2, got n*lam = {n * lam:.4g} "
            f">= {float(sq.min()):.4g}"
        )
    a = (sq - n * lam) / (sq + sigma**2)
    return float(((1 - a).square() * sq + sigma**2 * a.square()).mean() + 2 * lam * a.sum())


def gated_loss_hessian(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float,
                       masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Exact gradient and Hessian of :func:`relu_dae_loss_gated` in (W1, W2) with the ReLU pattern fixed.

    Chapter 3 uses it at the memorizing solution (Corollary 3.2): with the gates frozen, as in the paper's
    argument, the loss is a polynomial in the weights, and its Hessian decides local minimality.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; masks: boolean ``(n, p)``, unit j on for sample i.

    Returns:
        (gradient ``(2dp,)``, Hessian ``(2dp, 2dp)``), parameters ordered as (vec W1, vec W2), row-major.
    """
    A, B, Xt, sigma, lam, _ = loss_inputs(W1, W2, X, sigma, lam)
    A, B, Xt = A.double(), B.double(), Xt.double()
    D, _ = to_tensor(masks, "masks")

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return relu_dae_loss_gated(a, b, Xt, sigma, lam, masks=D)

    a0, b0 = A.detach().clone().requires_grad_(True), B.detach().clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(f(a0, b0), (a0, b0))
    H = torch.autograd.functional.hessian(f, (A.detach(), B.detach()), vectorize=True)
    m = A.numel()
    Hm = torch.cat([torch.cat([H[i][j].reshape(m, m) for j in range(2)], 1) for i in range(2)], 0)
    return torch.cat([ga.flatten(), gb.flatten()]).numpy(), (0.5 * (Hm + Hm.T)).numpy()
