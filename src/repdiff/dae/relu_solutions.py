"""Closed-form local minimisers of the two-layer ReLU DAE f(x) = W2 relu(W1ᵀ x) (Chapters 3-5).

- :func:`cluster_block`: one cluster's block, Theorem 3.1 / Eq. 8;
- :func:`memorization_solution`: Corollary 3.2, one column r_i x_i per training sample (p >= n);
- :func:`generalization_solution`: Corollaries 3.3 / 3.4, the blocks of all clusters side by side.

Rows are samples, ``X`` is ``(n, d)``, weights are ``(d, p)``; numpy in, numpy out; torch in, torch out.
"""

from __future__ import annotations

import math

import torch

from repdiff._arrays import ArrayLike
from repdiff.dae.closed_form_inputs import (
    data_matrix,
    nonneg,
    output_like,
    top_eig,
    width,
)

__all__ = [
    "cluster_block",
    "memorization_solution",
    "generalization_solution",
]


def _rotate_balanced(W: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Right-multiply ``W (d, q)`` by a Householder reflection H so that every column of W H has the same
    positive inner product ‖Wᵀv‖/sqrt(q) with ``direction`` v. W H Hᵀ Wᵀ = W Wᵀ is unchanged."""
    q = W.shape[1]
    v = W.T @ direction
    if float(v.norm()) == 0.0:
        return W
    vhat = v / v.norm()
    target = torch.full_like(vhat, 1.0 / math.sqrt(q))
    u = vhat - target
    if float(u.norm()) < 1e-14:
        return W
    u = u / u.norm()
    H = torch.eye(q, dtype=W.dtype) - 2.0 * torch.outer(u, u)
    return W @ H


def cluster_block(
    X_k: ArrayLike, n: int, p_k: int, sigma: float, lam: float, *, rotation: str = "identity"
) -> ArrayLike:
    """One block of the paper's local minimiser (Theorem 3.1, Eq. 8) for cluster ``X_k`` (Chapters 3-5).

        W_k = U_k diag( sqrt( (λ_j − nλ) / (λ_j + n_k σ²) ) ) O_kᵀ,   j = 1..p_k,

    with λ_j, U_k the top-``p_k`` eigenpairs of X_kᵀX_k, n_k = len(X_k) in the noise term and the size ``n``
    of the *whole* training set in nλ (the weight decay is shared by all samples). W_k W_kᵀ does not depend
    on the orthogonal O_k.

    Args:
        X_k: the cluster, ``(n_k, d)``. n: size of the whole training set (n >= n_k).
        p_k: width of the block. sigma: σ >= 0. lam: λ >= 0.
        rotation: ``"identity"`` (O_k = I, eigenvector signs pointing to the cluster) or ``"balanced"``
            (O_k a reflection giving every column the same positive inner product with the cluster mean,
            the choice under which a ReLU unit of the block is "on" for the whole cluster).

    Returns:
        ``(d, p_k)``, same kind as ``X_k``.

    Raises:
        ValueError: if nλ >= λ_{p_k} (Theorem 3.1 needs nλ < λ_min(Λ_k^(p_k)) for real square roots; this
            includes p_k larger than the rank of the cluster), or on bad shapes / values.
    """
    Xt, was_np, dtype = data_matrix(X_k, "X_k")
    n_k, d = Xt.shape
    p_k = width(p_k, "p_k")
    if int(n) != n or n < n_k:
        raise ValueError(f"n (size of the whole training set) must be an integer >= n_k = {n_k}, got {n!r}")
    if p_k > d:
        raise ValueError(f"p_k = {p_k} exceeds the data dimension d = {d}: need p_k <= d")
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    if rotation not in ("identity", "balanced"):
        raise ValueError(f"rotation must be 'identity' or 'balanced', got {rotation!r}")
    eig, U = top_eig(Xt, p_k)
    n_lam = n * lam
    if float(eig[-1]) <= n_lam:
        raise ValueError(
            f"Theorem 3.1 needs n*lam < the smallest of the top-{p_k} Gram eigenvalues of the cluster "
            f"(n*lam < lambda_min(Lambda_k^(p_k))), but n*lam = {n_lam:.4g} and "
            f"lambda_{p_k} = {float(eig[-1]):.4g}"
            + (" (p_k exceeds the rank of the cluster)" if float(eig[-1]) <= 1e-12 * float(eig[0]) else "")
            + ": lower lam or p_k"
        )
    W = U * ((eig - n_lam) / (eig + n_k * sigma**2)).sqrt()
    if rotation == "balanced":
        W = _rotate_balanced(W, Xt.mean(0))
    return output_like(W, was_np, dtype)


def memorization_solution(
    X: ArrayLike, p: int, sigma: float, lam: float, *, require_separable: bool = False
) -> ArrayLike:
    """The memorizing local minimiser of Corollary 3.2 (Chapter 3): W = (r_1 x_1 … r_n x_n 0 … 0).

        r_i = sqrt( (‖x_i‖² − nλ) / (‖x_i‖⁴ + σ² ‖x_i‖²) ),   so column i has norm
        r_i ‖x_i‖ = sqrt( (‖x_i‖² − nλ) / (‖x_i‖² + σ²) ).

    This is Eq. 8 with every sample its own cluster (n_k = 1, p_k = 1). The corollary also assumes the
    samples are pairwise negatively correlated ((0, β)-separable with β < 0), which is what makes every
    other unit's ReLU "off" for a given training point; pass ``require_separable=True`` to enforce it.

    Args:
        X: ``(n, d)``; p: width, p >= n; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        ``(d, p)``, same kind as ``X``.

    Raises:
        ValueError: p < n (not enough units to store every sample); nλ >= ‖x_i‖² for some i (λ too large
            for a real solution); with ``require_separable``, a pair with ⟨x_i, x_j⟩ >= 0.
    """
    Xt, was_np, dtype = data_matrix(X)
    n, d = Xt.shape
    p = width(p)
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    if p < n:
        raise ValueError(
            f"Corollary 3.2 needs p >= n (one hidden unit per training sample), got p = {p} < n = {n}"
        )
    sq = Xt.square().sum(1)
    n_lam = n * lam
    bad = torch.nonzero(sq <= n_lam).flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"lam too large for a real solution: Corollary 3.2 needs n*lam < min_i ||x_i||^2, but "
            f"n*lam = {n_lam:.4g} >= ||x_{i}||^2 = {float(sq[i]):.4g}"
        )
    if require_separable and n > 1:
        G = Xt @ Xt.T
        off = G - torch.diag(torch.diag(G))
        off.fill_diagonal_(-math.inf)
        if float(off.max()) >= 0:
            i, j = divmod(int(off.argmax()), n)
            raise ValueError(
                f"Corollary 3.2 assumes pairwise negatively correlated samples (beta < 0), but "
                f"<x_{i}, x_{j}> = {float(G[i, j]):.4g} >= 0"
            )
    r = ((sq - n_lam) / (sq.square() + sigma**2 * sq)).sqrt()
    W = torch.zeros(d, p, dtype=Xt.dtype)
    W[:, :n] = (Xt * r[:, None]).T
    return output_like(W, was_np, dtype)


def generalization_solution(
    clusters: list[ArrayLike], widths: list[int], sigma: float, lam: float, *, rotation: str = "identity"
) -> ArrayLike:
    """The block-wise local minimiser of Corollaries 3.3 / 3.4 (Chapters 4-5): (W_1 | W_2 | … | W_M).

    Block k is :func:`cluster_block` ``(clusters[k], n, widths[k], σ, λ)`` with n = Σ_k n_k. A cluster of
    n_ℓ identical copies of x_ℓ with width 1 gives the hybrid regime's memorizing column r_ℓ x_ℓ of
    Corollary 3.4, i.e. Eq. 9 with nλ replaced by nλ / n_ℓ.

    Args:
        clusters: list of ``(n_k, d)`` arrays (same d). widths: list of p_k (same length).
        sigma: σ >= 0. lam: λ >= 0. rotation: see :func:`cluster_block`.

    Returns:
        ``(d, Σ_k p_k)``, same kind as ``clusters[0]``.
    """
    if len(clusters) == 0 or len(clusters) != len(widths):
        raise ValueError(
            f"need one width per cluster and at least one cluster, got {len(clusters)} clusters and "
            f"{len(widths)} widths"
        )
    data = [data_matrix(c, f"clusters[{k}]") for k, c in enumerate(clusters)]
    d = data[0][0].shape[1]
    for k, (c, _, _) in enumerate(data):
        if c.shape[1] != d:
            raise ValueError(f"clusters[{k}] has dimension {c.shape[1]}, clusters[0] has {d}: all must match")
    n = sum(c.shape[0] for c, _, _ in data)
    blocks = [
        cluster_block(c, n, w, sigma, lam, rotation=rotation)
        for (c, _, _), w in zip(data, widths, strict=True)
    ]
    W = torch.cat(blocks, dim=1)
    _, was_np, dtype = data[0]
    return output_like(W, was_np, dtype)
