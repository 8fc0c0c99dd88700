"""Samplers for variance-exploding (VE) diffusion: x_σ = x_0 + σ ε, run from σ_max down to 0.

A *denoiser* here is any callable ``denoiser(x, sigma) -> x0_hat`` with ``x`` of shape ``(N, ...)`` and
``sigma`` a Python float: the empirical denoiser of Chapter 1, a trained ReLU DAE (Chapter 7), or a U-Net
wrapped to predict x_0 (Part III).

The updates, with f = denoiser(x, σ) and next level σ' < σ:

- deterministic (probability-flow ODE, Euler step = DDIM in VE form): x' = f + (σ'/σ)(x − f)
- stochastic (ancestral; sample of N(x_σ' | x_σ, x_0 = f)):
  x' = f + (σ'²/σ²)(x − f) + σ' sqrt(1 − σ'²/σ²) z

Both move x *towards* the denoiser output; the score is ∇log p_σ(x) = (f − x)/σ² (Tweedie). Chapter 7
derives them (and the sign slips in the paper's printed update).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

__all__ = ["Denoiser", "sigma_schedule", "sample"]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def sigma_schedule(n_steps: int, sigma_max: float, sigma_min: float, *, kind: str = "geometric") -> torch.Tensor:
    """Noise levels σ_0 = σ_max > … > σ_{n−1} = σ_min, then a final 0. Shape ``(n_steps + 1,)``, float64.

    ``kind="geometric"`` spaces them evenly in log σ; ``"linear"`` evenly in σ.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if kind == "geometric":
        levels = torch.logspace(
            torch.log10(torch.tensor(sigma_max)), torch.log10(torch.tensor(sigma_min)), n_steps, dtype=torch.float64
        )
    elif kind == "linear":
        levels = torch.linspace(sigma_max, sigma_min, n_steps, dtype=torch.float64)
    else:
        raise ValueError(f"kind must be 'geometric' or 'linear', got {kind!r}")
    if n_steps == 1:
        levels = torch.tensor([sigma_max], dtype=torch.float64)
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])


def _validate_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if len(s) < 2:
        raise ValueError("the noise schedule needs at least two levels (start and end)")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("noise levels must be finite and >= 0")
    if not (s[1:] < s[:-1]).all():
        bad = int(torch.nonzero(s[1:] >= s[:-1])[0]) + 1
        raise ValueError(
            f"the noise schedule must be strictly decreasing (sampling goes from high to low noise); "
            f"level {bad} ({float(s[bad]):.4g}) is not below level {bad - 1} ({float(s[bad - 1]):.4g})"
        )
    return s


def _module_device(denoiser: object) -> torch.device | None:
    if isinstance(denoiser, torch.nn.Module):
        p = next(denoiser.parameters(), None)
        return None if p is None else p.device
    return None


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    x_init: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = None,
    return_trajectory: bool = False,
    progress: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the VE sampler from ``x_init`` (noise at level ``sigmas[0]``) down the schedule.

    Args:
        denoiser: ``denoiser(x, sigma) -> x0_hat``, same shape as ``x``.
        x_init: starting points ``(N, ...)``, typically ``sigmas[0] * randn``.
        sigmas: strictly decreasing noise levels, e.g. from :func:`sigma_schedule` (ending at 0).
        stochastic: ancestral steps (fresh noise each step) instead of deterministic DDIM steps.
        generator: torch generator for the stochastic noise (reproducibility).
        clamp: optional ``(lo, hi)`` applied to the x_0 estimate at each step.
        return_trajectory: also return the list of iterates (``len(sigmas)`` tensors on the CPU).
        progress: show a progress bar.

    Returns:
        the final samples ``(N, ...)``, and the trajectory if asked for.
    """
    if not isinstance(x_init, torch.Tensor):
        raise TypeError(f"x_init must be a torch tensor, got {type(x_init).__name__}")
    if x_init.ndim < 2:
        raise ValueError(f"x_init must be a batch (N, ...) of starting points, got shape {tuple(x_init.shape)}")
    if not torch.isfinite(x_init).all():
        raise ValueError("x_init contains NaN or infinity")
    s = _validate_sigmas(sigmas)
    dev = _module_device(denoiser)
    if dev is not None and dev != x_init.device:
        raise RuntimeError(
            f"the denoiser's weights are on {dev} but x_init is on {x_init.device}; "
            f"move one of them, e.g. x_init.to({str(dev)!r})"
        )

    x = x_init.clone()
    traj = [x.detach().cpu()] if return_trajectory else []
    steps = range(len(s) - 1)
    for i in tqdm(steps, desc="sampling", disable=not progress, leave=False):
        sig, sig_next = float(s[i]), float(s[i + 1])
        f = denoiser(x, sig)
        if not isinstance(f, torch.Tensor) or f.shape != x.shape:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                f"the denoiser returned {got} for input of shape {tuple(x.shape)}; it must return the same shape"
            )
        if clamp is not None:
            f = f.clamp(*clamp)
        if sig_next == 0.0:
            x = f
        elif stochastic:
            ratio2 = (sig_next / sig) ** 2
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = f + ratio2 * (x - f) + sig_next * (1 - ratio2) ** 0.5 * z
        else:
            x = f + (sig_next / sig) * (x - f)
        if return_trajectory:
            traj.append(x.detach().cpu())
    return (x, traj) if return_trajectory else x
