"""Measuring trained DAEs, sweeping them into a phase diagram, and the ReLU-mask leakage (Chapters 5-6).

The checks that carry the claims of Chapters 5 and 6 live here too (``check_*``), so that the notebooks and
the negative-control tests run the same code.

Measurements of one trained two-layer ReLU DAE f(x) = W2 relu(W1ᵀx) (Chapters 5 and 6):

- :func:`representation_stats`: spikiness (Std, participation ratio, active units) of h(x + σε).
- :func:`denoising_psnr`: PSNR of the noisy input and of the denoised output, per noisy copy.

The phase diagram of Chapter 5:

- :func:`train_dae_grid`: many DAEs trained *at once* (one batched matrix product per step), one per
  (training-set size n, width p) cell, on the paper's objective (Eq. 6).
- :func:`phase_metrics`: spikiness and memorization of every model of the grid.

The leakage of the ReLU mask (Theorem 3.1's residual, Chapter 5):

- :func:`unit_margins`, :func:`mask_leakage`, :func:`fit_leakage_rate`.

Conventions: rows are samples (``X`` is ``(n, d)``), weights are ``(d, p)``; numpy or torch in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from repdiff import metrics, theory
from repdiff._arrays import ArrayLike, require_finite, to_tensor
from repdiff.notebook import CheckFailed, check_range

__all__ = [
    "representation_stats",
    "denoising_psnr",
    "power_law_gaussian",
    "power_law_covariance",
    "GridResult",
    "train_dae_grid",
    "phase_metrics",
    "unit_margins",
    "mask_leakage",
    "fit_leakage_rate",
    "check_memorizer",
    "check_far_below_reference",
    "gap_crossing",
    "check_boundary_moves_with_p",
    "check_region_shrinks",
    "check_memorizing_gap",
    "check_pr_rises_with_n",
    "loss_and_gradient_norm",
    "check_distinct_minimum",
    "check_median_ratio",
    "shuffled_labels",
    "mean_pairwise_cosine",
    "check_mean_pairwise_cosine",
    "mean_best_cosine",
    "check_units_closer",
    "out_of_span_fraction",
    "check_out_of_span",
    "check_ratio",
    "psnr_gap",
    "check_psnr_gap",
    "check_psnr_gain",
]


def _weights(model_or_W1: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W1, W2 or None)`` as float64 tensors from a :class:`~repdiff.dae.models.ReLUDAE` or a ``(d, p)`` W1."""
    if isinstance(model_or_W1, torch.nn.Module):
        return model_or_W1.W1.detach().double().cpu(), model_or_W1.W2.detach().double().cpu()
    W1, _ = to_tensor(model_or_W1, "W1")
    if W1.ndim != 2:
        raise ValueError(f"W1 must have shape (d, p), got {tuple(W1.shape)}")
    require_finite(W1, "W1")
    return W1.double().cpu(), None


def _noisy_copies(X: ArrayLike, sigma: float, n_draws: int, seed: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clean (n·D, d), noisy (n·D, d))``: each row of ``X`` repeated ``n_draws`` times, plus σ·ε."""
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2 or Xt.shape[1] != d or Xt.shape[0] == 0:
        raise ValueError(f"X must have shape (n, {d}) with n >= 1 to match the weights, got {tuple(Xt.shape)}")
    require_finite(Xt, "X")
    s = float(sigma)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    clean = Xt.double().cpu().repeat(int(n_draws), 1)
    gen = torch.Generator().manual_seed(int(seed))
    noisy = clean + s * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    return clean, noisy


@torch.no_grad()
def representation_stats(
    model_or_W1: Any, X: ArrayLike, sigma: float, *, n_draws: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Spikiness of the representation h = relu(W1ᵀ(x + σε)) over noisy copies of the rows of ``X``.

    Used by Chapter 6 (distributions, paper Fig. 4) and Chapter 5 (medians per model of the sweep).

    Args:
        model_or_W1: a :class:`~repdiff.dae.models.ReLUDAE` or its encoder weights ``(d, p)``.
        X: clean inputs ``(n, d)``. sigma: σ >= 0. n_draws: noise draws per input. seed: noise seed.

    Returns:
        dict of numpy arrays of shape ``(n·n_draws,)`` (draw-major: rows ``j·n … j·n + n − 1`` are draw j):
        ``std`` (:func:`repdiff.metrics.representation_std`), ``pr``
        (:func:`repdiff.metrics.participation_ratio`), ``active`` (number of units with h_j > 0) and
        ``max`` (largest activation).
    """
    W1, _ = _weights(model_or_W1)
    _, noisy = _noisy_copies(X, sigma, n_draws, seed, W1.shape[0])
    h = torch.relu(noisy @ W1)
    return {
        "std": metrics.representation_std(h).numpy(),
        "pr": metrics.participation_ratio(h).numpy(),
        "active": (h > 0).sum(1).double().numpy(),
        "max": h.max(1).values.numpy(),
    }


