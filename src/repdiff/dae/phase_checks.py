"""The checks that carry the claims of Chapter 5 (hybrid regime, phase diagram, Std distributions).

The notebook runs them on its measurements, and ``tests/test_negative_controls_part1b.py`` runs the same
functions on named wrong answers (each check must fail on them). :func:`check_median_ratio` and
:func:`shuffled_labels` serve Chapter 6 too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from repdiff import metrics
from repdiff._arrays import ArrayLike
from repdiff.dae.measures import loss_and_gradient_norm
from repdiff.dae.models import ReLUDAE
from repdiff.dae.training import train_dae
from repdiff.notebook import CheckFailed, check_range

__all__ = [
    "check_memorizer",
    "check_far_below_reference",
    "gap_crossing",
    "check_boundary_moves_with_p",
    "check_region_shrinks",
    "check_memorizing_gap",
    "check_pr_rises_with_n",
    "check_distinct_minimum",
    "check_median_ratio",
    "shuffled_labels",
    "check_block_rank",
    "perturb_and_retrain",
    "check_returns",
    "check_auroc_overlap",
    "check_pr_rises_more_with_p",
]


def check_memorizer(
    what: str, denoise: Callable[[Any], Any], X_train: ArrayLike, X_test: ArrayLike, sigma: float, *,
    low: float = 0.9, n_draws: int = 4, seed: int = 0,
) -> float:
    """Check that ``denoise`` turns at least a fraction ``low`` of noisy held-out inputs into training points.

    The fraction is :func:`repdiff.metrics.denoiser_memorization` (Chapter 5): ``denoise`` maps ``(m, d)`` to
    ``(m, d)``, ``X_train`` is ``(n, d)``, ``X_test`` ``(m, d)``. Chapter 5 runs it on the empirical optimal
    denoiser; the identity map and the Wiener filter must fail it. Returns the fraction.
    """
    frac = metrics.denoiser_memorization(denoise, X_train, X_test, sigma, n_draws=n_draws, seed=seed)
    return float(check_range(what, frac, low=low))


def check_far_below_reference(what: str, mem_model: Any, mem_reference: Any, *, high: float = 0.25) -> float:
    """Check that a model copies held-out inputs far less often than a reference memorizer (Chapter 5).

    ``mem_model`` and ``mem_reference`` are memorization fractions of the same cells (any equal shapes,
    e.g. ``(len(ns), len(ps))`` against the empirical optimal denoiser broadcast over the widths). The
    statistic is the largest ratio model / reference over the cells; it must be <= ``high``. The reference
    itself (ratio 1) must fail. Returns the largest ratio.
    """
    a, r = np.asarray(mem_model, dtype=np.float64), np.asarray(mem_reference, dtype=np.float64)
    a, r = np.broadcast_arrays(a, r)
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(r).all()) or (r <= 0).any():
        raise ValueError("need finite memorization fractions with a reference > 0 in every cell")
    return float(check_range(what, float((a / r).max()), high=high))


def gap_crossing(rel_gap: Any, ns: Any, *, level: float = 0.5) -> np.ndarray:
    """Training-set size n* where the relative generalization gap first falls below ``level`` (Chapter 5).

    ``rel_gap`` is ``(len(ns), P)`` (rows: increasing n, columns: widths). For each column, n* is found by
    linear interpolation in log n between the last size at or above ``level`` and the next one; NaN when the
    gap never falls below ``level`` inside the grid, or is already below at the smallest n. Returns ``(P,)``.
    """
    G = np.asarray(rel_gap, dtype=np.float64)
    n = np.asarray(ns, dtype=np.float64).ravel()
    if G.ndim != 2 or G.shape[0] != n.size or n.size < 2 or (n <= 0).any() or (np.diff(n) <= 0).any():
        raise ValueError(f"rel_gap must be (len(ns), P) with ns increasing and > 0, got {G.shape} and {n.size} sizes")
    out = np.full(G.shape[1], np.nan)
    for j in range(G.shape[1]):
        below = np.nonzero(G[:, j] < level)[0]
        if below.size == 0 or below[0] == 0:
            continue
        i = int(below[0])
        t = (G[i - 1, j] - level) / (G[i - 1, j] - G[i, j])
        out[j] = float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1]))))
    return out


def check_boundary_moves_with_p(
    what: str, rel_gap: Any, ns: Any, ps: Any, *, level: float = 0.5, low: float = 0.4, high: float = 1.6
) -> dict[str, Any]:
    """Fit log n* = a + b log p over the widths whose crossing n* (:func:`gap_crossing`) lies in the grid,
    and check the slope b lies in [``low``, ``high``] (Chapter 5).

    b ≈ 1 means the boundary between the regimes sits at a fixed ratio n/p; a boundary at a fixed n, whatever
    the width (a gap table that depends on n only), gives b = 0 and fails. Returns ``slope``, ``n_star``
    ``(P,)`` and ``ratio`` = n*/p ``(P,)`` (NaN where no crossing).
    """
    p = np.asarray(ps, dtype=np.float64).ravel()
    n_star = gap_crossing(rel_gap, ns, level=level)
    if n_star.size != p.size:
        raise ValueError(f"rel_gap has {n_star.size} columns but there are {p.size} widths")
    ok = np.isfinite(n_star)
    if ok.sum() < 2:
        raise CheckFailed(f"{what}: the gap crosses {level} inside the grid for {int(ok.sum())} width(s); need 2")
    slope = float(np.polyfit(np.log(p[ok]), np.log(n_star[ok]), 1)[0])
    check_range(what, slope, low=low, high=high)
    return {"slope": slope, "n_star": n_star, "ratio": n_star / p}


def check_region_shrinks(what: str, rel_gap: Any, *, level: float = 0.5, high: int = -1) -> np.ndarray:
    """Count the cells with relative gap >= ``level`` at each noise level and check that the count at the last
    σ minus the count at the first is <= ``high`` (Chapter 5). ``rel_gap`` is ``(len(ns), len(ps), S)``.

    A table that does not depend on σ (the same slice at every noise level) gives 0 and fails. Returns the
    counts ``(S,)``.
    """
    G = np.asarray(rel_gap, dtype=np.float64)
    if G.ndim != 3 or G.shape[2] < 2:
        raise ValueError(f"rel_gap must be (len(ns), len(ps), S) with S >= 2 noise levels, got {G.shape}")
    counts = (G >= level).sum(axis=(0, 1))
    check_range(what, float(counts[-1] - counts[0]), high=high)
    return counts


def check_memorizing_gap(what: str, rel_gap: Any, ns: Any, ps: Any, *, low: float = 0.75) -> float:
    """Check that the relative generalization gap is >= ``low`` in every cell with n <= p (Chapter 5).

    ``rel_gap`` is ``(len(ns), len(ps))``. A denoiser that treats new points like training points (the identity
    map, the Wiener filter: gap ≈ 0) fails. Returns the smallest gap over those cells.
    """
    G = np.asarray(rel_gap, dtype=np.float64)
    n = np.asarray(ns).ravel()
    p = np.asarray(ps).ravel()
    if G.shape != (n.size, p.size):
        raise ValueError(f"rel_gap must be (len(ns), len(ps)) = {(n.size, p.size)}, got {G.shape}")
    cells = n[:, None] <= p[None, :]
    if not cells.any():
        raise ValueError("no cell with n <= p in the grid")
    return float(check_range(what, float(G[cells].min()), low=low))


def check_pr_rises_with_n(what: str, pr_table: Any, *, low: float = 1.1) -> np.ndarray:
    """Check that, for every width, the median participation ratio at the largest n over the one at the
    smallest n is >= ``low`` (Chapter 5). ``pr_table`` is ``(len(ns), len(ps))``; a table flat in n fails.
    Returns the ratios ``(len(ps),)``.
    """
    T = np.asarray(pr_table, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] < 2 or (T[0] <= 0).any():
        raise ValueError(f"pr_table must be (len(ns) >= 2, len(ps)) with positive entries, got {T.shape}")
    ratio = T[-1] / T[0]
    check_range(what, float(ratio.min()), low=low)
    return ratio


def check_distinct_minimum(
    what: str, W1: ArrayLike, W2: ArrayLike, W_ref: ArrayLike, X: ArrayLike, sigma: float, lam: float, *,
    max_grad_ratio: float = 3.0, min_loss_excess: float = 0.01, n_draws: int = 256, seed: int = 5,
) -> dict[str, float]:
    """Check that ``(W1, W2)`` is another stationary point with a higher loss than the closed form ``W_ref``
    (``W1 = W2 = W_ref``), all ``(d, p)`` (Chapter 5).

    On the same fixed noise draws, the gradient norm at ``(W1, W2)`` must be at most ``max_grad_ratio`` times
    the one at ``W_ref`` (a local minimum: its gradient norm is the Monte-Carlo floor), and the loss must exceed
    the closed form's by at least ``min_loss_excess``. A random initialisation fails the first condition, the
    closed form itself the second. Returns ``loss``, ``loss_ref``, ``grad``, ``grad_ref``.
    """
    loss, grad = loss_and_gradient_norm(W1, W2, X, sigma, lam, n_draws=n_draws, seed=seed)
    loss_ref, grad_ref = loss_and_gradient_norm(W_ref, W_ref, X, sigma, lam, n_draws=n_draws, seed=seed)
    check_range(f"{what}: gradient norm / the closed form's (Monte-Carlo floor)", grad / grad_ref,
                high=max_grad_ratio)
    check_range(f"{what}: loss minus the closed form's", loss - loss_ref, low=min_loss_excess)
    return {"loss": loss, "loss_ref": loss_ref, "grad": grad, "grad_ref": grad_ref}


def check_median_ratio(what: str, values_a: Any, values_b: Any, *, low: float | None = None,
                       high: float | None = None) -> float:
    """Check median(``values_a``) / median(``values_b``) against [``low``, ``high``] (Chapters 5 and 6).

    Used for per-sample spikiness (Std, participation ratio) of two models, ``(N_a,)`` and ``(N_b,)``. The
    natural wrong answers: two generalizing models, or the pooled values split at random (shuffled model
    labels), both give a ratio near 1. Returns the ratio.
    """
    a = np.asarray(values_a, dtype=np.float64).ravel()
    b = np.asarray(values_b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("need non-empty finite values for both models")
    mb = float(np.median(b))
    if mb <= 0:
        raise ValueError(f"the median of values_b must be > 0, got {mb}")
    return float(check_range(what, float(np.median(a)) / mb, low=low, high=high))


def shuffled_labels(values_a: Any, values_b: Any, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The negative control of :func:`check_median_ratio`: pool ``(N_a,)`` and ``(N_b,)`` values and split them
    at random into groups of the same sizes (Chapters 5-6)."""
    a = np.asarray(values_a, dtype=np.float64).ravel()
    pooled = np.concatenate([a, np.asarray(values_b, dtype=np.float64).ravel()])
    perm = np.random.default_rng(seed).permutation(pooled.size)
    return pooled[perm[: a.size]], pooled[perm[a.size :]]


