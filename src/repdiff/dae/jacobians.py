"""Jacobians of denoisers and what the theory predicts for them (Chapter 8).

A ReLU DAE is piecewise linear: at a noisy input y its Jacobian is

    J(y) = W2 diag(a(σ) ⊙ 1[W1ᵀ(y − c) > 0]) W1ᵀ + s I          (d, d)

(for the time-conditioned model of :mod:`repdiff.dae.toy_diffusion`; a = 1, c = 0, s = 0 for the plain DAE).
Paper Cor. 3.2 predicts J ≈ r_i² x_i x_iᵀ (rank one, along the stored sample) near a memorized sample,
Cor. 3.3 predicts J ≈ the rank-p_k Wiener map of the active cluster for a generalizing model.

- :func:`denoiser_jacobian`: exact Jacobians by automatic differentiation (``torch.func.jacrev`` + ``vmap``).
- :func:`relu_dae_jacobian`: the closed form above, to check the autograd result against.
- :func:`singular_values`, :func:`effective_rank`: spectra.
- :func:`rank_one_alignment`, :func:`subspace_cosines`, :func:`wiener_map`: the comparisons with theory.
- :func:`gain_along`, :func:`gain_candidates`, :func:`check_gain_prediction`, :func:`check_gain_shortfall`:
  learned gains against the Wiener gain, the σ-for-σ² typo and a plain projector, where they differ.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from repdiff.notebook import CheckFailed, check_range

__all__ = [
    "denoiser_jacobian",
    "relu_dae_jacobian",
    "singular_values",
    "effective_rank",
    "rank_one_alignment",
    "subspace_cosines",
    "wiener_map",
    "relative_error",
    "GAIN_CANDIDATES",
    "gain_along",
    "gain_candidates",
    "candidate_separation",
    "check_gain_prediction",
    "check_gain_shortfall",
]


def _check_points(x: torch.Tensor, d: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"x must have shape (N, {d}), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinity")
    return x


def _check_sigma(sigma: float) -> float:
    s = float(sigma)
    if not s > 0 or s == float("inf"):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return s


def denoiser_jacobian(denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """∂x̂0/∂x at each row of ``x``: ``(N, d)`` → ``(N, d, d)`` (row i of J is the gradient of output i).

    ``denoiser(x, sigma)`` maps a batch ``(N, d)`` to ``(N, d)`` and must treat rows independently (every
    denoiser in the course does). The points are batched with ``torch.func.vmap`` over ``jacrev``; a
    denoiser whose code branches on its input values (e.g. a NaN check, as in
    :func:`repdiff.theory.empirical_denoiser`), which ``vmap`` cannot trace, is differentiated one point at
    a time with ordinary autograd (``torch.autograd.functional.jacobian``) instead. (Ordinary autograd
    there, not ``jacrev``: in torch 2.13, ``jacrev`` through ``torch.cdist`` silently returns zeros.)
    """
    x = _check_points(x, getattr(denoiser, "d", None))
    sigma = _check_sigma(sigma)

    def one(v: torch.Tensor) -> torch.Tensor:
        return denoiser(v[None], sigma)[0]

    try:
        J = vmap(jacrev(one))(x)
    except RuntimeError as err:
        if "vmap" not in str(err):
            raise
        J = torch.stack([torch.autograd.functional.jacobian(one, v) for v in x])
    return J.detach()


@torch.no_grad()
def relu_dae_jacobian(model, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The closed form W2 diag(a(σ) ⊙ 1[pre-activation > 0]) W1ᵀ + s I for each row: ``(N, d, d)``.

    ``model`` is a :class:`repdiff.dae.toy_diffusion.TimeConditionedReLUDAE`.
    """
    x = _check_points(x, model.d).to(model.W1)
    sigma = _check_sigma(sigma)
    z = model.preactivation(x, sigma)  # (N, p)
    a = model.gain(torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))  # (N, p)
    D = a * (z > 0).to(x.dtype)
    J = torch.einsum("ik,nk,jk->nij", model.W2, D, model.W1)
    if model.s is not None:
        J = J + model.s * torch.eye(model.d, dtype=x.dtype, device=x.device)
    return J


def singular_values(J: torch.Tensor) -> torch.Tensor:
    """Singular values, largest first: ``(..., d, d)`` → ``(..., d)``."""
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"J must be square matrices (..., d, d), got {tuple(J.shape)}")
    if not torch.isfinite(J).all():
        raise ValueError("J contains NaN or infinity")
    return torch.linalg.svdvals(J)


