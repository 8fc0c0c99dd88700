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
from repdiff.notebook import check_range

__all__ = [
    "check_mean_pairwise_cosine",
    "check_units_closer",
    "check_out_of_span",
    "check_ratio",
    "check_psnr_gap",
    "check_psnr_gain",
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
