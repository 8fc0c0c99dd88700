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

from repdiff._arrays import require_finite, require_positive

__all__ = [
    "load_digits",
    "GaussianMixture",
    "separable_samples",
    "separability",
    "low_rank_gaussian_mixture",
]


def load_digits(
    *, n: int | None = None, seed: int = 0, shuffle: bool = False, return_labels: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits as rows in [−1, 1]: shape ``(n, 64)``, float64.

    The one reader of the digits (Chapters 1, 6, 7 directly; Chapter 6's :mod:`repdiff.data.images` and
    Part III's :func:`repdiff.data.real.load_dataset` through it). Pixel values 0…16 are mapped to −1…1.
    ``n`` keeps the first ``n`` images (after an optional shuffle with ``seed``). Reshape a row to ``(8, 8)``
    to see the image. With ``return_labels`` the classes come too: ``(X (n, 64), labels (n,) int64)``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits  # heavy: imported only when digits are read

    bunch = _sk_load_digits()
    X, y = bunch.data.astype(np.float64) / 8.0 - 1.0, bunch.target.astype(np.int64)
    if shuffle:
        perm = np.random.default_rng(seed).permutation(len(X))
        X, y = X[perm], y[perm]
    if n is not None:
        if not 1 <= n <= len(X):
            raise ValueError(f"n must be between 1 and {len(X)}, got {n}")
        X, y = X[:n], y[:n]
    return (X, y) if return_labels else X


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


# ---------------------------------------------------------------------------------------------------------
# Chapters 3-5: data satisfying the separability assumption of the paper (Definition 3.1).
# ---------------------------------------------------------------------------------------------------------


def _random_orthonormal(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(d, k)`` matrix with orthonormal columns, uniformly random (QR of a Gaussian matrix)."""
    Q, R = np.linalg.qr(rng.standard_normal((d, k)))
    return Q * np.sign(np.diag(R))


def separable_samples(n: int, d: int, *, norm: float = 3.0, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """``n`` pairwise negatively correlated points in R^d, each of norm ``norm`` (Chapters 3, 5).

    A centred simplex: take n random orthonormal vectors e_1..e_n, subtract their mean (so ⟨x_i, x_j⟩ < 0
    for i ≠ j, cosine −1/(n−1)), optionally perturb each point by ``jitter`` × (a random unit vector) ×
    its norm, then rescale every point to norm ``norm``. With ``jitter = 0`` and n = 5 this is the
    setting in which the memorizing solution of Corollary 3.2 was first checked (3 × centred simplex).

    Args:
        n: number of points, 2 <= n <= d (at most d + 1 vectors can be pairwise negatively correlated;
            this construction uses n orthonormal vectors, hence n <= d). d: dimension.
        norm: the norm of every point. jitter: relative size of the random perturbation (keep it small,
            e.g. <= 0.2, or the points may stop being negatively correlated; :func:`separability` tells).
        seed: random seed.

    Returns:
        ``(n, d)`` float64 array.
    """
    if not 2 <= n <= d:
        raise ValueError(
            f"need 2 <= n <= d for a centred simplex of orthonormal vectors, got n = {n}, d = {d} "
            "(no more than d + 1 points in R^d can be pairwise negatively correlated)"
        )
    norm = require_positive(norm, "norm")
    if not math.isfinite(jitter) or jitter < 0:
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
    rng = np.random.default_rng(seed)
    E = _random_orthonormal(d, n, rng).T  # (n, d)
    X = E - E.mean(axis=0, keepdims=True)
    if jitter > 0:
        U = rng.standard_normal((n, d))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        X = X + jitter * np.linalg.norm(X, axis=1, keepdims=True) * U
    return norm * X / np.linalg.norm(X, axis=1, keepdims=True)


def separability(clusters: list[np.ndarray]) -> dict[str, float]:
    """(α, β) of Definition 3.1 for a partition of the training set, and a margin (Chapters 3-5).

    - α = max_{k,j} ‖x_{k,j} − x̄_k‖ / ‖x̄_k‖ (spread of each cluster relative to its mean);
    - β = max_{k≠ℓ} cos(x̄_k, x̄_ℓ) (largest cosine between two cluster means; −1 for a single cluster);
    - margin = min_k min( min_{x ∈ X_k} ⟨x, m_k⟩,  −max_{x ∉ X_k} ⟨x, m_k⟩ ),  m_k = x̄_k/‖x̄_k‖:
      how far every point lies on the correct side of each hyperplane through 0 orthogonal to a cluster
      mean. It is the course's computable stand-in for the paper's margin γ (whose exact form is in the
      appendix): a unit pointing along m_k switches on for all of cluster k and off for every other point,
      and noise σε flips one such decision with probability at most Φ(−margin/σ) ≈ exp(−margin²/2σ²).
      Negative margin: some point is on the wrong side.

    Args:
        clusters: list of ``(n_k, d)`` arrays (a single-sample cluster is a ``(1, d)`` array; pass
            ``list(X[:, None])`` to treat every sample as its own cluster, as in Corollary 3.2).

    Returns:
        dict with ``alpha``, ``beta``, ``margin`` (floats) and ``separable`` (1.0 if β < 0 and margin > 0).
    """
    cl = [np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in clusters]
    if len(cl) == 0:
        raise ValueError("need at least one cluster")
    d = cl[0].shape[1]
    for k, c in enumerate(cl):
        if c.ndim != 2 or c.shape[1] != d or len(c) == 0:
            raise ValueError(f"cluster {k} must be a non-empty (n_k, {d}) array, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError(f"cluster {k} contains NaN or infinite values")
    means = np.stack([c.mean(0) for c in cl])
    mnorm = np.linalg.norm(means, axis=1)
    if (mnorm == 0).any():
        raise ValueError("a cluster has mean zero: Definition 3.1 needs non-zero cluster means")
    alpha = max(
        float(np.linalg.norm(c - m, axis=1).max() / nm) for c, m, nm in zip(cl, means, mnorm, strict=True)
    )
    dirs = means / mnorm[:, None]
    if len(cl) > 1:
        cos = dirs @ dirs.T
        np.fill_diagonal(cos, -np.inf)
        beta = float(cos.max())
    else:
        beta = -1.0
    allX = np.concatenate(cl)
    owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(cl)])
    margin = np.inf
    for k in range(len(cl)):
        proj = allX @ dirs[k]
        own = proj[owner == k].min()
        other = -proj[owner != k].max() if (owner != k).any() else np.inf
        margin = min(margin, own, other)
    return {
        "alpha": alpha,
        "beta": beta,
        "margin": float(margin),
        "separable": float(beta < 0 and margin > 0),
    }


def low_rank_gaussian_mixture(
    d: int,
    K: int,
    rank: int,
    *,
    mean_norm: float = 3.0,
    mean_cos: float = -0.5,
    variances: tuple[float, ...] | list[float] = (0.5, 0.2),
    iso_var: float = 0.005,
    weights: tuple[float, ...] | list[float] | None = None,
    seed: int = 0,
) -> GaussianMixture:
    """A K-mode Gaussian mixture with approximately low-rank covariances (paper Eq. 4; Chapters 4-5).

    Means μ_k have norm ``mean_norm`` and pairwise cosine ``mean_cos`` (a Gram matrix (1−c)I + c11ᵀ
    embedded in a random orthonormal basis; needs c >= −1/(K−1)). Covariance
    Σ_k = V_k diag(variances) V_kᵀ + iso_var·I, the ``rank`` columns of V_k random orthonormal directions
    orthogonal to every mean (so the top eigenvectors of S_k = μ_kμ_kᵀ + Σ_k are μ_k/‖μ_k‖ and V_k).

    Args:
        d: dimension (>= K + rank). K: number of modes (>= 1). rank: number of large covariance directions.
        mean_norm, mean_cos: geometry of the means. variances: ``rank`` variances along V_k.
        iso_var: isotropic variance added to every mode (>= 0). weights: mixture weights (default uniform).
        seed: random seed.

    Returns:
        :class:`GaussianMixture` (``means`` ``(K, d)``, ``covs`` ``(K, d, d)``, ``weights`` ``(K,)``).
    """
    variances = np.asarray(variances, dtype=np.float64)
    if K < 1 or rank < 0 or d < K + rank:
        raise ValueError(f"need K >= 1, rank >= 0 and d >= K + rank; got d = {d}, K = {K}, rank = {rank}")
    if variances.shape != (rank,) or (variances < 0).any():
        raise ValueError(f"variances must be {rank} non-negative numbers, got {variances.tolist()}")
    if not math.isfinite(iso_var) or iso_var < 0:
        raise ValueError(f"iso_var must be a finite number >= 0, got {iso_var!r}")
    mean_norm = require_positive(mean_norm, "mean_norm")
    if K > 1 and not (-1.0 / (K - 1) - 1e-12 <= mean_cos <= 1.0):
        raise ValueError(
            f"mean_cos must lie in [-1/(K-1), 1] = [{-1.0 / (K - 1):.4g}, 1] for K = {K} unit vectors, "
            f"got {mean_cos}"
        )
    rng = np.random.default_rng(seed)
    G = (1 - mean_cos) * np.eye(K) + mean_cos * np.ones((K, K))
    evals, evecs = np.linalg.eigh(G)
    coords = evecs * np.sqrt(np.clip(evals, 0, None))  # rows: K unit vectors in R^K with the given Gram
    basis = _random_orthonormal(d, K, rng)  # (d, K)
    means = mean_norm * coords @ basis.T  # (K, d)
    # directions orthogonal to every mean
    P = np.eye(d) - basis @ basis.T
    covs = np.empty((K, d, d))
    for k in range(K):
        V = np.linalg.qr(P @ rng.standard_normal((d, rank)))[0][:, :rank] if rank else np.zeros((d, 0))
        covs[k] = (V * variances) @ V.T + iso_var * np.eye(d)
        covs[k] = 0.5 * (covs[k] + covs[k].T)
    w = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=np.float64)
    return GaussianMixture(weights=w, means=means, covs=covs)
