"""The checks behind Chapters 1-2's claims: optimal denoisers, Monte-Carlo agreement, the linear DAE.

A chapter calls a check function and tests/test_negative_controls_part1a.py calls the *same* function on a
named wrong answer (identity map, σ for σ², untrained weights, ...), which must raise CheckFailed.
"""

from __future__ import annotations

import numpy as np

from repdiff._arrays import ArrayLike
from repdiff.dae.linear_solutions import linear_dae_loss, linear_dae_min_loss
from repdiff.dae.optimal_denoiser import tweedie_denoiser
from repdiff.notebook import CheckResult, check, check_range

__all__ = [
    "check_tweedie",
    "check_tweedie_monte_carlo",
    "check_dsm_minimiser",
    "check_not_affine",
    "check_monte_carlo",
    "check_linear_dae_minimum",
    "check_linear_dae_fit",
    "check_no_lower_loss",
]


def check_tweedie(what: str, log_density, y: ArrayLike, sigma: float, estimate: ArrayLike, tol: float) -> CheckResult:
    """Check a posterior-mean estimate ``(m, d)`` against Tweedie's formula for ``log_density`` (Chapter 1).

    The chapter runs it on a Monte-Carlo estimate, on the mixture's responsibility-weighted Wiener formula,
    on :func:`empirical_denoiser` and on :func:`wiener_denoiser`. Wrong answers it rejects: the identity map
    f(y) = y, and a denoiser with σ in place of σ² (tests/test_negative_controls_part1a.py).
    """
    return check(what, estimate, tweedie_denoiser(log_density, y, sigma), tol=tol)


def check_tweedie_monte_carlo(log_density, y: ArrayLike, sigma: float, estimate: ArrayLike, se: ArrayLike, *,
                              n_se: float = 5.0) -> dict[str, float]:
    """Check a Monte-Carlo posterior mean against Tweedie's formula coordinate by coordinate (Chapter 1).

    The statistic is z = max over queries i and coordinates c of |estimate[i, c] − Tweedie[i, c]| / se[i], with
    ``se`` ``(m,)`` the per-query standard errors of :func:`posterior_mean_monte_carlo`; it must be ≤ ``n_se``.
    Unlike a relative tolerance on the whole array, this rejects a small uniform bias: an estimate (or a
    Tweedie side) scaled by 1.01 is about ten standard errors off on the chapter's queries
    (tests/test_negative_controls_ch01_04.py).

    Returns:
        dict with ``z_max`` and ``rel_err`` = ‖estimate − Tweedie‖ / ‖Tweedie‖ (not checked; for the prose).
    """
    est = np.asarray(estimate, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64).ravel()
    t = tweedie_denoiser(log_density, y, sigma)
    if est.shape != t.shape or s.shape != (len(t),):
        raise ValueError(f"estimate must be (m, d) = {t.shape} and se (m,), got {est.shape} and {s.shape}")
    if not (s > 0).all():
        raise ValueError("standard errors must be positive")
    z = float((np.abs(est - t) / s[:, None]).max())
    check_range("largest |Monte Carlo - Tweedie| / standard error (over queries and coordinates)", z, high=n_se)
    return {"z_max": z, "rel_err": float(np.linalg.norm(est - t) / np.linalg.norm(t))}


def check_dsm_minimiser(x: ArrayLike, outputs: dict[str, ArrayLike], best: str) -> dict[str, float]:
    """DSM losses E‖f(y) − x‖² of several denoisers on the same pairs, and a check that ``best`` wins (Ch. 1).

    Args:
        x: ``(m, d)`` clean points. outputs: name → ``(m, d)`` outputs f(y) on their noisy versions.
        best: the name claimed to have the lowest loss (Theorem: the posterior mean).

    Returns:
        name → DSM loss. Raises CheckFailed if another denoiser has a lower loss than ``best``.
    """
    xt = np.asarray(x, dtype=np.float64)
    if best not in outputs or len(outputs) < 2:
        raise ValueError(f"outputs must contain {best!r} and at least one competitor, got {sorted(outputs)}")
    losses = {}
    for name, f in outputs.items():
        fa = np.asarray(f, dtype=np.float64)
        if fa.shape != xt.shape:
            raise ValueError(f"outputs[{name!r}] has shape {fa.shape}, x has {xt.shape}")
        losses[name] = float(((fa - xt) ** 2).sum(1).mean())
    margin = min(v for k, v in losses.items() if k != best) - losses[best]
    check_range(f"DSM loss margin of the best competitor over {best}", margin, low=0.0)
    return losses


