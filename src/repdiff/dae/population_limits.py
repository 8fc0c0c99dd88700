"""Population (n → ∞) quantities of the generalization regime (Chapter 4).

- :func:`limit_block`: the limit of a cluster's block map (Corollary 3.3);
- :func:`linear_map_population_loss`, :func:`wiener_block_test_loss`: exact test losses of a linear map and
  of the rank-p_k Wiener block; :func:`printed_test_loss_bound`: the bound as printed, for comparison;
- :func:`block_residual`, :func:`subspace_angles_deg`: how far trained weights are from the block form.
"""

from __future__ import annotations

import numpy as np
import torch

from repdiff._arrays import ArrayLike, like_input, require_finite, to_tensor
from repdiff.dae.closed_form_inputs import (
    nonneg,
    second_moment,
    sorted_eig,
    width,
)

__all__ = [
    "linear_map_population_loss",
    "wiener_block_test_loss",
    "printed_test_loss_bound",
    "limit_block",
    "block_residual",
    "subspace_angles_deg",
]


def linear_map_population_loss(M: ArrayLike, S: ArrayLike, sigma: float) -> float:
    """Population denoising error of the linear map x ↦ M x on data with second moment S = E[x xᵀ].

        E‖M(x + σε) − x‖² = tr((M − I) S (M − I)ᵀ) + σ² ‖M‖²_F

    (Chapter 4: the test loss of one cluster's block, exactly, without sampling). ``M``, ``S``: ``(d, d)``.
    """
    St, _ = second_moment(S)
    Mt, _ = to_tensor(M, "M")
    if Mt.shape != St.shape:
        raise ValueError(f"M must have the shape of S, {tuple(St.shape)}; got {tuple(Mt.shape)}")
    require_finite(Mt, "M")
    sigma = nonneg(sigma, "sigma")
    Mt = Mt.double()
    E = Mt - torch.eye(St.shape[0], dtype=St.dtype)
    return float(torch.trace(E @ St @ E.T) + sigma**2 * Mt.square().sum())


