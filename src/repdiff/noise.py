"""The noise algebra of diffusion models, written once (every Part).

Variance-preserving (VP, DDPM/Stable Diffusion) forward process with ᾱ = ``alpha_bar`` ∈ (0, 1]:

    x_t = √ᾱ x₀ + √(1 − ᾱ) ε.

The variance-exploding (VE) view of the same process divides by √ᾱ: x_t / √ᾱ = x₀ + σ ε with
σ = √((1 − ᾱ)/ᾱ) (Chapters 7 and 9 move between the two). Classifier-free guidance combines the
unconditional and conditional noise predictions as ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅) (Part IV).

Every function broadcasts: ``alpha_bar`` may be a float, a 0-d tensor or a tensor shaped to broadcast
against ``x`` (e.g. ``(B, 1, 1, 1)`` for images ``(B, C, H, W)``; see :func:`per_sample`).
"""

from __future__ import annotations

import torch

__all__ = ["per_sample", "add_noise", "x0_from_eps", "eps_from_x0", "ve_sigma", "alpha_bar_from_ve_sigma",
           "guided_eps"]


def _abar(alpha_bar: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(alpha_bar, device=like.device, dtype=like.dtype)
    if bool(((a <= 0) | (a > 1)).any()):
        raise ValueError("alpha_bar must lie in (0, 1]")
    return a


def per_sample(alpha_bar: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` values reshaped to ``(B, 1, ..., 1)`` to broadcast against a batch ``x`` of shape ``(B, ...)``."""
    if alpha_bar.ndim != 1 or alpha_bar.shape[0] != x.shape[0]:
        raise ValueError(f"need one value per sample: got {tuple(alpha_bar.shape)} for a batch of {x.shape[0]}")
    return alpha_bar.reshape(-1, *([1] * (x.ndim - 1)))


def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """VP forward noising x_t = √ᾱ x₀ + √(1 − ᾱ) ε (shapes of ``x0`` and ``eps`` equal)."""
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have one shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    a = _abar(alpha_bar, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def x0_from_eps(xt: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """The clean estimate x̂₀ = (x_t − √(1 − ᾱ) ε̂) / √ᾱ from a noise prediction."""
    a = _abar(alpha_bar, xt)
    return (xt - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0(xt: torch.Tensor, x0: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """The noise ε̂ = (x_t − √ᾱ x̂₀) / √(1 − ᾱ) that a clean estimate implies (ᾱ < 1)."""
    a = _abar(alpha_bar, xt)
    if bool((a >= 1).any()):
        raise ValueError("eps_from_x0 needs alpha_bar < 1 (no noise at alpha_bar = 1)")
    return (xt - a.sqrt() * x0) / (1 - a).sqrt()


def ve_sigma(alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """The VE noise level σ = √((1 − ᾱ)/ᾱ) of a VP level ᾱ (float64 for a float input)."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64 if not torch.is_tensor(alpha_bar) else None)
    if bool(((a <= 0) | (a > 1)).any()):
        raise ValueError("alpha_bar must lie in (0, 1]")
    return ((1 - a) / a).sqrt()


def alpha_bar_from_ve_sigma(sigma: float | torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`ve_sigma`: ᾱ = 1 / (1 + σ²)."""
    s = torch.as_tensor(sigma, dtype=torch.float64 if not torch.is_tensor(sigma) else None)
    if bool((s < 0).any()):
        raise ValueError("sigma must be >= 0")
    return 1 / (1 + s.square())


def guided_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅); ``guidance`` w = 1 gives the conditional prediction."""
    return eps_uncond + guidance * (eps_cond - eps_uncond)