def check_block_rank(what: str, W1: ArrayLike, on_fraction: ArrayLike, *, low: float, min_on: float = 0.5) -> float:
    """Check that the units a cluster switches on point in distinct directions (Chapter 5).

    ``W1`` is ``(d, p)``, ``on_fraction`` ``(p,)`` the fraction of the cluster's noisy inputs that switch each
    unit on; the units with ``on_fraction > min_on`` form the cluster's block. The statistic is the
    :func:`repdiff.metrics.participation_ratio` of their singular values, (Σ s²)² / Σ s⁴ (the
    same quantity :func:`repdiff.dae.generalization_checks.active_span_dimension` gives per input), which
    must be >= ``low``. A block of three principal directions gives about 3; parallel copies of one unit (a
    memorizer whose stored sample is split, Chapter 3) give 1 and
    fail, whatever their participation ratio per input. Returns the effective rank.
    """
    W = np.asarray(W1, dtype=np.float64)
    on = np.asarray(on_fraction, dtype=np.float64).ravel()
    if W.ndim != 2 or on.shape != (W.shape[1],):
        raise ValueError(f"W1 must be (d, p) and on_fraction (p,), got {W.shape} and {on.shape}")
    units = on > min_on
    if not units.any():
        raise CheckFailed(f"{what}: no unit is on for more than {min_on:.0%} of the cluster")
    s = np.linalg.svd(W[:, units], compute_uv=False)
    return float(check_range(what, metrics.participation_ratio(s), low=low))