def _kept_and_dropped(S: ArrayLike, p_k: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The eigenvalues of the second moment ``S (d, d)`` kept by a rank-``p_k`` block (the ``p_k`` largest) and
    the dropped ones, both decreasing, and the checked σ (Chapter 4's test losses)."""
    St, _ = second_moment(S)
    p_k = width(p_k, "p_k")
    sigma = nonneg(sigma, "sigma")
    s, _ = sorted_eig(St)
    if p_k > len(s):
        raise ValueError(f"p_k = {p_k} exceeds the dimension d = {len(s)}")
    return s[:p_k], s[p_k:], sigma


def wiener_block_test_loss(S: ArrayLike, p_k: int, sigma: float) -> float:
    """Exact population loss of the rank-p_k Wiener block U_p diag(s_j/(s_j+σ²)) U_pᵀ on second moment S.

        Σ_{j <= p_k} σ² s_j / (s_j + σ²)  +  Σ_{j > p_k} s_j,      s_j = eig_j(S), decreasing

    Each kept direction costs its bias s_jσ⁴/(s_j+σ²)² *plus* its noise variance σ²s_j²/(s_j+σ²)²; each
    dropped direction costs its whole energy (Chapter 4).
    """
    kept, dropped, sigma = _kept_and_dropped(S, p_k, sigma)
    if sigma == 0:
        return float(dropped.sum())
    return float((sigma**2 * kept / (kept + sigma**2)).sum() + dropped.sum())


def printed_test_loss_bound(S: ArrayLike, p_k: int, sigma: float) -> float:
    """The leading terms of the test-loss bound as printed after Corollary 3.3 (one cluster, λ → 0):

        Σ_{j <= p_k} s_j σ⁴ / (s_j + σ²)²  +  Σ_{j > p_k} s_j

    It keeps only the squared-bias part of each kept direction and drops the noise-variance part
    σ² s_j² / (s_j + σ²)², so it *underestimates* :func:`wiener_block_test_loss` (Chapter 4 shows by how
    much). The finite-sample term C_k p_k / (σ² n_k) is not included (its constant is not given).
    """
    kept, dropped, sigma = _kept_and_dropped(S, p_k, sigma)
    if sigma == 0:
        return float(dropped.sum())
    return float((kept * sigma**4 / (kept + sigma**2) ** 2).sum() + dropped.sum())


def limit_block(
    S: ArrayLike, rho: float, p_k: int, sigma: float, lam: float, *, printed_typo: bool = False
) -> ArrayLike:
    """Population limit of a cluster's block map W_k W_kᵀ (Corollary 3.3, Chapter 4):

        [ (S − (λ/ρ) I) (S + σ² I)⁻¹ ]_rank-p_k  =  U_p diag( (s_j − λ/ρ) / (s_j + σ²) ) U_pᵀ

    with s_j, U_p the top-``p_k`` eigenpairs of the mode's second moment S = μμᵀ + Σ and ρ its mixture
    weight (Eq. 8 with Λ_k ≈ n_k S and n_k ≈ ρ n). ``printed_typo=True`` uses (S + σ I)⁻¹, as the
    camera-ready prints it, so a chapter can show numerically that σ² is right.

    Args:
        S: ``(d, d)`` second moment; rho: mixture weight in (0, 1]; p_k: rank; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        ``(d, d)``, same kind as ``S``.

    Raises:
        ValueError: if λ/ρ >= s_{p_k} (no real block, cf. Theorem 3.1's condition).
    """
    St, was_np = second_moment(S)
    p_k = width(p_k, "p_k")
    sigma, lam = nonneg(sigma, "sigma"), nonneg(lam, "lam")
    rho = float(rho)
    if not (0 < rho <= 1):
        raise ValueError(f"rho (the mixture weight) must lie in (0, 1], got {rho!r}")
    s, U = sorted_eig(St)
    if p_k > len(s):
        raise ValueError(f"p_k = {p_k} exceeds the dimension d = {len(s)}")
    s, U = s[:p_k], U[:, :p_k]
    if float(s[-1]) <= lam / rho:
        raise ValueError(
            f"need lam/rho < s_{p_k} (the p_k-th eigenvalue of S), got lam/rho = {lam / rho:.4g} "
            f">= {float(s[-1]):.4g}"
        )
    noise = sigma if printed_typo else sigma**2
    a = (s - lam / rho) / (s + noise)
    return like_input((U * a) @ U.T, was_np)


def block_residual(W: ArrayLike, W_star: ArrayLike) -> float:
    """‖R‖_F of Theorem 3.1 up to rotation: min over orthogonal O ``(p, p)`` of ‖W − W* O‖_F (Chapter 4).

    The minimum over all orthogonal O (orthogonal Procrustes) is a lower bound on the minimum over the
    block-diagonal O = diag(O_k) the theorem allows. ``W``, ``W_star``: ``(d, p)``.
    """
    A, B = np.asarray(W, dtype=np.float64), np.asarray(W_star, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ValueError(f"W and W_star must have the same (d, p) shape, got {A.shape} and {B.shape}")
    U, _, Vt = np.linalg.svd(B.T @ A)
    return float(np.linalg.norm(A - B @ (U @ Vt)))


def subspace_angles_deg(M_a: ArrayLike, M_b: ArrayLike, rank: int) -> np.ndarray:
    """Principal angles in degrees between the top-``rank`` eigenspaces of two symmetric maps ``(d, d)``
    (Chapter 4: do two networks use the same directions for a mode?). Returns ``(rank,)``, ascending."""
    Ua = np.linalg.eigh(0.5 * (np.asarray(M_a) + np.asarray(M_a).T))[1][:, ::-1][:, :rank]
    Ub = np.linalg.eigh(0.5 * (np.asarray(M_b) + np.asarray(M_b).T))[1][:, ::-1][:, :rank]
    c = np.clip(np.linalg.svd(Ua.T @ Ub, compute_uv=False), -1.0, 1.0)
    return np.sort(np.degrees(np.arccos(c)))
