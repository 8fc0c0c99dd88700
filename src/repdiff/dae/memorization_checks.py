"""The checks behind Chapter 3's claims: separability, local minimality and trained memorizers.

A chapter calls a check function and tests/test_negative_controls_part1a.py calls the *same* function on a
named wrong answer, which must raise CheckFailed. :func:`storage_shares` and :func:`memorization_errors`
are the measurements the checks compare.
"""

from __future__ import annotations

import numpy as np

from repdiff._arrays import ArrayLike
from repdiff.dae.relu_losses import gated_loss_hessian, relu_dae_loss_mc
from repdiff.data.synthetic import separability
from repdiff.notebook import CheckResult, check, check_range

__all__ = [
    "check_separable",
    "check_local_minimum",
    "storage_shares",
    "check_memorizer",
    "memorization_errors",
    "check_all_memorize",
]


def check_separable(clusters: list[ArrayLike], sigma: float, *, min_margin: float = 3.0) -> dict[str, float]:
    """Check the separability assumption of Definition 3.1 for a partition of the training set (Ch. 3-4):
    β < 0 (negatively correlated cluster means) and margin ≥ ``min_margin`` noise standard deviations.

    Returns :func:`repdiff.data.synthetic.separability`'s dict. Rejects positively correlated data (e.g. X + 1)."""
    sep = separability([np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in clusters])
    check_range("beta (largest cosine between cluster means) is negative", sep["beta"], high=-1e-6)
    check_range("margin / sigma", sep["margin"] / sigma, low=min_margin)
    return sep


def check_local_minimum(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, masks: ArrayLike,
                        *, n_flat: int = 0, grad_tol: float = 1e-10, eig_tol: float = 1e-9) -> dict:
    """Check that (W1, W2) is a local minimum of the gated loss with pattern ``masks`` (Chapter 3).

    Three checks on the exact gradient g and Hessian H (:func:`gated_loss_hessian`): ‖g‖ ≤ ``grad_tol``
    (stationary); the ``n_flat`` smallest eigenvalues are zero to ``eig_tol`` (the flat directions the
    chapter explains, e.g. a sample split over two units); every other eigenvalue is > ``eig_tol``.
    Rejects a saddle (W = 0, or a memorizer that dropped a sample: negative eigenvalues) and a closed form
    with wrong r_i (nonzero gradient).

    Returns:
        dict with ``grad_norm``, ``eigvals`` (ascending, ``(2dp,)``) and ``hessian`` (``(2dp, 2dp)``).
    """
    g, H = gated_loss_hessian(W1, W2, X, sigma, lam, masks)
    ev = np.linalg.eigvalsh(H)
    gn = float(np.linalg.norm(g))
    check_range("gradient norm of the gated loss", gn, high=grad_tol)
    if n_flat:
        check_range(f"largest |eigenvalue| among the {n_flat} flat directions", float(np.abs(ev[:n_flat]).max()),
                    high=eig_tol)
    check_range("smallest Hessian eigenvalue outside the flat directions", float(ev[n_flat]), low=eig_tol)
    return {"grad_norm": gn, "eigvals": ev, "hessian": H}


def storage_shares(W1: ArrayLike, W2: ArrayLike, X: ArrayLike) -> np.ndarray:
    """Unit j's share of storing sample i, (x̂_iᵀ w_{1,j})(x̂_iᵀ w_{2,j}) if unit j is on for x_i (Ch. 3).

    ``W1, W2``: ``(d, p)``; ``X``: ``(n, d)`` → ``(n, p)``. Row i sums to x̂_iᵀ W2 D_i W1ᵀ x̂_i."""
    A, B, Xa = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X))
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    return (Xhat @ A) * (Xhat @ B) * (Xa @ A > 0)


