"""Measurements of one trained two-layer ReLU DAE f(x) = W2 relu(W1ᵀx) (Chapters 5 and 6).

- :func:`representation_stats`: spikiness (Std, participation ratio, active units) of h(x + σε).
- :func:`denoising_psnr`, :func:`psnr_summary`, :func:`psnr_gap`: PSNR of the noisy input and of the denoised output.
- :func:`pairwise_cosines`, :func:`mean_pairwise_cosine`, :func:`mean_best_cosine`,
  :func:`out_of_span_fraction`: geometry of the data and of the units (Chapter 6).
- :func:`loss_and_gradient_norm`: Monte-Carlo loss (Eq. 6) and its gradient norm at given weights (Chapter 5).

Conventions: rows are samples (``X`` is ``(n, d)``), weights are ``(d, p)``; numpy or torch in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from repdiff import metrics
from repdiff._arrays import ArrayLike, require_finite, to_tensor
from repdiff.dae.relu_losses import relu_dae_loss_mc

__all__ = [
    "representation_stats",
    "denoising_psnr",
    "PsnrSummary",
    "psnr_summary",
    "psnr_gap",
    "pairwise_cosines",
    "mean_pairwise_cosine",
    "mean_best_cosine",
    "out_of_span_fraction",
    "loss_and_gradient_norm",
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


@dataclass
class PsnrSummary:
    """Mean PSNR (dB, :func:`denoising_psnr`) of a DAE's noisy inputs and outputs on training and test
    images (Chapter 6's table). ``gap`` = train − test."""

    noisy_train: float
    train: float
    noisy_test: float
    test: float

    @property
    def gap(self) -> float:
        return self.train - self.test


def psnr_summary(model: Any, X_train: ArrayLike, X_test: ArrayLike, sigma: float, *,
                 n_draws: int = 5) -> PsnrSummary:
    """Mean PSNR of the noisy inputs and of the denoised outputs on ``X_train`` and on ``X_test`` (both
    ``(n, d)``), ``n_draws`` noise draws per image, noise seeds 4 (train) and 5 (test), as the table of
    Chapter 6."""
    tr = denoising_psnr(model, X_train, sigma, n_draws=n_draws, seed=4)
    te = denoising_psnr(model, X_test, sigma, n_draws=n_draws, seed=5)
    return PsnrSummary(float(tr["noisy"].mean()), float(tr["denoised"].mean()), float(te["noisy"].mean()),
                       float(te["denoised"].mean()))


def psnr_gap(model: Any, X_train: ArrayLike, X_test: ArrayLike, sigma: float, *, n_draws: int = 5) -> float:
    """Mean denoised PSNR on ``X_train`` minus on ``X_test`` (both ``(n, d)``), dB: :attr:`PsnrSummary.gap`
    of :func:`psnr_summary` (Chapter 6)."""
    return psnr_summary(model, X_train, X_test, sigma, n_draws=n_draws).gap


def pairwise_cosines(X: ArrayLike) -> np.ndarray:
    """Cosines between distinct rows of ``X`` ``(n, d)``, n >= 2: ``(n(n-1)/2,)``, row-major upper triangle
    (Chapter 6: raw images share a background and sit in a narrow cone; centred ones do not)."""
    A = np.asarray(to_tensor(X, "X")[0].detach().cpu().double())
    if A.ndim != 2 or A.shape[0] < 2:
        raise ValueError(f"X must be (n, d) with n >= 2, got {A.shape}")
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("X has a zero row: its cosine is undefined")
    U = A / norms
    return (U @ U.T)[np.triu_indices(len(A), 1)]


def mean_pairwise_cosine(X: ArrayLike) -> float:
    """Mean of :func:`pairwise_cosines` of the rows of ``X`` ``(n, d)``, n >= 2 (Chapter 6)."""
    return float(pairwise_cosines(X).mean())


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


def loss_and_gradient_norm(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *, n_draws: int = 256, seed: int = 5
) -> tuple[float, float]:
    """Monte-Carlo loss (Eq. 6, :func:`repdiff.theory.relu_dae_loss_mc`, fixed noise) and the Euclidean norm of
    its gradient in (W1, W2) at the given ``(d, p)`` weights (Chapter 5). ``X`` is ``(n, d)``."""
    A = to_tensor(W1, "W1")[0].detach().double().clone().requires_grad_()
    B = to_tensor(W2, "W2")[0].detach().double().clone().requires_grad_()
    loss = relu_dae_loss_mc(A, B, to_tensor(X, "X")[0].double(), sigma, lam, n_draws=n_draws, seed=seed)
    loss.backward()
    return float(loss.detach()), float(torch.cat([A.grad.ravel(), B.grad.ravel()]).norm())
