"""Leakage of the ReLU mask: how often noise changes which units are on (Theorem 3.1's residual, Chapter 5).

- :func:`unit_margins`: distance of each input to each unit's hyperplane.
- :func:`mask_leakage`: Monte-Carlo probability that x + σε has another ReLU mask than x.
- :func:`fit_leakage_rate`: fit of P(σ) ≈ C exp(−c γ²/σ²).

Conventions: rows are samples (``X`` is ``(n, d)``), weights are ``(d, p)``; numpy or torch in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from repdiff._arrays import ArrayLike, require_finite, to_tensor

__all__ = ["unit_margins", "mask_leakage", "fit_leakage_rate"]


def unit_margins(W1: ArrayLike, X: ArrayLike) -> ArrayLike:
    """Distance of each input to each unit's hyperplane: |w_jᵀ x_i| / ‖w_j‖, shape ``(n, p)`` (Chapter 5).

    The ReLU mask of unit j at x_i + σε differs from the one at x_i exactly when the noise's component
    along w_j/‖w_j‖ (a N(0, σ²) variable) crosses this distance. Zero columns of ``W1`` are rejected.
    """
    W, was_np = to_tensor(W1, "W1")
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(W)
    if W.ndim != 2 or Xt.ndim != 2 or Xt.shape[1] != W.shape[0]:
        raise ValueError(f"W1 (d, p) and X (n, d) must share d, got {tuple(W.shape)} and {tuple(Xt.shape)}")
    require_finite(W, "W1")
    require_finite(Xt, "X")
    norms = W.norm(dim=0)
    if (norms == 0).any():
        raise ValueError("W1 has a zero column: a unit with no direction has no hyperplane (drop it first)")
    m = (Xt @ W).abs() / norms
    return m.numpy() if was_np else m


@torch.no_grad()
def mask_leakage(W1: ArrayLike, X: ArrayLike, sigmas: Any, *, n_draws: int = 200, seed: int = 0) -> np.ndarray:
    """Probability that noise changes the ReLU mask: P[1(W1ᵀ(x + σε) > 0) ≠ 1(W1ᵀx > 0)] (Chapter 5).

    Estimated by Monte Carlo over the rows of ``X`` and ``n_draws`` noise draws per row, for each σ in
    ``sigmas``. A change of any unit counts (the whole mask must be right for Theorem 3.1's block
    decomposition). Returns ``(len(sigmas),)``.
    """
    W, _ = to_tensor(W1, "W1")
    Xt, _ = to_tensor(X, "X")
    W, Xt = W.double(), Xt.double()
    if W.ndim != 2 or Xt.ndim != 2 or Xt.shape[1] != W.shape[0]:
        raise ValueError(f"W1 (d, p) and X (n, d) must share d, got {tuple(W.shape)} and {tuple(Xt.shape)}")
    require_finite(W, "W1")
    require_finite(Xt, "X")
    sig = np.asarray(sigmas, dtype=np.float64).ravel()
    if sig.size == 0 or not np.isfinite(sig).all() or (sig <= 0).any():
        raise ValueError(f"sigmas must be finite numbers > 0, got {sig.tolist()}")
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    gen = torch.Generator().manual_seed(int(seed))
    clean = (Xt @ W) > 0  # (n, p)
    reps = Xt.repeat(int(n_draws), 1)
    clean_r = clean.repeat(int(n_draws), 1)
    eps = torch.randn(reps.shape, generator=gen, dtype=torch.float64)  # the same draws for every σ
    out = np.empty(sig.size)
    for k, s in enumerate(sig):
        changed = (((reps + s * eps) @ W) > 0) != clean_r
        out[k] = float(changed.any(dim=1).double().mean())
    return out


def fit_leakage_rate(sigmas: Any, probs: Any, gamma: float, *, min_prob: float = 0.0) -> dict[str, float]:
    """Fit P(σ) ≈ C exp(−c γ²/σ²) by least squares on log P against γ²/σ² (Chapter 5).

    Only points with ``probs > min_prob`` (and > 0) enter the fit (log 0 is undefined; a Monte-Carlo zero
    says only that P is below about 1/number-of-draws). Returns ``c``, ``C`` and ``r2`` (coefficient of
    determination of the linear fit in log space) and ``n_points`` used.

    Raises:
        ValueError: fewer than 2 usable points, γ <= 0, or mismatched inputs.
    """
    s = np.asarray(sigmas, dtype=np.float64).ravel()
    P = np.asarray(probs, dtype=np.float64).ravel()
    if s.shape != P.shape:
        raise ValueError(f"sigmas and probs must have the same length, got {s.size} and {P.size}")
    if not (np.isfinite(s).all() and np.isfinite(P).all()):
        raise ValueError("sigmas and probs must be finite (no NaN)")
    if (s <= 0).any():
        raise ValueError("every sigma must be > 0")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0 (the margin), got {gamma!r}")
    keep = (P > max(min_prob, 0.0))
    if keep.sum() < 2:
        raise ValueError(
            f"need at least 2 points with probability > {max(min_prob, 0.0)} to fit, got {int(keep.sum())}"
        )
    u, logP = gamma**2 / s[keep] ** 2, np.log(P[keep])
    slope, intercept = np.polyfit(u, logP, 1)
    pred = intercept + slope * u
    ss_res, ss_tot = float(((logP - pred) ** 2).sum()), float(((logP - logP.mean()) ** 2).sum())
    return {
        "c": float(-slope),
        "C": float(np.exp(intercept)),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "n_points": float(keep.sum()),
    }