@torch.no_grad()
def denoising_psnr(
    model: Any, X: ArrayLike, sigma: float, *, n_draws: int = 1, seed: int = 0, peak: float = 2.0
) -> dict[str, np.ndarray]:
    """PSNR (dB) of the noisy input and of the DAE's output, against the clean image (Chapter 6).

    PSNR = 10 log10(peak² / MSE) per noisy copy, MSE averaged over the d pixels; ``peak = 2`` is the value
    range of images in [−1, 1] (:func:`repdiff.metrics.psnr`). Pass ``peak=1`` to compare with numbers
    reported for [0, 1] images *or* for [−1, 1] images with peak 1: the two differ by 20 log10 2 ≈ 6.02 dB.

    Args:
        model: a :class:`~repdiff.dae.models.ReLUDAE` (anything with ``forward`` on ``(m, d)`` and ``W1``).
        X: clean images ``(n, d)``. sigma: σ > 0. n_draws, seed: noise draws per image and their seed.

    Returns:
        dict with ``noisy`` and ``denoised``, numpy arrays ``(n·n_draws,)``.
    """
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0 to measure denoising, got {sigma!r}")
    W1, _ = _weights(model)
    clean, noisy = _noisy_copies(X, sigma, n_draws, seed, W1.shape[0])
    param = next(model.parameters())
    out = model(noisy.to(param)).double().cpu()
    require_finite(out, "the model's output")
    return {
        "noisy": metrics.psnr(noisy.numpy(), clean.numpy(), peak=peak),
        "denoised": metrics.psnr(out.numpy(), clean.numpy(), peak=peak),
    }


# ---------------------------------------------------------------------------------------------------------
# The phase diagram (Chapter 5): many DAEs trained at once.
# ---------------------------------------------------------------------------------------------------------


def power_law_gaussian(
    n: int, d: int, *, decay: float = 1.0, seed: int = 0, basis_seed: int = 0
) -> np.ndarray:
    """``n`` samples of N(0, U diag(s) Uᵀ) in R^d with s_j ∝ j^(−decay), scaled so E‖x‖² = d (Chapter 5).

    A stand-in for images in a small dimension: a few strong directions and a tail of weak ones, no
    clusters. ``basis_seed`` fixes the random rotation U (keep it fixed to draw training and test sets from
    the same distribution); ``seed`` the samples. Returns ``(n, d)`` float64.
    """
    if int(n) != n or n < 1 or int(d) != d or d < 1:
        raise ValueError(f"n and d must be positive integers, got n={n!r}, d={d!r}")
    spec, U = _power_law_spectrum(int(d), decay, basis_seed)
    Z = np.random.default_rng(seed).standard_normal((int(n), int(d)))
    return (Z * np.sqrt(spec)) @ U.T