def perturb_and_retrain(
    W_ref: ArrayLike, X: ArrayLike, sigma: float, lam: float, *, rel_eps: float = 0.1, n_pert: int = 3,
    steps: int = 500, lr: float = 1e-3, seed: int = 0,
) -> np.ndarray:
    """Perturb ``W1 = W2 = W_ref`` ``(d, p)`` in random directions, retrain briefly, and measure the return
    (Chapter 5's control that a stationary point is a local minimum and not a saddle).

    Each of ``n_pert`` perturbations adds independent Gaussian matrices of Frobenius norm ``rel_eps``·‖W_ref‖
    (or ``rel_eps`` if W_ref = 0) to W1 and W2, then runs ``steps`` of Adam (:func:`train_dae`, cosine decay).
    Returns ``(n_pert,)`` ratios ‖W2W1ᵀ − W_refW_refᵀ‖_F after training over the same distance before it:
    below 1 when training pulls the point back, above 1 when it runs away (a saddle, e.g. W_ref = 0).
    """
    W = np.asarray(W_ref, dtype=np.float64)
    d, p = W.shape
    M_ref = W @ W.T
    scale = rel_eps * (np.linalg.norm(W) if np.linalg.norm(W) > 0 else 1.0)
    gen = np.random.default_rng(seed)
    out = np.empty(n_pert)
    for k in range(n_pert):
        G1, G2 = gen.standard_normal((2, d, p))
        W1 = W + scale * G1 / np.linalg.norm(G1)
        W2 = W + scale * G2 / np.linalg.norm(G2)
        before = np.linalg.norm(W2 @ W1.T - M_ref)
        model = ReLUDAE(d, p, seed=seed)
        with torch.no_grad():
            model.W1.copy_(torch.as_tensor(W1))
            model.W2.copy_(torch.as_tensor(W2))
        train_dae(model, X, sigma, lam, steps=steps, lr=lr, schedule="cosine", seed=seed + k, progress=False)
        A, B = model.W1.detach().double().numpy(), model.W2.detach().double().numpy()
        out[k] = np.linalg.norm(B @ A.T - M_ref) / before
    return out


