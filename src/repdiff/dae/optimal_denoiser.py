"""Optimal denoisers and Tweedie's formula (Chapter 1).

- :func:`empirical_denoiser` f_emp, the posterior mean of the empirical distribution (paper Eq. 3), and
  :func:`empirical_log_density`, the log-density whose gradient gives it by Tweedie's formula;
- :func:`wiener_denoiser`, the optimal (linear) denoiser of a Gaussian;
- :func:`tweedie_denoiser`, Tweedie's formula by automatic differentiation, and
  :func:`posterior_mean_monte_carlo`, the posterior mean without it (likelihood-weighted prior samples);
- :func:`linearity_defect`, how far a denoiser is from affine.

Conventions: rows are samples, ``X`` has shape ``(n, d)``; functions accept numpy arrays or torch
tensors and return the same kind.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from repdiff._arrays import ArrayLike, like_input, require_finite, require_positive, to_tensor

__all__ = [
    "empirical_denoiser",
    "empirical_log_density",
    "wiener_denoiser",
    "tweedie_denoiser",
    "posterior_mean_monte_carlo",
    "linearity_defect",
]


def _check_query_and_data(y: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validate shapes; return ``y`` as a 2-D batch and whether it was a single vector."""
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError("the training set X is empty (n = 0): the empirical denoiser needs n >= 1 points")
    single = y.ndim == 1
    y2 = y.unsqueeze(0) if single else y
    if y2.ndim != 2 or y2.shape[1] != X.shape[1]:
        raise ValueError(
            f"y must have shape (d,) or (m, d) with d = {X.shape[1]} (the data dimension of X), "
            f"got {tuple(y.shape)}"
        )
    require_finite(y2, "y")
    require_finite(X, "X")
    return y2, single


def empirical_denoiser(y: ArrayLike, X: ArrayLike, sigma: float, *, chunk_size: int = 2048) -> ArrayLike:
    """The optimal denoiser of the empirical distribution of ``X`` (the posterior mean, paper Eq. 3).

    f_emp(y) = Σ_i w_i(y) x_i with w(y) = softmax_i(−‖y − x_i‖² / (2σ²)).

    The softmax is evaluated as a running log-sum-exp over chunks of training points, so it neither
    overflows for tiny σ (where it tends to the nearest training point) nor needs an ``(m, n)`` matrix
    in memory for large ``n``.

    Args:
        y: noisy points, shape ``(d,)`` or ``(m, d)``.
        X: training set, shape ``(n, d)``.
        sigma: noise level σ > 0.
        chunk_size: training points handled at once.

    Returns:
        f_emp(y), same shape and kind (numpy/torch) as ``y``.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(device=yt.device, dtype=yt.dtype)
    y2, single = _check_query_and_data(yt, Xt)

    m = y2.shape[0]
    run_max = torch.full((m,), -math.inf, dtype=y2.dtype, device=y2.device)
    run_sum = torch.zeros(m, dtype=y2.dtype, device=y2.device)
    acc = torch.zeros_like(y2)
    for start in range(0, Xt.shape[0], chunk_size):
        Xc = Xt[start : start + chunk_size]
        sq_dist = torch.cdist(y2, Xc, compute_mode="donot_use_mm_for_euclid_dist").square()
        logits = -sq_dist / (2.0 * sigma**2)  # (m, c)
        new_max = torch.maximum(run_max, logits.max(dim=1).values)
        rescale = torch.exp(run_max - new_max)  # exp(-inf) = 0 on the first chunk
        weights = torch.exp(logits - new_max[:, None])
        run_sum = run_sum * rescale + weights.sum(dim=1)
        acc = acc * rescale[:, None] + weights @ Xc
        run_max = new_max
    out = acc / run_sum[:, None]
    return like_input(out[0] if single else out, y_np)


def empirical_log_density(y: ArrayLike, X: ArrayLike, sigma: float) -> ArrayLike:
    """log p_σ(y) for the empirical distribution of ``X`` blurred by N(0, σ²I).

    p_σ(y) = (1/n) Σ_i N(y; x_i, σ²I). Differentiable in ``y`` (torch), which is how Chapter 1 checks
    Tweedie's formula f(y) = y + σ² ∇ log p_σ(y) against :func:`empirical_denoiser`.

    Returns:
        shape ``()`` for ``y`` of shape ``(d,)``, ``(m,)`` for ``(m, d)``.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(device=yt.device, dtype=yt.dtype)
    y2, single = _check_query_and_data(yt, Xt)
    n, d = Xt.shape
    sq_dist = ((y2[:, None, :] - Xt[None, :, :]) ** 2).sum(-1)
    log_p = (
        torch.logsumexp(-sq_dist / (2 * sigma**2), dim=1)
        - math.log(n)
        - 0.5 * d * math.log(2 * math.pi * sigma**2)
    )
    return like_input(log_p[0] if single else log_p, y_np)


