"""Data the course generates or finds bundled with its packages (no downloads at build time).

- :func:`load_digits`: scikit-learn's 1,797 real 8×8 digit images, scaled to [−1, 1] (Chapters 1, 6, 7).
- :class:`GaussianMixture`: a Gaussian mixture with exact densities and exact posterior means under
  Gaussian noise (Chapter 1's check of Tweedie's formula; Chapter 4's data model, paper Eq. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._arrays import require_finite, require_positive

__all__ = ["load_digits", "GaussianMixture"]


def load_digits(*, n: int | None = None, seed: int = 0, shuffle: bool = False) -> np.ndarray:
    """scikit-learn's bundled handwritten digits as rows in [−1, 1]: shape ``(n, 64)``, float64.

    Pixel values 0…16 are mapped to −1…1. ``n`` keeps the first ``n`` images (after an optional shuffle
    with ``seed``). Reshape a row to ``(8, 8)`` to see the image.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    X = _sk_load_digits().data.astype(np.float64) / 8.0 - 1.0
    if shuffle:
        X = X[np.random.default_rng(seed).permutation(len(X))]
    if n is not None:
        if not 1 <= n <= len(X):
            raise ValueError(f"n must be between 1 and {len(X)}, got {n}")
        X = X[:n]
    return X


@dataclass
class GaussianMixture:
    """p(x) = Σ_k ρ_k N(x; μ_k, Σ_k).

    Attributes:
        weights: ``(K,)`` mixture weights ρ_k (positive, summing to 1).
        means: ``(K, d)``.
        covs: ``(K, d, d)`` symmetric positive semi-definite.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.covs = np.asarray(self.covs, dtype=np.float64)
        K, d = self.means.shape
        if self.weights.shape != (K,) or self.covs.shape != (K, d, d):
            raise ValueError(
                f"weights (K,), means (K, d), covs (K, d, d) expected; got {self.weights.shape}, "
                f"{self.means.shape}, {self.covs.shape}"
            )
        if (self.weights <= 0).any() or not math.isclose(self.weights.sum(), 1.0, rel_tol=1e-9):
            raise ValueError("mixture weights must be positive and sum to 1")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` points; returns ``(X (n, d), labels (n,))``."""
        labels = rng.choice(len(self.weights), size=n, p=self.weights)
        X = np.empty((n, self.dim))
        for k in range(len(self.weights)):
            idx = np.nonzero(labels == k)[0]
            if len(idx):
                X[idx] = rng.multivariate_normal(self.means[k], self.covs[k], size=len(idx), method="eigh")
        return X, labels

    def _noisy_terms(self, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per component: log(ρ_k N(y; μ_k, Σ_k + σ²I)) ``(m, K)`` and the Wiener estimate ``(m, K, d)``."""
        d = self.dim
        mu = torch.as_tensor(self.means, dtype=y.dtype)
        S = torch.as_tensor(self.covs, dtype=y.dtype)
        C = S + sigma**2 * torch.eye(d, dtype=y.dtype)  # (K, d, d)
        L = torch.linalg.cholesky(C)
        diff = y[:, None, :] - mu[None]  # (m, K, d)
        sol = torch.cholesky_solve(diff.permute(1, 2, 0), L)  # (K, d, m) = C⁻¹(y − μ)
        maha = (diff.permute(1, 2, 0) * sol).sum(1).T  # (m, K)
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        log_w = torch.log(torch.as_tensor(self.weights, dtype=y.dtype))
        log_terms = log_w - 0.5 * (maha + logdet + d * math.log(2 * math.pi))
        wiener = mu[None] + torch.einsum("kij,kjm->mki", S, sol)  # μ_k + Σ_k C_k⁻¹ (y − μ_k)
        return log_terms, wiener

    def log_density(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        """log p_σ(y) of the mixture blurred by N(0, σ²I) (σ > 0). ``(m, d)`` → ``(m,)``; differentiable."""
        require_positive(sigma, "sigma")
        y = self._check_y(y)
        log_terms, _ = self._noisy_terms(y, sigma)
        return torch.logsumexp(log_terms, dim=1)

    def posterior_mean(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        """E[x | x + σε = y], exactly: the responsibility-weighted Wiener estimates. ``(m, d)`` → ``(m, d)``."""
        require_positive(sigma, "sigma")
        y = self._check_y(y)
        log_terms, wiener = self._noisy_terms(y, sigma)
        resp = torch.softmax(log_terms, dim=1)
        return (resp[..., None] * wiener).sum(1)

    def _check_y(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y, dtype=torch.float64) if not isinstance(y, torch.Tensor) else y
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must have shape (m, {self.dim}), got {tuple(y.shape)}")
        require_finite(y, "y")
        return y
