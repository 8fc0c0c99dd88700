"""How much of a push one denoising pass keeps: memorized samples undo it, generalized ones keep it (Ch. 14).

Steering (:mod:`repdiff.sd.steering`) pushes a sample during sampling; whether the push survives depends on
what one denoising pass does to a moved input. :func:`push_retention` follows a decoded attribute (brightness
after mixing in white), :func:`latent_gain` any direction in latent space. Both compare the one-pass clean
estimates of an input and of its moved version, noised with the same noise, from the guided U-Net or from the
optimal denoiser of the training latents (the paper's Eq. 3, a perfect memorizer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from repdiff import noise
from repdiff.notebook import check_range
from repdiff.sd.pipeline import decode_latents, encode_images, encode_prompts, guided_pass, renoise
from repdiff.sd.steering import brightness
from repdiff.theory import empirical_denoiser

__all__ = ["push_retention", "latent_gain", "check_push_claims", "check_gain_claims"]


@torch.no_grad()
def push_retention(pipe, images: torch.Tensor, prompts: Sequence[str], timesteps: Sequence[int], *,
                   blend: float = 0.2, target: float = 1.0, guidance: float = 7.5, seed: int = 0,
                   memorizer: torch.Tensor | None = None) -> np.ndarray:
    """How much of a push toward a flat colour one denoising pass keeps, per image (Chapter 14).

    Each image ``x`` is pushed to ``x' = (1 − blend)·x + blend·target`` (``target = 1``: mix in white). Both are
    VAE-encoded and noised to ``t`` with the same noise; one guided noise prediction turns each into a clean
    estimate ẑ₀ = (z_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, which is decoded. The retention is the brightness change the
    estimate keeps, divided by the brightness change of the push itself after the same VAE round trip:

        retention = [b(D(ẑ₀')) − b(D(ẑ₀))] / [b(D(z')) − b(D(z))],   b = mean brightness in [0, 1].

    A denoiser that pulls every noisy input back to a stored image undoes the push (retention 0), so a sampler
    built from it ignores a steering push; a denoiser that treats the pushed image as just another plausible
    image keeps it (retention near 1).

    Args:
        images: ``(N, 3, H, W)`` in [-1, 1].
        prompts: ``N`` prompts, the condition of each image (guided with the empty prompt, as in sampling).
        timesteps: training timesteps in ``[0, 1000)``.
        memorizer: optional ``(M, C, h, w)`` training latents (:func:`~repdiff.sd.pipeline.encode_images`): use
            the optimal denoiser of their empirical distribution (paper Eq. 3, a perfect memorizer) instead of
            the U-Net; ``prompts`` and ``guidance`` are then unused.
    Returns:
        ``(len(timesteps), N)`` retentions.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if len(prompts) != len(images):
        raise ValueError(f"need one prompt per image: {len(prompts)} prompts for {len(images)} images")
    if not 0 < blend <= 1:
        raise ValueError(f"blend must be in (0, 1], got {blend}")
    pushed = (1 - blend) * images + blend * target
    z, zp = encode_images(pipe, images, value_range=(-1, 1)), encode_images(pipe, pushed, value_range=(-1, 1))
    pushed_change = brightness(decode_latents(pipe, zp)) - brightness(decode_latents(pipe, z))
    if (np.abs(pushed_change) < 1e-4).any():
        raise ValueError("the push does not change some images' brightness (are they already the target colour?)")
    out = np.zeros((len(timesteps), len(images)))
    pairs = _paired_estimates(pipe, z, zp, prompts, timesteps, guidance=guidance, seed=seed, memorizer=memorizer)
    for k, (est, est_pushed) in enumerate(pairs):
        out[k] = (brightness(decode_latents(pipe, est_pushed)) - brightness(decode_latents(pipe, est))) / pushed_change
    return out


def _paired_estimates(pipe, z: torch.Tensor, z_moved: torch.Tensor, prompts: Sequence[str],
                      timesteps: Sequence[int], *, guidance: float, seed: int,
                      memorizer: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For the k-th timestep t: the one-pass clean estimates of ``z`` and ``z_moved`` ``(N, C, h, w)``, both
    noised to t with the same noise (a generator seeded ``seed + k``). Shared by :func:`push_retention` and
    :func:`latent_gain`; see :func:`_one_pass_estimate` for the U-Net and the memorizer."""
    stored = None
    if memorizer is not None:
        if memorizer.ndim != 4 or memorizer.shape[1:] != z.shape[1:]:
            raise ValueError(f"memorizer must be latents (M, {', '.join(map(str, z.shape[1:]))}), "
                             f"got {tuple(memorizer.shape)}")
        stored = memorizer.flatten(1).to(z)
    if all(p == "" for p in prompts):  # both branches are then the same pass: compute it once
        guidance = 0.0
    ctx = None if stored is not None else torch.cat([encode_prompts(pipe, [""] * len(prompts)),
                                                     encode_prompts(pipe, list(prompts))])
    for k, t in enumerate(timesteps):
        noisy = [renoise(pipe, x, int(t), torch.Generator(device=z.device).manual_seed(seed + k)) for x in (z, z_moved)]
        yield tuple(_one_pass_estimate(pipe, zt, int(t), ctx, guidance, stored) for zt in noisy)


def _one_pass_estimate(pipe, zt: torch.Tensor, t: int, ctx: torch.Tensor | None, guidance: float,
                       stored: torch.Tensor | None) -> torch.Tensor:
    """Clean estimate ẑ₀ ``(N, C, h, w)`` of one denoising pass from ``zt`` at timestep ``t``.

    With ``stored`` latents ``(M, D)``: the optimal denoiser of their empirical distribution (paper Eq. 3), on
    the VP latents z_t/√ᾱ = z₀ + σ ε with σ = √((1 − ᾱ)/ᾱ). Otherwise the guided U-Net, ``ctx`` holding the
    empty-prompt states of the ``N`` inputs followed by their prompts' states: ẑ₀ = (z_t − √(1 − ᾱ) ε̂) / √ᾱ.
    """
    a = pipe.scheduler.alphas_cumprod[t].to(zt)
    if stored is not None:
        sigma = float(noise.ve_sigma(a))
        return empirical_denoiser((zt / a.sqrt()).flatten(1), stored, sigma).reshape(zt.shape)
    if guidance == 0:  # the unconditional pass alone (the conditional one would be multiplied by 0)
        eps = pipe.unet(zt.to(pipe.unet.dtype), t, encoder_hidden_states=ctx[:len(zt)]).sample.to(zt)
    else:
        eps_u, eps_c = guided_pass(pipe, zt.to(pipe.unet.dtype), t, ctx)
        eps = noise.guided_eps(eps_u.to(zt), eps_c.to(zt), guidance)
    return noise.x0_from_eps(zt, eps, a)


@torch.no_grad()
def latent_gain(pipe, latents: torch.Tensor, prompts: Sequence[str], directions: torch.Tensor,
                timesteps: Sequence[int], *, step: float = 1.0, guidance: float = 7.5, seed: int = 0,
                memorizer: torch.Tensor | None = None) -> np.ndarray:
    """How much of a shift of the latent along a direction one denoising pass keeps (Chapter 14).

    Each latent ``z`` is shifted by ``step`` along its unit direction ``u = d / ‖d‖``; ``z`` and ``z + step·u``
    are noised to ``t`` with the same noise, and the gain is the part of the change of the clean estimate that
    lies along ``u``, per unit shift:

        gain = ⟨ẑ₀(z + step·u) − ẑ₀(z), u⟩ / step.

    0: the pass removes the shift (a perfect memorizer near its stored points, or a denoiser treating it as
    noise); 1: it passes the shift on in full. Where :func:`push_retention` follows one decoded attribute, this
    looks at any direction in latent space: a random one, the push toward white, or a constant per channel
    (the spatial mean of each latent channel). Draw random directions from another generator than the noise
    (``seed``): a direction parallel to the noise itself is not a shift the denoiser can tell from noise level.

    Args:
        latents: ``(N, C, h, w)`` clean latents (:func:`~repdiff.sd.pipeline.encode_images`).
        prompts: ``N`` prompts, one per latent (guided with the empty prompt, as in sampling).
        directions: ``(N, C, h, w)`` one direction per latent (any nonzero length).
        timesteps: training timesteps in ``[0, 1000)``.
        memorizer: optional ``(M, C, h, w)`` training latents: use the optimal denoiser of their empirical
            distribution (paper Eq. 3) instead of the U-Net; ``prompts`` and ``guidance`` are then unused.
    Returns:
        ``(len(timesteps), N)`` gains.
    """
    if latents.ndim != 4:
        raise ValueError(f"latents must have shape (N, C, h, w), got {tuple(latents.shape)}")
    if directions.shape != latents.shape:
        raise ValueError(f"directions must have the latents' shape {tuple(latents.shape)}, "
                         f"got {tuple(directions.shape)}")
    if len(prompts) != len(latents):
        raise ValueError(f"need one prompt per latent: {len(prompts)} prompts for {len(latents)} latents")
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    norms = directions.flatten(1).norm(dim=1)
    if (norms == 0).any():
        raise ValueError("every direction must be nonzero")
    u = (directions / norms.view(-1, 1, 1, 1)).to(latents)
    out = np.zeros((len(timesteps), len(latents)))
    pairs = _paired_estimates(pipe, latents, latents + step * u, prompts, timesteps, guidance=guidance, seed=seed,
                              memorizer=memorizer)
    for k, (est, est_shifted) in enumerate(pairs):
        out[k] = ((est_shifted - est) * u).flatten(1).sum(1).float().cpu().numpy() / step
    return out


def check_push_claims(held: float, copies: float, memorizer: float, *, tol: float = 0.01) -> None:
    """Check Chapter 14's reading of mean :func:`push_retention` values at one ``t``; raises
    ``repdiff.CheckFailed`` at a miss.

    One pass reverses the push on held-out samples (``held`` < 0; a pass that keeps it fails), keeps part of
    it on copies (0 < ``copies`` < 1; none or all fails), and the perfect memorizer keeps none
    (|``memorizer``| ≤ ``tol``; the U-Net's share on copies fails). With the default ``blend`` 0.2 a push
    changes brightness by at most 0.2, so 1 % of it is at most 0.002, half of one 8-bit grey level (1/255).
    """
    check_range("push kept by one pass, held-out samples (reversed)", held, high=-tol)
    check_range("push kept by one pass, copies (part of it)", copies, low=tol, high=1 - tol)
    check_range("push kept by the perfect memorizer (none)", abs(memorizer), high=tol)


def check_gain_claims(channel_means: float, random: float, min_per_group: int) -> None:
    """Check Chapter 14's reading of :func:`latent_gain`: no GroupNorm of the U-Net is an instance norm
    (``min_per_group`` ≥ 2 channels per group; one channel per group fails), yet a shift of the latent channel
    means keeps more of itself than a random shift (``channel_means`` > ``random``; equal gains fail)."""
    check_range("fewest channels per group among the U-Net's GroupNorms", min_per_group, low=2)
    check_range("latent gain: channel-mean shift minus random shift", channel_means - random, low=1e-6)
