"""Measures used throughout the course: spikiness of representations, memorization, detection quality.

- :func:`representation_std`, :func:`participation_ratio`: how concentrated a representation ``h`` is
  (Chapters 3-6, 11, 13). Both act along the last axis.
- :func:`nn_distance_ratio`, :func:`memorization_fraction`: is a generated sample a copy of a training
  point? (Chapters 1, 5, 7, 10, 12.)
- :func:`detection_metrics`: AUROC and TPR at 1% FPR of a memorization detector (Chapters 11, 13);
  :func:`tpr_at_percentile`: the TPR by the authors' percentile rule (Chapter 11).
- :func:`psnr`: denoising quality (Chapter 6).
- :func:`denoiser_memorization`: does a denoiser turn noisy *held-out* inputs into training points? (Chapter 5.)

Functions accept numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from repdiff._arrays import ArrayLike, like_input, require_finite, to_tensor
from repdiff.notebook import CheckResult, check_range

__all__ = [
    "representation_std",
    "participation_ratio",
    "nn_distance_ratio",
    "memorization_fraction",
    "detection_metrics",
    "tpr_at_percentile",
    "mean_interval",
    "psnr",
    "denoiser_memorization",
]


def representation_std(h: ArrayLike) -> ArrayLike:
    """Population standard deviation of ``h`` along its last axis (the paper's spikiness proxy).

    Std(h) = sqrt((1/p) Σ_j (h_j − mean(h))²). Shape ``(..., p)`` → ``(...)``.
    """
    t, was_np = to_tensor(h, "h")
    if t.ndim == 0 or t.shape[-1] == 0:
        raise ValueError(f"h must have a non-empty last axis (the p hidden units), got shape {tuple(t.shape)}")
    require_finite(t, "h")
    return like_input(t.std(dim=-1, unbiased=False), was_np)


def participation_ratio(h: ArrayLike) -> ArrayLike:
    """Participation ratio (Σ_j h_j²)² / Σ_j h_j⁴ along the last axis.

    It counts "how many units carry the energy": 1 for a one-hot vector, p for a flat one, and it does not
    change when ``h`` is scaled. An all-zero vector (no active unit) gets 0 by convention.
    Shape ``(..., p)`` → ``(...)``.
    """
    t, was_np = to_tensor(h, "h")
    if t.ndim == 0 or t.shape[-1] == 0:
        raise ValueError(f"h must have a non-empty last axis (the p hidden units), got shape {tuple(t.shape)}")
    require_finite(t, "h")
    # scale each vector by its max |h_j| first, so h⁴ neither overflows nor underflows
    scale = t.abs().amax(dim=-1, keepdim=True)
    u = t / torch.where(scale > 0, scale, torch.ones_like(scale))
    sq = u.square()
    num = sq.sum(dim=-1).square()
    den = sq.square().sum(dim=-1)
    pr = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return like_input(pr, was_np)


def _flatten_pair(samples: ArrayLike, train: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, bool]:
    s, was_np = to_tensor(samples, "samples")
    tr, _ = to_tensor(train, "train")
    if s.ndim < 1 or tr.ndim < 1 or s.shape[0] == 0:
        raise ValueError("samples must be a non-empty batch with samples along the first axis")
    s = s.reshape(s.shape[0], -1)
    tr = tr.reshape(tr.shape[0], -1).to(device=s.device, dtype=s.dtype)
    if s.shape[1] != tr.shape[1]:
        raise ValueError(
            f"samples and train must have the same number of values per item: {s.shape[1]} vs {tr.shape[1]}"
        )
    require_finite(s, "samples")
    require_finite(tr, "train")
    tr = torch.unique(tr, dim=0)  # duplicated training points count once (else NN1 = NN2 = 0)
    if tr.shape[0] < 2:
        raise ValueError("the nearest-neighbour ratio needs at least 2 distinct training points")
    return s, tr, was_np


def nn_distance_ratio(samples: ArrayLike, train: ArrayLike, *, chunk_size: int = 1024) -> ArrayLike:
    """‖x − NN₁(x)‖ / ‖x − NN₂(x)‖ for each sample ``x``: nearest over second-nearest training distance.

    Items are flattened (any shape ``(N, ...)`` works). Duplicated training points count once, so a copy
    of a duplicated image gets ratio 0 and not 0/0. A ratio near 0 means the sample sits on one training
    point, far from all others: a copy. Shape ``(N, ...)``, ``(n, ...)`` → ``(N,)``.
    """
    s, tr, was_np = _flatten_pair(samples, train)
    ratios = []
    for start in range(0, s.shape[0], chunk_size):
        dist = torch.cdist(s[start : start + chunk_size], tr, compute_mode="donot_use_mm_for_euclid_dist")
        two = torch.topk(dist, k=2, dim=1, largest=False).values
        ratios.append(two[:, 0] / two[:, 1])
    return like_input(torch.cat(ratios), was_np)


def _is_copy(samples: ArrayLike, train: ArrayLike, threshold: float) -> np.ndarray:
    """``(N,)`` booleans: nearest-neighbour distance ratio below ``threshold``."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    r = nn_distance_ratio(samples, train)
    r = r if isinstance(r, np.ndarray) else r.detach().cpu().numpy()
    return r < threshold


def memorization_fraction(samples: ArrayLike, train: ArrayLike, threshold: float = 1 / 3) -> float:
    """Fraction of samples whose nearest-neighbour distance ratio is below ``threshold`` (default 1/3)."""
    return float(np.mean(_is_copy(samples, train, threshold)))


def count_copies(samples: ArrayLike, train: ArrayLike, threshold: float = 1 / 3) -> int:
    """Number of samples that are copies of a training image by the same rule (Chapter 14's steered titles)."""
    return int(np.sum(_is_copy(samples, train, threshold)))


def _roc_points(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR and TPR at every distinct threshold ("score ≥ threshold" is flagged), from (0,0) to (1,1)."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / len(pos)]
    fpr = np.r_[0.0, fps / len(neg)]
    return fpr, tpr


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    fpr, tpr = _roc_points(pos, neg)
    return float(np.trapezoid(tpr, fpr))


def _tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, max_fpr: float) -> float:
    fpr, tpr = _roc_points(pos, neg)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def detection_metrics(
    scores_mem: ArrayLike,
    scores_gen: ArrayLike,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    max_fpr: float = 0.01,
) -> dict[str, float]:
    """AUROC and TPR at 1% FPR of a detector whose higher score means "memorized".

    Memorized samples are the positive class. ``tpr_at_1pct_fpr`` is the largest TPR among the ROC points
    with FPR ≤ ``max_fpr`` (ties in score are flagged together, as in ``sklearn.metrics.roc_curve``).

    With ``n_bootstrap > 0`` the dict also holds percentile 95% intervals (``auroc_lo``, ``auroc_hi``,
    ``tpr_lo``, ``tpr_hi``) from resampling each class with replacement.
    """
    pos = to_tensor(scores_mem, "scores_mem")[0].detach().cpu().double().numpy().ravel()
    neg = to_tensor(scores_gen, "scores_gen")[0].detach().cpu().double().numpy().ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"need at least one score per class, got {len(pos)} memorized and {len(neg)} generalized")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("scores contain NaN or infinity")
    out = {
        "auroc": _auroc(pos, neg),
        "tpr_at_1pct_fpr": _tpr_at_fpr(pos, neg, max_fpr),
        "n_mem": float(len(pos)),
        "n_gen": float(len(neg)),
    }
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        boot = np.empty((n_bootstrap, 2))
        for b in range(n_bootstrap):
            p = pos[rng.integers(0, len(pos), len(pos))]
            q = neg[rng.integers(0, len(neg), len(neg))]
            boot[b] = _auroc(p, q), _tpr_at_fpr(p, q, max_fpr)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        out |= {"auroc_lo": lo[0], "auroc_hi": hi[0], "tpr_lo": lo[1], "tpr_hi": hi[1]}
    return {k: float(v) for k, v in out.items()}