def _power_law_spectrum(d: int, decay: float, basis_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(s (d,), U (d, d))`` of :func:`power_law_gaussian`: variances s_j ∝ j^(−decay) summing to d, rotation U."""
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay must be a finite number >= 0, got {decay!r}")
    spec = np.arange(1, int(d) + 1, dtype=np.float64) ** (-float(decay))
    spec *= d / spec.sum()
    U = np.linalg.qr(np.random.default_rng(basis_seed).standard_normal((d, d)))[0]
    return spec, U


def power_law_covariance(d: int, *, decay: float = 1.0, basis_seed: int = 0) -> np.ndarray:
    """The covariance U diag(s) Uᵀ ``(d, d)`` of :func:`power_law_gaussian` with the same ``basis_seed``
    (Chapter 5: the population Wiener filter of the phase diagram's data)."""
    spec, U = _power_law_spectrum(d, decay, basis_seed)
    return (U * spec) @ U.T


@dataclass
class GridResult:
    """The models of a sweep, trained together by :func:`train_dae_grid` (Chapter 5).

    Attributes:
        W1, W2: ``(B, d, p_max)`` float32 weights; model b uses only its first ``p[b]`` units (the others
            are exactly zero).
        n, p: ``(B,)`` training-set size and width of each model; sigma: ``(B,)`` its noise level.
        final_loss: ``(B,)`` objective (Eq. 6) of each model, averaged over the last 5% of the steps.
        seconds: wall time of the training loop.
    """

    W1: torch.Tensor
    W2: torch.Tensor
    n: np.ndarray
    p: np.ndarray
    sigma: np.ndarray
    final_loss: np.ndarray
    seconds: float

    def weights(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W1, W2)`` of model ``b``, each ``(d, p[b])``, float64."""
        k = int(self.p[b])
        return self.W1[b, :, :k].double(), self.W2[b, :, :k].double()


def _grid_rows(X: torch.Tensor, n: np.ndarray, rows: int) -> torch.Tensor:
    """``(B, rows, d)``: model b's rows cycle through its training set X[:n_b] (rows multiple of n_b)."""
    idx = torch.stack([torch.arange(rows) % int(nb) for nb in n])  # (B, rows)
    return X[idx]


def train_dae_grid(
    X: ArrayLike,
    n: Any,
    p: Any,
    sigma: Any,
    lam: float,
    *,
    steps: int,
    lr: float,
    rows: int | None = None,
    init_std: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> GridResult:
    """Train one two-layer ReLU DAE per entry of ``(n, p, sigma)`` at once, with batched matrix products.

    Model b is f_b(x) = W2_b relu(W1_bᵀ x) with p_b units, trained on the first ``n[b]`` rows of ``X`` at
    noise level ``sigma[b]`` on the paper's objective (Eq. 6, as :func:`repdiff.dae.training.train_dae`):

        L_b = (1/R) Σ_r ‖f_b(x_r + σ_b ε_r) − x_r‖² + λ (‖W1_b‖²_F + ‖W2_b‖²_F),

    where the R = ``rows`` rows cycle through x_1 … x_{n_b} (so every training point gets R / n_b fresh
    noise draws per step; R must be a multiple of every n_b, e.g. powers of two). The sum Σ_b L_b is
    minimised by Adam; Adam acts entry by entry, so this is exactly B independent Adam runs that share
    only the random-number stream. Learning rate decays to 0 on a cosine schedule.
    Used by Chapter 5's phase diagram (a 5 × 5 × 3 grid trains in seconds on a CPU).

    Args:
        X: ``(N, d)`` pool of training points; model b uses ``X[:n[b]]``.
        n, p, sigma: equal-length sequences (length B) of sizes (1 <= n_b <= N), widths (>= 1) and σ_b > 0.
        lam: λ >= 0. steps, lr: Adam steps and learning rate. rows: R (default: max n).
        init_std: initial weight scale (default 1/sqrt(d), as :class:`~repdiff.dae.models.ReLUDAE`).
        seed: seeds the initialisation and the noise. progress: show a tqdm bar.

    Returns:
        :class:`GridResult`.
    """
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2 or Xt.shape[0] < 1:
        raise ValueError(f"X must have shape (N, d) with N >= 1, got {tuple(Xt.shape)}")
    require_finite(Xt, "X")
    Xt = Xt.float()
    N, d = Xt.shape
    n_arr, p_arr = np.asarray(n, dtype=np.int64).ravel(), np.asarray(p, dtype=np.int64).ravel()
    s_arr = np.asarray(sigma, dtype=np.float64).ravel()
    B = len(n_arr)
    if B == 0 or len(p_arr) != B or len(s_arr) != B:
        raise ValueError(f"n, p and sigma must have the same non-zero length, got {len(n_arr)}, {len(p_arr)}, "
                         f"{len(s_arr)}")
    if (n_arr < 1).any() or (n_arr > N).any():
        raise ValueError(f"every n must lie in [1, {N}] (the rows of X), got {n_arr.tolist()}")
    if (p_arr < 1).any():
        raise ValueError(f"every p must be >= 1, got {p_arr.tolist()}")
    if not np.isfinite(s_arr).all() or (s_arr <= 0).any():
        raise ValueError(f"every sigma must be a finite number > 0, got {s_arr.tolist()}")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if int(steps) != steps or steps < 1 or not (math.isfinite(float(lr)) and lr > 0):
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps!r}, lr={lr!r}")
    R = int(n_arr.max()) if rows is None else int(rows)
    if R < 1 or any(R % int(nb) for nb in n_arr):
        raise ValueError(f"rows = {R} must be a positive multiple of every n (got n = {sorted(set(n_arr.tolist()))})")
    p_max = int(p_arr.max())
    std = 1.0 / math.sqrt(d) if init_std is None else float(init_std)

    gen = torch.Generator().manual_seed(int(seed))
    mask = (torch.arange(p_max)[None, :] < torch.as_tensor(p_arr)[:, None]).float()[:, None, :]  # (B, 1, P)
    W1 = (std * torch.randn(B, d, p_max, generator=gen) * mask).requires_grad_()
    W2 = (std * torch.randn(B, d, p_max, generator=gen) * mask).requires_grad_()
    Xb = _grid_rows(Xt, n_arr, R)  # (B, R, d)
    sig = torch.as_tensor(s_arr, dtype=torch.float32)[:, None, None]
    opt = torch.optim.Adam([W1, W2], lr=float(lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps))
    tail = max(1, int(steps) // 20)
    running = torch.zeros(B)
    t0 = time.perf_counter()
    for step in tqdm(range(int(steps)), disable=not progress, desc="training the grid", leave=False):
        noisy = Xb + sig * torch.randn(Xb.shape, generator=gen)
        h = torch.relu(noisy @ (W1 * mask))  # (B, R, P)
        out = h @ (W2 * mask).transpose(1, 2)  # (B, R, d)
        per_model = (out - Xb).square().sum(-1).mean(-1) + lam * (
            (W1 * mask).square().sum((1, 2)) + (W2 * mask).square().sum((1, 2))
        )
        opt.zero_grad(set_to_none=True)
        per_model.sum().backward()
        opt.step()
        sched.step()
        if step >= int(steps) - tail:
            running += per_model.detach()
    final = (running / tail).numpy().astype(np.float64)
    if not np.isfinite(final).all():
        raise FloatingPointError(f"training diverged for {int((~np.isfinite(final)).sum())} model(s): lower lr")
    with torch.no_grad():
        W1f, W2f = (W1 * mask).detach(), (W2 * mask).detach()
    return GridResult(W1f, W2f, n_arr, p_arr, s_arr, final, time.perf_counter() - t0)


@torch.no_grad()
def phase_metrics(
    grid: GridResult,
    X: ArrayLike,
    X_test: ArrayLike,
    *,
    n_draws: int = 4,
    threshold: float = 1 / 3,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """Spikiness and memorization of every model of a sweep (Chapter 5). Each entry is ``(B,)``.

    For model b, with its training set X_b = ``X[:n_b]``, noisy training inputs y = x_i + σ_b ε
    (``n_draws`` per point) and noisy test inputs built the same way from ``X_test``:

    - ``pr``, ``std``: medians over noisy training inputs of the participation ratio and the Std of
      h = relu(W1_bᵀ y) (over the model's own p_b units); ``pr_frac`` = ``pr`` / p_b.
    - ``train_mse``, ``test_mse``: mean ‖f_b(y) − x‖² on training and test points.
    - ``gap_abs`` = test_mse − train_mse, the generalization gap; ``gap`` = (test_mse − train_mse) / test_mse,
      its relative version: 0 when the model denoises new points as well as its training points, close to 1
      when it is only good on the training points.
    - ``mem``: the **memorization fraction** of Chapter 5, :func:`repdiff.metrics.denoiser_memorization` of
      f_b against X_b on noisy *held-out* inputs (rows of ``X_test``, ``n_draws`` each, noise seed ``seed``,
      the same inputs for every model at a given σ).
    - ``copy``: the older measure on noisy *training* inputs (output nearest to its own x_i with distance
      ratio below ``threshold``). It cannot tell memorization from a denoiser that keeps its input: when the
      training points are far apart compared with the noise, the identity map scores close to 1.
    """
    Xt, _ = to_tensor(X, "X")
    Tt, _ = to_tensor(X_test, "X_test")
    Xt, Tt = Xt.double(), Tt.double()
    if Xt.ndim != 2 or Tt.ndim != 2 or Tt.shape[1] != Xt.shape[1] or Xt.shape[1] != grid.W1.shape[1]:
        raise ValueError(
            f"X (N, d) and X_test (M, d) must match the grid's d = {grid.W1.shape[1]}, got "
            f"{tuple(Xt.shape)} and {tuple(Tt.shape)}"
        )
    require_finite(Xt, "X")
    require_finite(Tt, "X_test")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    B = len(grid.n)
    out = {k: np.empty(B) for k in ("pr", "std", "pr_frac", "train_mse", "test_mse", "gap", "gap_abs", "mem", "copy")}
    gen = torch.Generator().manual_seed(int(seed))
    for b in range(B):
        W1, W2 = grid.weights(b)
        s, nb = float(grid.sigma[b]), int(grid.n[b])
        Xb = Xt[:nb].repeat(int(n_draws), 1)
        Y = Xb + s * torch.randn(Xb.shape, generator=gen, dtype=torch.float64)
        h = torch.relu(Y @ W1)
        f = h @ W2.T
        T = Tt.repeat(int(n_draws), 1)
        fT = torch.relu((T + s * torch.randn(T.shape, generator=gen, dtype=torch.float64)) @ W1) @ W2.T
        out["pr"][b] = float(metrics.participation_ratio(h).median())
        out["std"][b] = float(metrics.representation_std(h).median())
        out["pr_frac"][b] = out["pr"][b] / int(grid.p[b])
        out["train_mse"][b] = float((f - Xb).square().sum(1).mean())
        out["test_mse"][b] = float((fT - T).square().sum(1).mean())
        out["gap"][b] = (out["test_mse"][b] - out["train_mse"][b]) / out["test_mse"][b]
        out["gap_abs"][b] = out["test_mse"][b] - out["train_mse"][b]
        out["mem"][b] = (
            metrics.denoiser_memorization(lambda y, A=W1, C=W2: torch.relu(y @ A) @ C.T, Xt[:nb], Tt, s,
                                          n_draws=n_draws, seed=seed, threshold=threshold)
            if nb >= 2 else float("nan")
        )
        if nb >= 2:
            dist = torch.cdist(f, Xt[:nb])
            two = torch.topk(dist, k=2, dim=1, largest=False)
            own = two.indices[:, 0] == torch.arange(nb).repeat(int(n_draws))
            ratio = two.values[:, 0] / two.values[:, 1].clamp_min(1e-300)
            out["copy"][b] = float(((ratio < threshold) & own).double().mean())
        else:
            out["copy"][b] = float("nan")
    return out


# ---------------------------------------------------------------------------------------------------------
# Leakage of the ReLU mask (Theorem 3.1's residual, Chapter 5).
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# The checks of Chapter 5, as functions: the notebook runs them on its measurements, and
# tests/test_negative_controls_part1b.py runs the same functions on named wrong answers.
# ---------------------------------------------------------------------------------------------------------


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


def loss_and_gradient_norm(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *, n_draws: int = 256, seed: int = 5
) -> tuple[float, float]:
    """Monte-Carlo loss (Eq. 6, :func:`repdiff.theory.relu_dae_loss_mc`, fixed noise) and the Euclidean norm of
    its gradient in (W1, W2) at the given ``(d, p)`` weights (Chapter 5). ``X`` is ``(n, d)``."""
    A = to_tensor(W1, "W1")[0].detach().double().clone().requires_grad_()
    B = to_tensor(W2, "W2")[0].detach().double().clone().requires_grad_()
    loss = theory.relu_dae_loss_mc(A, B, to_tensor(X, "X")[0].double(), sigma, lam, n_draws=n_draws, seed=seed)
    loss.backward()
    return float(loss.detach()), float(torch.cat([A.grad.ravel(), B.grad.ravel()]).norm())


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


# ---------------------------------------------------------------------------------------------------------
# The checks of Chapter 6 (real images), as functions shared with the negative-control tests.
# ---------------------------------------------------------------------------------------------------------


def mean_pairwise_cosine(X: ArrayLike) -> float:
    """Mean cosine between distinct rows of ``X`` ``(n, d)``, n >= 2 (Chapter 6)."""
    A = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    if A.ndim != 2 or A.shape[0] < 2:
        raise ValueError(f"X must be (n, d) with n >= 2, got {A.shape}")
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("X has a zero row: its cosine is undefined")
    U = A / norms
    return float((U @ U.T)[np.triu_indices(len(A), 1)].mean())


def check_mean_pairwise_cosine(what: str, X: ArrayLike, *, low: float | None = None,
                               high: float | None = None) -> float:
    """Check the mean pairwise cosine of the rows of ``X`` ``(n, d)`` against [``low``, ``high``] (Chapter 6:
    raw images share a background and sit in a narrow cone; centred ones do not). Returns the mean cosine."""
    return float(check_range(what, mean_pairwise_cosine(X), low=low, high=high))


def mean_best_cosine(W1: ArrayLike, X: ArrayLike, k: int) -> float:
    """Mean over the ``k`` largest-norm columns of ``W1`` ``(d, p)`` of the best cosine to a row of ``X``
    ``(n, d)``: close to 1 when the units are copies of training images (Chapter 6, the paper's Fig. 3)."""
    W = np.asarray(to_tensor(W1, "W1")[0].detach().cpu().double())
    A = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    if W.ndim != 2 or A.ndim != 2 or A.shape[1] != W.shape[0]:
        raise ValueError(f"W1 (d, p) and X (n, d) must share d, got {W.shape} and {A.shape}")
    if int(k) != k or not 1 <= k <= W.shape[1]:
        raise ValueError(f"k must be an integer in [1, p = {W.shape[1]}], got {k!r}")
    order = np.argsort(-np.linalg.norm(W, axis=0))[: int(k)]
    Wk = W[:, order]
    cos = (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (Wk / np.linalg.norm(Wk, axis=0).clip(1e-300))
    return float(cos.max(axis=0).mean())


def check_units_closer(what: str, W_a: ArrayLike, X_a: ArrayLike, W_b: ArrayLike, X_b: ArrayLike, *, k: int,
                       low: float) -> float:
    """Check :func:`mean_best_cosine` of model a (to its data ``X_a``) minus that of model b (to ``X_b``) >=
    ``low`` (Chapter 6). Weights ``(d, p)``, data ``(n, d)``. A model compared with itself gives 0 and fails.
    Returns the difference."""
    diff = mean_best_cosine(W_a, X_a, k) - mean_best_cosine(W_b, X_b, k)
    return float(check_range(what, diff, low=low))


def out_of_span_fraction(W1: ArrayLike, X: ArrayLike) -> np.ndarray:
    """For each column w_j of ``W1`` ``(d, p)``: ‖(I − P)w_j‖ / ‖w_j‖, P the projector onto the span of the rows of
    ``X`` ``(n, d)`` (Chapter 6). The loss's data term never pulls a unit out of that span, so what remains
    outside is left over from the random start (weight decay shrinks it). Returns ``(p,)``."""
    W = np.asarray(to_tensor(W1, "W1")[0].detach().cpu().double())
    A = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    if W.ndim != 2 or A.ndim != 2 or A.shape[1] != W.shape[0]:
        raise ValueError(f"W1 (d, p) and X (n, d) must share d, got {W.shape} and {A.shape}")
    U, sv, _ = np.linalg.svd(A.T, full_matrices=False)
    Q = U[:, sv > sv.max() * max(A.shape) * np.finfo(np.float64).eps]  # orthonormal basis of the span (rank-aware)
    R = W - Q @ (Q.T @ W)
    return np.linalg.norm(R, axis=0) / np.linalg.norm(W, axis=0).clip(1e-300)


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


def psnr_gap(model: Any, X_train: ArrayLike, X_test: ArrayLike, sigma: float, *, n_draws: int = 5) -> float:
    """Mean denoised PSNR on ``X_train`` minus on ``X_test`` (both ``(n, d)``), dB, noise seeds 4 and 5, as the
    table of Chapter 6 (:func:`denoising_psnr`)."""
    tr = denoising_psnr(model, X_train, sigma, n_draws=n_draws, seed=4)["denoised"].mean()
    te = denoising_psnr(model, X_test, sigma, n_draws=n_draws, seed=5)["denoised"].mean()
    return float(tr - te)


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
