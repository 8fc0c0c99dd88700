"""The checks that carry the claims of Chapter 6 (a memorizing and a generalizing DAE on real images).

The notebook runs them on its measurements, and ``tests/test_negative_controls_part1b.py`` runs the same
functions on named wrong answers (each check must fail on them). The measurements they check live in
:mod:`repdiff.dae.measures`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from repdiff._arrays import ArrayLike, to_tensor
from repdiff.dae.measures import denoising_psnr, mean_best_cosine, mean_pairwise_cosine, out_of_span_fraction, psnr_gap
from repdiff.dae.relu_losses import relu_dae_loss_mc
from repdiff.dae.relu_solutions import memorization_solution
from repdiff.notebook import check_range

__all__ = [
    "check_mean_pairwise_cosine",
    "check_units_closer",
    "check_out_of_span",
    "check_ratio",
    "check_psnr_gap",
    "check_psnr_gain",
    "data_term_ratio",
    "check_data_term_ratio",
    "other_units_on",
    "check_other_units_on",
]


def check_mean_pairwise_cosine(what: str, X: ArrayLike, *, low: float | None = None,
                               high: float | None = None) -> float:
    """Check the mean pairwise cosine of the rows of ``X`` ``(n, d)`` against [``low``, ``high``] (Chapter 6:
    raw images share a background and sit in a narrow cone; centred ones do not). Returns the mean cosine."""
    return float(check_range(what, mean_pairwise_cosine(X), low=low, high=high))


def check_units_closer(what: str, W_a: ArrayLike, X_a: ArrayLike, W_b: ArrayLike, X_b: ArrayLike, *, k: int,
                       low: float) -> float:
    """Check :func:`mean_best_cosine` of model a (to its data ``X_a``) minus that of model b (to ``X_b``) >=
    ``low`` (Chapter 6). Weights ``(d, p)``, data ``(n, d)``. A model compared with itself gives 0 and fails.
    Returns the difference."""
    diff = mean_best_cosine(W_a, X_a, k) - mean_best_cosine(W_b, X_b, k)
    return float(check_range(what, diff, low=low))


def check_out_of_span(what: str, W1: ArrayLike, X: ArrayLike, *, k: int, high: float) -> float:
    """Check that the median :func:`out_of_span_fraction` over the ``k`` largest-norm columns of ``W1`` ``(d, p)``
    is <= ``high`` (Chapter 6: how much of the random start a trained unit keeps). An untrained model, whose
    units are random directions, fails. Returns the median."""
    W = np.asarray(to_tensor(W1, "W1")[0].detach().cpu().double())
    if int(k) != k or not 1 <= k <= W.shape[1]:
        raise ValueError(f"k must be an integer in [1, p = {W.shape[1]}], got {k!r}")
    top = np.argsort(-np.linalg.norm(W, axis=0))[: int(k)]
    return float(check_range(what, float(np.median(out_of_span_fraction(W[:, top], X))), high=high))


def check_ratio(what: str, value: float, reference: float, *, low: float | None = None,
                high: float | None = None) -> float:
    """Check ``value / reference`` against [``low``, ``high``] (Chapter 6: a trained loss over a closed-form
    loss). Returns the ratio."""
    ref = float(reference)
    if not (math.isfinite(ref) and ref > 0):
        raise ValueError(f"reference must be a finite number > 0, got {reference!r}")
    return float(check_range(what, float(value) / ref, low=low, high=high))


def check_psnr_gap(what: str, model: Any, X_train: ArrayLike, X_test: ArrayLike, sigma: float, *,
                   low: float | None = None, high: float | None = None, absolute: bool = False) -> float:
    """Check the train − test PSNR gap (:func:`psnr_gap`, or its absolute value) against [``low``, ``high``]
    (Chapter 6). A generalizing model fails a memorizing model's lower bound and vice versa. Returns the
    checked value."""
    g = psnr_gap(model, X_train, X_test, sigma)
    return float(check_range(what, abs(g) if absolute else g, low=low, high=high))


def check_psnr_gain(what: str, model: Any, X: ArrayLike, sigma: float, *, low: float) -> float:
    """Check that the model's mean denoised PSNR on ``X`` ``(n, d)`` exceeds the noisy input's by >= ``low`` dB
    (Chapter 6; noise seed 5, 5 draws). The identity map (gain 0) fails. Returns the gain."""
    r = denoising_psnr(model, X, sigma, n_draws=5, seed=5)
    return float(check_range(what, float(r["denoised"].mean() - r["noisy"].mean()), low=low))


def data_term_ratio(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *,
                    n_draws: int = 256, seed: int = 0) -> float:
    """The data term of Eq. 6 at ``(W1, W2)`` ``(d, p)`` over the one Cor. 3.2 predicts for ``X`` ``(n, d)``
    (Chapter 6).

    Numerator: the Monte-Carlo loss with λ = 0 (fixed noise draws, :func:`relu_dae_loss_mc`). Denominator:
    (1/n) Σ_i [(1 − a_i)² ‖x_i‖² + σ² a_i²] with a_i = (‖x_i‖² − nλ)/(‖x_i‖² + σ²), the closed form's loss
    without its weight-decay part 2λ Σ a_i. Unlike the whole loss, it is not swamped by weight decay at large λ.
    """
    Xa = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    sq = np.sum(Xa**2, axis=1)
    if float(sq.min()) <= len(Xa) * lam:
        raise ValueError("need n*lam < min_i ||x_i||^2 (Cor. 3.2 has no solution otherwise)")
    a = (sq - len(Xa) * lam) / (sq + sigma**2)
    formula = float(np.mean((1 - a) ** 2 * sq + sigma**2 * a**2))
    A = np.asarray(to_tensor(W1, "W1")[0].detach().cpu().double())
    B = np.asarray(to_tensor(W2, "W2")[0].detach().cpu().double())
    return float(relu_dae_loss_mc(A, B, Xa, sigma, 0.0, n_draws=n_draws, seed=seed)) / formula


def check_data_term_ratio(what: str, W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *,
                          low: float | None = None, high: float | None = None) -> float:
    """Check :func:`data_term_ratio` against [``low``, ``high``] (Chapter 6). A network with the closed form's
    norms but the wrong data fit (its W2 columns permuted) gives a ratio far above any window; the closed form
    on separable data (where Cor. 3.2 holds) gives 1. Returns the ratio."""
    return float(check_range(what, data_term_ratio(W1, W2, X, sigma, lam), low=low, high=high))


def other_units_on(X: ArrayLike, sigma: float, *, n_draws: int = 100, seed: int = 0) -> float:
    """Mean number of *other* samples' units that a noisy sample switches on in the closed form of Cor. 3.2
    for ``X`` ``(n, d)`` (unit i stores x_i; Chapter 6). Cor. 3.2's loss formula assumes 0: with pairwise
    negative cosines and a margin, a noisy x_i switches on unit i only."""
    Xa = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    n = len(Xa)
    W = np.asarray(memorization_solution(Xa, n, sigma, 0.0))
    Y = np.repeat(Xa, n_draws, axis=0) + sigma * np.random.default_rng(seed).standard_normal((n * n_draws, Xa.shape[1]))
    on = Y @ W > 0
    own = np.repeat(np.arange(n), n_draws)
    return float((on.sum(1) - on[np.arange(n * n_draws), own]).mean())


def check_other_units_on(what: str, X: ArrayLike, sigma: float, *, low: float) -> float:
    """Check that a noisy sample switches on at least ``low`` other samples' units on average
    (:func:`other_units_on`, Chapter 6: the overlap Cor. 3.2's formula ignores). Separable samples (a centred
    simplex) give 0 and fail. Returns the mean count."""
    return float(check_range(what, other_units_on(X, sigma), low=low))