def check_not_affine(what: str, defects: ArrayLike, *, low: float = 0.1) -> CheckResult:
    """Check that the largest linearity defect over a σ grid is at least ``low`` (Chapter 1: f_emp is not
    affine). The natural wrong answer, the Wiener filter, is affine and has defect 0 (to rounding)."""
    return check_range(what, float(np.max(np.asarray(defects, dtype=np.float64))), low=low)


def check_monte_carlo(what: str, draws: ArrayLike, expected: float, *, n_se: float = 4.0) -> dict[str, float]:
    """Check an exact value against the mean of independent Monte-Carlo draws, in standard errors (Ch. 2-3).

    Args:
        draws: ``(D,)`` i.i.d. estimates (one per noise draw or per batch of draws), D >= 2.
        expected: the exact (closed-form) value. n_se: how many standard errors are allowed.

    Returns:
        dict with ``mean``, ``se`` (standard error of the mean) and ``z`` = |mean − expected| / se.
    """
    a = np.asarray(draws, dtype=np.float64).ravel()
    if len(a) < 2:
        raise ValueError(f"need at least two Monte-Carlo draws, got {len(a)}")
    mean, se = float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a)))
    z = abs(mean - float(expected)) / se
    check_range(what, z, high=n_se)
    return {"mean": mean, "se": se, "z": z}


def check_linear_dae_minimum(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, p: int, sigma: float, lam: float, *,
                             tol: float = 1e-10) -> CheckResult:
    """Check that (W1, W2) ``(d, p)`` attains the eigenbasis minimum :func:`linear_dae_min_loss` (Chapter 2).

    Rejects a closed form with σ in place of σ² or without the weight-decay threshold."""
    return check("loss of W* vs the eigenbasis formula", linear_dae_loss(W1, W2, X, sigma, lam),
                 linear_dae_min_loss(X, p, sigma, lam), tol=tol)


def check_linear_dae_fit(W1: ArrayLike, W2: ArrayLike, W_star: ArrayLike, *, tol: float = 1e-6,
                         label: str = "") -> tuple[CheckResult, CheckResult]:
    """Check a trained linear DAE (W1, W2) ``(d, p)`` against the closed form W* (Chapter 2).

    Two checks: W2 W1ᵀ = W* W*ᵀ (the map, independent of the rotation O), and W1 = W2 (weight decay ties
    the layers). Rejects an untrained start, and the λ = 0 factorisation (W1 C, W2 C⁻ᵀ) for the tie.

    Returns:
        (relative error of the map, relative error of W1 vs W2).
    """
    A, B, Ws = (np.asarray(w, dtype=np.float64) for w in (W1, W2, W_star))
    err_map = check(f"{label}W2 W1^T vs closed form", B @ A.T, Ws @ Ws.T, tol=tol)
    err_tie = check(f"{label}W1 vs W2", A, B, tol=tol)
    return err_map, err_tie


def check_no_lower_loss(losses: ArrayLike, reference: float, *, slack: float = 1e-12) -> CheckResult:
    """Check that no loss found by training is below the claimed global minimum ``reference`` (Chapter 2).

    Rejects a wrong closed form (e.g. σ for σ²), whose loss trained runs beat."""
    return check_range("smallest loss found minus closed-form loss (never below 0)",
                       float(np.min(np.asarray(losses, dtype=np.float64))) - float(reference), low=-slack)