def effective_rank(sv: torch.Tensor) -> torch.Tensor:
    """(Σ s_j)² / Σ s_j² along the last axis: 1 for a rank-one map, k for k equal singular values."""
    num = sv.sum(-1).square()
    den = sv.square().sum(-1)
    if (den <= 0).any():
        raise ValueError("a Jacobian is zero: its effective rank is undefined")
    return num / den


def rank_one_alignment(J: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How close each J is to a multiple of v vᵀ (paper Cor. 3.2).

    Args:
        J: ``(N, d, d)``; v: ``(N, d)`` the stored samples (centred where the model centres).

    Returns:
        ``(cos, ratio)`` each ``(N,)``: |cos| between the top left singular vector of J and v, and the
        second singular value over the first (0 for an exactly rank-one J).
    """
    if J.ndim != 3 or v.shape != J.shape[:2]:
        raise ValueError(f"J must be (N, d, d) and v (N, d); got {tuple(J.shape)} and {tuple(v.shape)}")
    U, S, _ = torch.linalg.svd(J)
    u1 = U[:, :, 0]
    cos = (u1 * v).sum(-1).abs() / v.norm(dim=-1)
    return cos, S[:, 1] / S[:, 0]


def subspace_cosines(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(A) and span(B) (columns), largest first: ``(k,)``.

    All ones when the two subspaces coincide. A: ``(d, k)``, B: ``(d, m)``.
    """
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must be (d, k) and (d, m), got {tuple(A.shape)} and {tuple(B.shape)}")
    Qa, _ = torch.linalg.qr(A)
    Qb, _ = torch.linalg.qr(B)
    return torch.linalg.svdvals(Qa.T @ Qb).clamp(max=1.0)


def wiener_map(S: torch.Tensor, sigma: float, rank: int | None = None, lam_over_rho: float = 0.0) -> torch.Tensor:
    """The (rank-truncated) linear denoiser of paper Cor. 3.3: [(S − (λ/ρ) I)(S + σ² I)⁻¹]_rank.

    Args:
        S: second-moment matrix ``(d, d)`` of one cluster (μμᵀ + Σ), symmetric positive semi-definite.
        sigma: noise level σ > 0.
        rank: keep the ``rank`` largest eigenvalues of S (all when ``None``).
        lam_over_rho: λ/ρ_k (0 without weight decay).

    Returns:
        ``(d, d)``: U diag((s_j − λ/ρ)/(s_j + σ²)) Uᵀ over the kept eigenpairs (s_j, u_j) of S.
    """
    sigma = _check_sigma(sigma)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be square (d, d), got {tuple(S.shape)}")
    if not torch.allclose(S, S.T, atol=1e-8 * float(S.abs().max()) + 1e-12):
        raise ValueError("S must be symmetric")
    evals, evecs = torch.linalg.eigh(S)
    evals, evecs = evals.flip(0), evecs.flip(1)
    k = S.shape[0] if rank is None else int(rank)
    if not 1 <= k <= S.shape[0]:
        raise ValueError(f"rank must be between 1 and {S.shape[0]}, got {rank}")
    if (evals[:k] <= lam_over_rho).any():
        raise ValueError("a kept eigenvalue of S is <= λ/ρ: the shrinkage factor would be negative")
    g = (evals[:k] - lam_over_rho) / (evals[:k] + sigma**2)
    return (evecs[:, :k] * g) @ evecs[:, :k].T


def relative_error(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """‖A − B‖_F / ‖B‖_F over the last two axes."""
    if A.shape != B.shape:
        raise ValueError(f"shapes differ: {tuple(A.shape)} vs {tuple(B.shape)}")
    return torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B)


# ----------------------------------------------------------------------------------------------------------
# gains along chosen directions, and checks of Cor. 3.2/3.3 that can tell the candidates apart (Chapter 8)

#: The three formulas Chapter 8 compares a learned gain with: the Wiener gain of Cor. 3.2/3.3, the same with
#: the camera-ready's σ in place of σ², and a plain (unshrunk) projector.
GAIN_CANDIDATES = ("wiener", "sigma typo", "projector")


def gain_along(J: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v̂ᵀ J v̂ for each matrix: how much of the direction v the map keeps. Chapter 8.

    Args:
        J: ``(N, d, d)``; v: ``(d,)`` (one direction for all) or ``(N, d)`` (one per matrix), nonzero.

    Returns:
        ``(N,)``.
    """
    if J.ndim != 3 or J.shape[1] != J.shape[2]:
        raise ValueError(f"J must be (N, d, d), got {tuple(J.shape)}")
    if v.ndim == 1:
        v = v.expand(J.shape[0], -1)
    if v.shape != J.shape[:2]:
        raise ValueError(f"v must be (d,) or (N, d) with d = {J.shape[1]}, got {tuple(v.shape)}")
    nrm = v.norm(dim=-1, keepdim=True)
    if (nrm == 0).any():
        raise ValueError("a direction v is zero")
    u = v / nrm
    return torch.einsum("ni,nij,nj->n", u, J.to(u), u)


def gain_candidates(s: float | torch.Tensor, sigma: float, n_lam: float = 0.0) -> dict[str, torch.Tensor]:
    """The gain along an eigen-direction with second moment ``s`` at noise σ, by each candidate formula.

    ``"wiener"``: (s − nλ)/(s + σ²) (paper Cor. 3.2 with s = ‖x_i‖², Cor. 3.3 with s an eigenvalue of S_k
    and nλ → λ/ρ_k); ``"sigma typo"``: (s − nλ)/(s + σ) (the camera-ready's (S + σI)⁻¹); ``"projector"``:
    (s − nλ)/s (no noise shrinkage). Same shape as ``s``. Chapter 8.
    """
    sigma = _check_sigma(sigma)
    s = torch.as_tensor(s, dtype=torch.float64)
    if (s <= n_lam).any():
        raise ValueError(f"every s must exceed n_lam = {n_lam}")
    return {"wiener": (s - n_lam) / (s + sigma**2), "sigma typo": (s - n_lam) / (s + sigma),
            "projector": (s - n_lam) / s}


def candidate_separation(cands: dict[str, torch.Tensor]) -> float:
    """Smallest relative difference |a − b|/max(a, b) between two candidate gains (median over entries)."""
    names = list(cands)
    seps = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = cands[a].double(), cands[b].double()
            seps.append(float(((x - y).abs() / torch.maximum(x.abs(), y.abs())).median()))
    return min(seps)


def check_gain_prediction(
    what: str, learned: torch.Tensor, s: float | torch.Tensor, sigma: float, *, tol: float, n_lam: float = 0.0,
    expected: str = "wiener",
) -> float:
    """Check a learned gain against one candidate formula, only where the candidates differ (Chapter 8).

    Prints the learned gain and all three :func:`gain_candidates`. Raises :class:`repdiff.CheckFailed`
    when the candidates are within ``tol`` of each other (the check could not tell them apart at this σ)
    or when the median relative deviation |learned/expected − 1| exceeds ``tol``.

    Args:
        learned: measured gains ``(N,)`` (or a scalar); s: the matching second moments, same shape or scalar.

    Returns:
        the median relative deviation from the ``expected`` candidate.
    """
    if expected not in GAIN_CANDIDATES:
        raise ValueError(f"expected must be one of {GAIN_CANDIDATES}, got {expected!r}")
    learned = torch.as_tensor(learned, dtype=torch.float64)
    cands = gain_candidates(s, sigma, n_lam)
    sep = candidate_separation(cands)
    devs = {k: float((learned / v - 1).abs().median()) for k, v in cands.items()}
    print(f"sigma = {sigma:g}: learned gain {float(learned.median()):.3f}; "
          + ", ".join(f"{k} {float(v.median()):.3f} (rel. dev. {devs[k]:.3f})" for k, v in cands.items()))
    if sep <= tol:
        raise CheckFailed(f"{what}: the candidate gains differ by only {sep:.3g} <= tol {tol:.3g} at "
                          f"sigma = {sigma:g}; the check cannot discriminate there")
    check_range(f"{what}: median |learned / {expected} - 1|", devs[expected], high=tol)
    return devs[expected]


def check_gain_shortfall(what: str, learned: torch.Tensor, reference: torch.Tensor, *, at_least: float) -> float:
    """Check that a learned gain falls short of a reference gain by at least ``at_least`` (relative, median).

    The shortfall is median((reference − learned)/reference). Raises :class:`repdiff.CheckFailed` when it
    is below ``at_least`` (e.g. when ``learned`` *is* the reference). Chapter 8.
    """
    learned = torch.as_tensor(learned, dtype=torch.float64)
    reference = torch.as_tensor(reference, dtype=torch.float64)
    short = float(((reference - learned) / reference).median())
    check_range(f"{what}: median (reference - learned) / reference", short, low=at_least)
    return short
