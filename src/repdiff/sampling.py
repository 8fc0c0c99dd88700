"""Samplers for variance-exploding (VE) diffusion: x_σ = x_0 + σ ε, run from σ_max down to 0.

A *denoiser* here is any callable ``denoiser(x, sigma) -> x0_hat`` with ``x`` of shape ``(N, ...)`` and
``sigma`` a Python float: the empirical denoiser of Chapter 1, a trained ReLU DAE (Chapter 7), or a U-Net
wrapped to predict x_0 (Part III).

The updates, with f = denoiser(x, σ) and next level σ' < σ:

- deterministic (probability-flow ODE, Euler step = DDIM in VE form): x' = f + (σ'/σ)(x − f)
- stochastic (ancestral; sample of N(x_σ' | x_σ, x_0 = f)):
  x' = f + (σ'²/σ²)(x − f) + σ' sqrt(1 − σ'²/σ²) z
- stochastic (Euler–Maruyama step of the reverse SDE, the step of the paper's toy code):
  x' = x + (σ² − σ'²)(f − x)/σ² + sqrt(σ² − σ'²) z

Both move x *towards* the denoiser output; the score is ∇log p_σ(x) = (f − x)/σ² (Tweedie). Chapter 7
derives them (and the sign slips in the paper's printed update, reproduced by :func:`printed_paper_step`).

Public: :func:`sigma_schedule`, :func:`sample` (batched, with a progress bar and clear errors for a wrong
shape, a schedule that does not decrease and a model on another device), the single steps
:func:`ddim_step` and :func:`ancestral_step`, :func:`score_from_denoiser`, and
:func:`empirical_denoiser_fn` (the f_emp sampler of Chapter 7, the memorization reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from repdiff.dae.optimal_denoiser import empirical_denoiser

__all__ = [
    "Denoiser",
    "sigma_schedule",
    "sample",
    "score_from_denoiser",
    "ddim_step",
    "ancestral_step",
    "printed_paper_step",
    "empirical_denoiser_fn",
    "euler_maruyama_step",
    "memorizing_relu_denoiser_fn",
    "smoothed_kl",
]

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


def score_from_denoiser(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float) -> torch.Tensor:
    """Tweedie's formula solved for the score: ∇log p_σ(x) = (x̂0 − x) / σ² (same shape as ``x``).

    Note the order x̂0 − x: the score points from the noisy point *towards* the clean estimate.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return (x0_hat - x) / sigma**2