def tpr_at_percentile(scores_mem: ArrayLike, scores_gen: ArrayLike, *, fpr: float = 0.01) -> float:
    """TPR by the percentile rule of the paper's detection code: the threshold is the 100(1 − ``fpr``)-th
    percentile of the generalized scores (``np.percentile``, linear interpolation), and the TPR is the
    fraction of memorized scores at or above it.

    Not the same number as ``detection_metrics(...)["tpr_at_1pct_fpr"]`` (the largest TPR whose FPR is
    ≤ ``fpr``): with fewer than 1/``fpr`` generalized scores the interpolated threshold lies below the
    largest of them, so this rule may accept one false positive. Chapter 11.
    """
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    pos = to_tensor(scores_mem, "scores_mem")[0].detach().cpu().double().numpy().ravel()
    neg = to_tensor(scores_gen, "scores_gen")[0].detach().cpu().double().numpy().ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"need at least one score per class, got {len(pos)} memorized and {len(neg)} generalized")
    return float(np.mean(pos >= np.percentile(neg, 100 * (1 - fpr))))


def mean_interval(values: ArrayLike, *, n_bootstrap: int = 2000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` ``(P,)`` and a percentile bootstrap interval from resampling them with replacement
    (``scipy.stats.bootstrap``, ``method="percentile"``).

    Chapter 14 uses it for the mean steering slope over prompts: with a dozen prompts per group the interval
    says how far the mean can be trusted. Returns ``(mean, low, high)``.
    """
    x = to_tensor(values, "values")[0].detach().cpu().double().numpy().ravel()
    if len(x) < 2:
        raise ValueError(f"need at least two values, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("values contain NaN or infinity")
    if not 0 < level < 1 or n_bootstrap < 1:
        raise ValueError(f"need 0 < level < 1 and n_bootstrap >= 1, got {level} and {n_bootstrap}")
    res = stats.bootstrap((x,), np.mean, n_resamples=n_bootstrap, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(x.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def psnr(estimate: ArrayLike, target: ArrayLike, *, peak: float = 2.0) -> ArrayLike:
    """Peak signal-to-noise ratio in dB per item: 10 log10(peak² / mean squared error).

    The default ``peak = 2`` is the value range of images stored in [−1, 1] (the course's convention);
    pass ``peak=1`` for images in [0, 1]. Shape ``(N, ...)`` → ``(N,)``.
    """
    e, was_np = to_tensor(estimate, "estimate")
    t, _ = to_tensor(target, "target")
    t = t.to(e)
    if e.shape != t.shape:
        raise ValueError(f"estimate and target must have the same shape, got {tuple(e.shape)} and {tuple(t.shape)}")
    require_finite(e, "estimate")
    mse = (e - t).reshape(e.shape[0], -1).square().mean(dim=1)
    return like_input(10 * torch.log10(peak**2 / mse.clamp_min(1e-20)), was_np)


def check_copy_fraction(what: str, samples: ArrayLike, train: ArrayLike, *, low: float | None = None,
                        high: float | None = None) -> CheckResult:
    """Check :func:`memorization_fraction` of ``samples`` against ``train`` lies in [low, high] (Chapter 1).

    Chapter 1 requires 1 for the empirical-denoiser sampler and ≤ 0.05 for the Wiener sampler; each bound
    rejects the other sampler's samples (tests/test_negative_controls_part1a.py)."""
    return check_range(what, memorization_fraction(samples, train), low=low, high=high)


def check_participation(what: str, h: ArrayLike, *, low: float | None = None, high: float | None = None,
                        reduce: str = "mean") -> CheckResult:
    """Check the mean (``reduce="mean"``) or largest (``"max"``) participation ratio of representations
    ``h`` ``(m, p)`` lies in [low, high] (Chapter 3: one-hot, PR ≤ 1.01; Chapter 4: balanced, PR near p_k).
    Rejects the other regime's representation (one-hot vs spread)."""
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    pr = np.asarray(participation_ratio(np.asarray(h, dtype=np.float64)))
    return check_range(what, float(pr.mean() if reduce == "mean" else pr.max()), low=low, high=high)


def denoiser_memorization(
    denoise: Callable[[Any], Any],
    X_train: ArrayLike,
    X_test: ArrayLike,
    sigma: float,
    *,
    n_draws: int = 4,
    seed: int = 0,
    threshold: float = 1 / 3,
) -> float:
    """Fraction of noisy *held-out* inputs that a denoiser turns into a copy of a training point (Chapter 5).

    For every row x of ``X_test`` and ``n_draws`` noise draws ε ~ N(0, I), the denoiser gets y = x + σε; the
    output f(y) counts as a copy when its nearest-neighbour distance ratio against ``X_train``
    (:func:`nn_distance_ratio`: ‖f − NN₁‖ / ‖f − NN₂‖) is below ``threshold`` (1/3). The inputs come from
    points the model never saw, so a denoiser that keeps (a shrunk version of) its input — the identity map,
    the Wiener filter — does not count as memorizing, while the empirical optimal denoiser, which returns
    the nearest training point at small σ, does.

    Args:
        denoise: maps an ``(m, d)`` array to an ``(m, d)`` array. It receives the same kind as ``X_test``
            (numpy float64 for numpy input, a float64 tensor for tensor input) and may return either kind.
        X_train: ``(n, d)`` training points (at least two distinct ones).
        X_test: ``(m, d)`` held-out points.
        sigma: σ > 0. n_draws: noise draws per held-out point (>= 1). seed: noise seed.
        threshold: the copy threshold of the distance ratio, in (0, 1].

    Returns:
        the fraction of the ``m · n_draws`` denoised inputs that are copies, in [0, 1].

    Raises:
        ValueError: σ <= 0, ``n_draws`` < 1, ``X_train`` and ``X_test`` not 2-D with the same d, or an output
            whose shape is not ``(m · n_draws, d)``.
    """
    s = float(sigma)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    tr, _ = to_tensor(X_train, "X_train")
    te, te_np = to_tensor(X_test, "X_test")
    if tr.ndim != 2 or te.ndim != 2 or tr.shape[1] != te.shape[1] or te.shape[0] == 0:
        raise ValueError(
            f"X_train (n, d) and X_test (m, d) must be 2-D with the same d and m >= 1, got {tuple(tr.shape)} "
            f"and {tuple(te.shape)}"
        )
    require_finite(te, "X_test")
    clean = te.detach().cpu().double().repeat(int(n_draws), 1)
    gen = torch.Generator().manual_seed(int(seed))
    noisy = clean + s * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    out = denoise(noisy.numpy() if te_np else noisy.to(te.device))
    o, _ = to_tensor(out, "the denoiser's output")
    if tuple(o.shape) != tuple(noisy.shape):
        raise ValueError(f"denoise must map an (m, d) array to (m, d): got {tuple(o.shape)} for input "
                         f"{tuple(noisy.shape)}")
    return memorization_fraction(o.detach().cpu().double(), tr.detach().cpu().double(), threshold)