def check_returns(what: str, ratios: ArrayLike, *, high: float = 0.5) -> float:
    """Check that every perturbed start came back: the largest ratio of :func:`perturb_and_retrain` is
    <= ``high`` (Chapter 5). Starts that drift away from a saddle (ratio > 1) fail. Returns the largest ratio."""
    r = np.asarray(ratios, dtype=np.float64).ravel()
    if r.size == 0 or not np.isfinite(r).all():
        raise ValueError("need finite ratios")
    return float(check_range(what, float(r.max()), high=high))


def check_auroc_overlap(what: str, values_a: Any, values_b: Any, *, low: float = 0.35,
                        high: float = 0.65) -> float:
    """Check that two distributions overlap: the AUROC of ``values_a`` ``(N_a,)`` against ``values_b``
    ``(N_b,)`` (the probability that a random a exceeds a random b) lies in [``low``, ``high``] (Chapter 5).

    0.5 means no separation; two well-separated samples give an AUROC near 0 or 1 and fail. Returns the AUROC.
    """
    return float(check_range(what, metrics.detection_metrics(values_a, values_b)["auroc"], low=low, high=high))


def check_pr_rises_more_with_p(what: str, pr_table: Any, *, low: float = 1.5) -> dict[str, np.ndarray]:
    """Check that the participation ratio grows more with the width than with n (Chapter 5).

    ``pr_table`` is ``(len(ns), len(ps))``. ``ratio_p`` (per n) is PR at the largest width over PR at the
    smallest, ``ratio_n`` (per width) PR at the largest n over PR at the smallest; the statistic min(ratio_p) /
    max(ratio_n) must be >= ``low``. A table that depends on n only (ratio_p = 1) fails. Returns both ratios.
    """
    T = np.asarray(pr_table, dtype=np.float64)
    if T.ndim != 2 or min(T.shape) < 2 or (T <= 0).any():
        raise ValueError(f"pr_table must be (len(ns) >= 2, len(ps) >= 2) with positive entries, got {T.shape}")
    ratio_p, ratio_n = T[:, -1] / T[:, 0], T[-1] / T[0]
    check_range(what, float(ratio_p.min() / ratio_n.max()), low=low)
    return {"ratio_p": ratio_p, "ratio_n": ratio_n}