def wiener_denoiser(y: ArrayLike, mean: ArrayLike, cov: ArrayLike, sigma: float) -> ArrayLike:
    """The optimal denoiser of a Gaussian N(μ, Σ): the linear (Wiener) map μ + Σ(Σ + σ²I)⁻¹(y − μ).

    Args:
        y: ``(d,)`` or ``(m, d)``; mean: ``(d,)``; cov: ``(d, d)`` symmetric positive semi-definite.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    mu, _ = to_tensor(mean, "mean")
    S, _ = to_tensor(cov, "cov")
    mu, S = mu.to(yt), S.to(yt)
    d = mu.shape[-1]
    if mu.ndim != 1 or S.shape != (d, d):
        raise ValueError(f"mean must be (d,) and cov (d, d); got {tuple(mu.shape)} and {tuple(S.shape)}")
    if yt.shape[-1] != d or yt.ndim not in (1, 2):
        raise ValueError(f"y must have shape (d,) or (m, d) with d = {d}, got {tuple(yt.shape)}")
    require_finite(yt, "y")
    gain = torch.linalg.solve(S + sigma**2 * torch.eye(d, dtype=S.dtype, device=S.device), S)  # (Σ+σ²I)⁻¹Σ
    out = mu + (yt - mu) @ gain  # row form of μ + Σ(Σ+σ²I)⁻¹(y−μ); the two matrices commute
    return like_input(out, y_np)


def tweedie_denoiser(log_density, y: ArrayLike, sigma: float) -> np.ndarray:
    """Tweedie's formula by automatic differentiation (Chapter 1): y + σ² ∇_y log p_σ(y).

    Args:
        log_density: callable ``(y: torch.Tensor (m, d), sigma) -> (m,)`` tensor, log p_σ(y), differentiable.
        y: ``(m, d)`` noisy points. sigma: σ > 0.

    Returns:
        ``(m, d)`` numpy array, the posterior mean E[x | y] by Tweedie's formula.
    """
    require_positive(sigma, "sigma")
    yt, _ = to_tensor(y, "y")
    if yt.ndim != 2:
        raise ValueError(f"y must have shape (m, d), got {tuple(yt.shape)}")
    yq = yt.detach().double().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(log_density(yq, sigma).sum(), yq)
    return (yq + sigma**2 * g).detach().numpy()


def posterior_mean_monte_carlo(
    prior_samples: ArrayLike, y: ArrayLike, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """E[x | y] estimated without Tweedie's formula, by self-normalised likelihood weighting (Chapter 1).

    Each prior draw x_j gets the weight w_j ∝ N(y; x_j, σ²I); the estimate is Σ_j w_j x_j and its standard
    error is the delta-method one of a self-normalised estimate, sqrt(Σ_j w_j² ‖x_j − estimate‖²).

    Args:
        prior_samples: ``(M, d)`` draws x_j ~ p. y: ``(m, d)`` noisy points. sigma: σ > 0.

    Returns:
        (estimates ``(m, d)``, standard errors ``(m,)``), numpy arrays.
    """
    require_positive(sigma, "sigma")
    xs = np.asarray(prior_samples, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 2 or ys.ndim != 2 or xs.shape[1] != ys.shape[1]:
        raise ValueError(f"need prior_samples (M, d) and y (m, d) with the same d, got {xs.shape} and {ys.shape}")
    means, ses = [], []
    for q in ys:
        logw = -((xs - q) ** 2).sum(1) / (2 * sigma**2)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        mean = w @ xs
        means.append(mean)
        ses.append(np.sqrt((w**2 @ ((xs - mean) ** 2)).sum()))
    return np.array(means), np.array(ses)


def linearity_defect(f, X: ArrayLike, sigma: float, *, n_pairs: int = 400, seed: int = 0) -> float:
    """Median distance of a denoiser from affine along random segments between noisy training points (Ch. 1).

    For pairs y1, y2 = x_a + σε, x_b + σε' and t ~ U(0, 1): ‖f(t y1 + (1−t) y2) − (t f(y1) + (1−t) f(y2))‖
    divided by ‖y1 − y2‖; 0 for an affine f.

    Args:
        f: ``(m, d) array, sigma -> (m, d) array``. X: ``(n, d)`` training points. sigma: σ > 0.
    """
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {Xa.shape}")
    require_positive(sigma, "sigma")
    g = np.random.default_rng(seed)
    n, d = Xa.shape
    idx = g.integers(0, n, size=(n_pairs, 2))
    y1 = Xa[idx[:, 0]] + sigma * g.standard_normal((n_pairs, d))
    y2 = Xa[idx[:, 1]] + sigma * g.standard_normal((n_pairs, d))
    t = g.uniform(size=(n_pairs, 1))
    f1, f2, fm = f(y1, sigma), f(y2, sigma), f(t * y1 + (1 - t) * y2, sigma)
    return float(np.median(np.linalg.norm(fm - (t * f1 + (1 - t) * f2), axis=1) / np.linalg.norm(y1 - y2, axis=1)))
