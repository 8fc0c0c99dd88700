"""The phase diagram of Chapter 5: many two-layer ReLU DAEs trained at once, and their measurements.

- :func:`power_law_gaussian`, :func:`power_law_covariance`: the data (a Gaussian with a power-law spectrum).
- :func:`train_dae_grid`: many DAEs trained *at once* (one batched matrix product per step), one per
  (training-set size n, width p, noise level σ) cell, on the paper's objective (Eq. 6).
- :func:`phase_metrics`: spikiness, generalization gap and memorization of every model of the grid.

The ReLU-mask leakage lives in :mod:`repdiff.dae.leakage`, the measurements of one model in
:mod:`repdiff.dae.measures`, the checks of the chapter in :mod:`repdiff.dae.phase_checks`.

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

from repdiff import metrics
from repdiff._arrays import ArrayLike, require_finite, to_tensor

__all__ = [
    "power_law_gaussian",
    "power_law_covariance",
    "GridResult",
    "train_dae_grid",
    "phase_metrics",
]


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