def ddim_step(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One deterministic step σ → σ' (< σ): x' = x̂0 + (σ'/σ)(x − x̂0).

    It is the Euler step of the probability-flow ODE dx/dσ = −σ ∇log p_σ(x) = (x − x̂0)/σ, and the DDIM
    update written for VE noise (Chapter 7 derives both).
    """
    if not 0 <= sigma_next < sigma:
        raise ValueError(f"need 0 <= sigma_next < sigma, got sigma={sigma}, sigma_next={sigma_next}")
    return x0_hat + (sigma_next / sigma) * (x - x0_hat)


def ancestral_step(
    x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, sigma_next: float, z: torch.Tensor
) -> torch.Tensor:
    """One stochastic step: a draw from N(x_σ' | x_σ = x, x_0 = x̂0) with standard normal ``z``.

    x' = x̂0 + (σ'²/σ²)(x − x̂0) + σ' sqrt(1 − σ'²/σ²) z (Chapter 7 derives it).
    """
    if not 0 <= sigma_next < sigma:
        raise ValueError(f"need 0 <= sigma_next < sigma, got sigma={sigma}, sigma_next={sigma_next}")
    ratio2 = (sigma_next / sigma) ** 2
    return x0_hat + ratio2 * (x - x0_hat) + sigma_next * (1 - ratio2) ** 0.5 * z


def euler_maruyama_step(
    x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, sigma_next: float, z: torch.Tensor
) -> torch.Tensor:
    """One Euler–Maruyama step of the reverse VE SDE: x' = x + (σ² − σ'²) s + sqrt(σ² − σ'²) z.

    s = (x̂0 − x)/σ² is the score (Tweedie). This is the stochastic step of the paper's toy sampler
    (Chapter 7 compares it with :func:`ancestral_step`, which draws the exact Gaussian posterior step).
    """
    if not 0 <= sigma_next < sigma:
        raise ValueError(f"need 0 <= sigma_next < sigma, got sigma={sigma}, sigma_next={sigma_next}")
    dv = sigma**2 - sigma_next**2
    return x + dv * score_from_denoiser(x, x0_hat, sigma) + dv**0.5 * z


def printed_paper_step(
    x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, sigma_next: float, *, fix_score_sign_only: bool = False
) -> torch.Tensor:
    """The update as printed in the paper (Eq. 1), for Chapter 7's sign discussion.

    Printed: x' = x − (σ − σ') σ s with the score written as s = (x − x̂0)/σ². With
    ``fix_score_sign_only=True`` the score gets its correct sign (x̂0 − x)/σ² but the update keeps its
    printed minus: the step then moves *away* from x̂0.
    """
    s = score_from_denoiser(x, x0_hat, sigma)  # correct: (x̂0 − x)/σ²
    printed_score = s if fix_score_sign_only else -s
    return x - (sigma - sigma_next) * sigma * printed_score


def empirical_denoiser_fn(X: torch.Tensor) -> Denoiser:
    """``denoiser(x, σ)`` for :func:`sample` built from the empirical optimal denoiser of ``X`` ``(n, d)``.

    The memorization reference of Chapter 7: sampling with it returns training points.
    """
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(X)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")

    def f_emp(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != X.shape[1]:
            raise ValueError(f"x must have shape (N, {X.shape[1]}), got {tuple(x.shape)}")
        return empirical_denoiser(x, X.to(device=x.device, dtype=x.dtype), sigma)

    return f_emp


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    x_init: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = None,
    clamp_iterate: tuple[float, float] | None = None,
    stochastic_step: str = "ancestral",
    return_trajectory: bool = False,
    progress: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the VE sampler from ``x_init`` (noise at level ``sigmas[0]``) down the schedule.

    Args:
        denoiser: ``denoiser(x, sigma) -> x0_hat``, same shape as ``x``.
        x_init: starting points ``(N, ...)``, typically ``sigmas[0] * randn``.
        sigmas: strictly decreasing noise levels, e.g. from :func:`sigma_schedule` (ending at 0).
        stochastic: ancestral steps (fresh noise each step) instead of deterministic DDIM steps.
        generator: torch generator for the stochastic noise (reproducibility).
        clamp: optional ``(lo, hi)`` applied to the x_0 estimate at each step (the course's choice).
        clamp_iterate: optional ``(lo, hi)`` applied to the iterate x after each step (what the paper's
            toy code does instead, also at large σ; Chapter 7 measures the difference).
        stochastic_step: ``"ancestral"`` (:func:`ancestral_step`) or ``"euler_maruyama"``
            (:func:`euler_maruyama_step`, the paper's toy code); used when ``stochastic``.
        return_trajectory: also return the list of iterates (``len(sigmas)`` tensors on the CPU).
        progress: show a progress bar (one tick per step and batch).
        batch_size: run the samples in batches of this size (all at once when ``None``). The batches
            run one after the other with the same generator, so the result depends on ``batch_size``
            only through the order in which stochastic noise is drawn.

    Returns:
        the final samples ``(N, ...)``, and the trajectory if asked for.

    Raises:
        TypeError / ValueError: ``x_init`` is not a finite batch of the shape the denoiser expects,
            or the schedule is not strictly decreasing.
        RuntimeError: the denoiser's weights and ``x_init`` are on different devices.
    """
    if not isinstance(x_init, torch.Tensor):
        raise TypeError(f"x_init must be a torch tensor, got {type(x_init).__name__}")
    if x_init.ndim < 2:
        raise ValueError(f"x_init must be a batch (N, ...) of starting points, got shape {tuple(x_init.shape)}")
    if x_init.shape[0] == 0:
        raise ValueError("x_init is an empty batch (N = 0)")
    if not torch.isfinite(x_init).all():
        raise ValueError("x_init contains NaN or infinity")
    d_expected = getattr(denoiser, "d", None)
    if isinstance(d_expected, int) and tuple(x_init.shape[1:]) != (d_expected,):
        raise ValueError(
            f"x_init has shape {tuple(x_init.shape)} but this denoiser works on batches of shape (N, {d_expected})"
        )
    s = _validate_sigmas(sigmas)
    dev = _module_device(denoiser)
    if dev is not None and dev != x_init.device:
        raise RuntimeError(
            f"the denoiser's weights are on {dev} but x_init is on {x_init.device}; "
            f"move one of them, e.g. x_init.to({str(dev)!r})"
        )
    if stochastic_step not in ("ancestral", "euler_maruyama"):
        raise ValueError(f"stochastic_step must be 'ancestral' or 'euler_maruyama', got {stochastic_step!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    B = x_init.shape[0] if batch_size is None else batch_size
    chunks = list(torch.split(x_init, B))
    bar = tqdm(total=len(chunks) * (len(s) - 1), desc="sampling", disable=not progress, leave=False, mininterval=0.5)
    outs, trajs = [], []
    for chunk in chunks:
        x = chunk.clone()
        traj = [x.detach().cpu()] if return_trajectory else []
        for i in range(len(s) - 1):
            sig, sig_next = float(s[i]), float(s[i + 1])
            f = denoiser(x, sig)
            if not isinstance(f, torch.Tensor) or f.shape != x.shape:
                got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(
                    f"the denoiser returned {got} for input of shape {tuple(x.shape)}; it must return the same shape"
                )
            if not torch.isfinite(f).all():
                raise FloatingPointError(f"the denoiser returned NaN or infinity at sigma = {sig:.4g}")
            if clamp is not None:
                f = f.clamp(*clamp)
            if sig_next == 0.0:
                x = f
            elif stochastic:
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                step = ancestral_step if stochastic_step == "ancestral" else euler_maruyama_step
                x = step(x, f, sig, sig_next, z)
            else:
                x = ddim_step(x, f, sig, sig_next)
            if clamp_iterate is not None:
                x = x.clamp(*clamp_iterate)
            if return_trajectory:
                traj.append(x.detach().cpu())
            bar.update(1)
        outs.append(x)
        trajs.append(traj)
    bar.close()
    x = torch.cat(outs)
    if not return_trajectory:
        return x
    return x, [torch.cat([t[i] for t in trajs]) for i in range(len(s))]


def memorizing_relu_denoiser_fn(X: torch.Tensor, n_lam: float = 0.0) -> Denoiser:
    """The exact memorizing minimiser of paper Cor. 3.2 at every σ, as a denoiser for :func:`sample`.

    f(y, σ) = Σ_i r_i(σ)² x_i [x_iᵀ y]_+ with r_i² = (‖x_i‖² − nλ)/(‖x_i‖⁴ + σ²‖x_i‖²) (one unit per
    stored sample, bias-free, not centred). ``X``: ``(n, d)``. Chapter 8's KL-bound experiment.
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2:
        raise ValueError(f"X must be a torch tensor of shape (n, d), got {getattr(X, 'shape', type(X))}")
    n2 = X.square().sum(1)
    if (n2 <= n_lam).any():
        raise ValueError(f"every ||x_i||^2 must exceed n_lam = {n_lam}")

    def f_mem(y: torch.Tensor, sigma: float) -> torch.Tensor:
        if y.ndim != 2 or y.shape[1] != X.shape[1]:
            raise ValueError(f"y must have shape (N, {X.shape[1]}), got {tuple(y.shape)}")
        Xy = X.to(y)
        r2 = ((n2 - n_lam) / (n2.square() + sigma**2 * n2)).to(y)
        return (torch.relu(y @ Xy.T) * r2) @ Xy

    return f_mem


def smoothed_kl(samples: torch.Tensor, X: torch.Tensor, tau: float, *, n_mc: int = 4000, seed: int = 0) -> float:
    """Monte-Carlo KL(q_τ ‖ p_τ) in nats between two point sets smoothed by N(0, τ² I).

    q_τ = (1/N) Σ_j N(s_j, τ² I) for the ``samples`` ``(N, d)``, p_τ = (1/n) Σ_i N(x_i, τ² I) for the
    empirical distribution ``X`` ``(n, d)``. The unsmoothed KL(sampled ‖ empirical) is +∞ as soon as a
    sample is off the x_i; τ → 0 recovers it. ``n_mc`` draws from q_τ, seeded. Chapter 8.
    """
    if samples.ndim != 2 or X.ndim != 2 or samples.shape[1] != X.shape[1]:
        raise ValueError(f"samples and X must be (N, d) and (n, d), got {tuple(samples.shape)}, {tuple(X.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    g = torch.Generator().manual_seed(seed)
    S, Xd = samples.double().cpu(), X.double().cpu()
    j = torch.randint(len(S), (n_mc,), generator=g)
    y = S[j] + tau * torch.randn(n_mc, S.shape[1], generator=g, dtype=torch.float64)
    log_q = torch.logsumexp(-torch.cdist(y, S).square() / (2 * tau**2), 1) - math.log(len(S))
    log_p = torch.logsumexp(-torch.cdist(y, Xd).square() / (2 * tau**2), 1) - math.log(len(Xd))
    return float((log_q - log_p).mean())
