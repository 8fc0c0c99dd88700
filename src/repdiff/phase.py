"""Measuring trained DAEs, sweeping them into a phase diagram, and the ReLU-mask leakage (Chapters 5-6).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics
from ._arrays import ArrayLike, require_finite, to_tensor

__all__ = [
    "representation_stats",
    "denoising_psnr",
    "power_law_gaussian",
    "GridResult",
    "train_dae_grid",
    "phase_metrics",
    "unit_margins",
    "mask_leakage",
    "fit_leakage_rate",
]


def _weights(model_or_W1: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W1, W2 or None)`` as float64 tensors from a :class:`~repdiff.models.ReLUDAE` or a ``(d, p)`` W1."""
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
        model_or_W1: a :class:`~repdiff.models.ReLUDAE` or its encoder weights ``(d, p)``.
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
        model: a :class:`~repdiff.models.ReLUDAE` (anything with ``forward`` on ``(m, d)`` and ``W1``).
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
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay must be a finite number >= 0, got {decay!r}")
    spec = np.arange(1, int(d) + 1, dtype=np.float64) ** (-float(decay))
    spec *= d / spec.sum()
    U = np.linalg.qr(np.random.default_rng(basis_seed).standard_normal((d, d)))[0]
    Z = np.random.default_rng(seed).standard_normal((int(n), int(d)))
    return (Z * np.sqrt(spec)) @ U.T


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
    noise level ``sigma[b]`` on the paper's objective (Eq. 6, as :func:`repdiff.training.train_dae`):

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
        init_std: initial weight scale (default 1/sqrt(d), as :class:`~repdiff.models.ReLUDAE`).
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
    - ``gap`` = (test_mse − train_mse) / test_mse: 0 when the model denoises new points as well as its
      training points, close to 1 when it is only good on the training points.
    - ``copy``: the **memorization fraction** used in Chapter 5: the fraction of noisy *training* inputs
      whose output f_b(y) is a copy of their own training point, i.e. whose nearest training point is
      x_i itself and whose nearest-neighbour distance ratio ‖f − NN₁‖/‖f − NN₂‖ is below ``threshold``.
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
    out = {k: np.empty(B) for k in ("pr", "std", "pr_frac", "train_mse", "test_mse", "gap", "copy")}
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