def check_memorizer(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, W_mem: ArrayLike, *,
                    tol: float = 0.02, loss_tol: float = 0.01, min_cos: float = 0.98,
                    n_draws: int = 20000) -> dict[str, float]:
    """Check a trained ReLU DAE (W1, W2) ``(d, p)`` against the memorizing closed form ``W_mem`` (Chapter 3).

    Four checks: W2 W1ᵀ vs W_mem W_memᵀ (relative, ``tol``); the Monte-Carlo loss vs W_mem's on the same
    noise (``loss_tol``); the weight stored along each sample (row sums of :func:`storage_shares`) vs
    r_i²‖x_i‖² (``tol``); every unit holding ≥ 10% of a sample points along it (|cos| ≥ ``min_cos``).
    Rejects an untrained network, the linear DAE of Chapter 2 and r_i with σ for σ².

    Returns:
        dict with ``err_M``, ``err_L``, ``err_a``, ``L_trained``, ``min_cos`` and ``active`` ((n, p) bool).
    """
    A, B, Xa, Wm = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X, W_mem))
    n = len(Xa)
    err_M = check("trained W2 W1^T vs W_mem W_mem^T", B @ A.T, Wm @ Wm.T, tol=tol)
    L_trained = relu_dae_loss_mc(A, B, Xa, sigma, lam, n_draws=n_draws, seed=1)
    L_ref = relu_dae_loss_mc(Wm, Wm, Xa, sigma, lam, n_draws=n_draws, seed=1)
    err_L = check("trained loss vs loss of W_mem (Monte Carlo, same noise)", L_trained, L_ref, tol=loss_tol)
    share = storage_shares(A, B, Xa)
    a_theory = np.linalg.norm(Wm[:, :n], axis=0) ** 2
    err_a = check("weight stored along each sample (sum of unit shares) vs r_i^2 |x_i|^2", share.sum(1),
                  a_theory, tol=tol)
    active = share > 0.1 * a_theory[:, None]
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    cos = np.abs(Xhat @ A) / np.maximum(np.linalg.norm(A, axis=0), 1e-300)
    mc = min(cos[i, active[i]].min() for i in range(n))
    check_range("smallest |cosine| between an active unit and the sample it stores", mc, low=min_cos)
    return {"err_M": float(err_M), "err_L": float(err_L), "err_a": float(err_a), "L_trained": L_trained,
            "min_cos": float(mc), "active": active}


def memorization_errors(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, W_mem: ArrayLike) -> dict[str, float]:
    """How far a network's map W2 W1ᵀ is from W_mem W_memᵀ (Chapter 3): ``err`` (relative Frobenius, whole
    space) and ``err_span`` (both maps compressed to the span of the training data, relative to W_mem's)."""
    A, B, Xa, Wm = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X, W_mem))
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    P = Xhat.T @ np.linalg.pinv(Xhat.T)
    M, M0 = B @ A.T, Wm @ Wm.T
    return {"err": float(np.linalg.norm(M - M0) / np.linalg.norm(M0)),
            "err_span": float(np.linalg.norm(P @ (M - M0) @ P) / np.linalg.norm(M0))}


def check_all_memorize(errs_span: ArrayLike, loss_gaps: ArrayLike, *, span_tol: float = 0.05,
                       loss_tol: float = 0.03) -> tuple[CheckResult, CheckResult]:
    """Check that every training variant memorizes (Chapter 3): the worst error of W2W1ᵀ inside the data
    span ≤ ``span_tol`` and the worst relative loss gap to the closed form ≤ ``loss_tol``.
    Rejects a variant that is the linear DAE of Chapter 2 or an untrained network."""
    w_span = check_range("every variant: error of W2W1^T inside the data span",
                         float(np.max(np.asarray(errs_span, dtype=np.float64))), high=span_tol)
    w_loss = check_range("every variant: relative loss gap to the closed form",
                         float(np.max(np.abs(np.asarray(loss_gaps, dtype=np.float64)))), high=loss_tol)
    return w_span, w_loss
