"""The parts of a Stable Diffusion pipeline, stage by stage, named as in diffusers (Chapters 12-14).

Each function takes any ``StableDiffusionPipeline`` (the course's tiny model on a CPU, or SD v1.4 on a GPU,
:mod:`repdiff.sd.hub`) and does one stage of what ``pipe(prompts)`` does, so that the chapters can read the
U-Net on the way:

- :func:`encode_prompts`: text-encoder states of prompts (``""``: the empty prompt).
- :func:`as_model_images`, :func:`encode_images`, :func:`decode_latents`: images ↔ VAE latents.
- :func:`renoise`: forward-noise clean latents to a timestep t.
- :func:`guided_pass`: one U-Net pass on the unconditional and conditional halves of a batch.
- :func:`generate`: the classifier-free-guided DDIM loop, recording Wen et al.'s score on the way.
- :func:`clean_estimate_error`: how well one pass recovers clean latents (Chapter 12).
- :func:`features_at_t`: pooled U-Net activations of re-noised latents (the detector's and steering's
  representations; hooks and pooling from :mod:`repdiff.representations`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from repdiff import noise
from repdiff.representations import POOLINGS, ActivationRecorder, pool

__all__ = [
    "encode_prompts",
    "as_model_images",
    "encode_images",
    "decode_latents",
    "renoise",
    "guided_pass",
    "Generation",
    "generate",
    "clean_estimate_error",
    "features_at_t",
]


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Text-encoder hidden states ``(B, L, D)`` for a list of prompts (``""`` = the empty prompt)."""
    tok = pipe.tokenizer(list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    dev = pipe.unet.device
    return pipe.text_encoder(tok.input_ids.to(dev))[0].to(pipe.unet.dtype)


ValueRange = tuple[float, float] | None


def _range_of(images, value_range: ValueRange) -> tuple[torch.Tensor, tuple[float, float], bool]:
    """(float tensor in the input's layout, declared range, was the range declared) for PIL/uint8/float input."""
    if isinstance(images, (list, tuple)) and images and hasattr(images[0], "convert"):  # PIL images
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    if hasattr(images, "convert"):
        images = np.asarray(images.convert("RGB"))[None]
    x = torch.as_tensor(np.asarray(images) if isinstance(images, (list, tuple)) else images)
    if x.dtype == torch.uint8:
        if value_range not in (None, (0, 255)):
            raise ValueError(f"uint8 images hold values in [0, 255], not in the declared value_range {value_range}")
        return x.float(), (0.0, 255.0), True
    if not x.is_floating_point():
        raise ValueError(f"images must be float, uint8 or PIL images, got dtype {x.dtype}")
    if value_range is None:
        return x.float(), (-1.0, 1.0), False
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return x.float(), (lo, hi), True


def as_model_images(images, value_range: ValueRange = None) -> torch.Tensor:
    """Finished images in any of the ecosystem's conventions → ``(N, 3, H, W)`` float32 in [-1, 1] (Ch. 12-14).

    Accepts a float tensor or array ``(N, 3, H, W)`` or ``(N, H, W, 3)`` (diffusers' ``output_type="pt"`` and
    ``"np"`` give [0, 1]), a uint8 tensor or array (``[0, 255]``), or a list of PIL images. ``value_range``
    declares the range of float input: ``(-1, 1)`` (the course's and the VAE's convention), ``(0, 1)``
    (diffusers' outputs, ``torchvision``'s ``ToTensor``), or ``None``: the course's (-1, 1), checked.

    Raises ``ValueError`` when the values leave the declared range by more than 2.5 % of its width (a
    [-1, 1] tensor declared (0, 1)), and, with ``value_range=None``, when a batch of float images has no
    negative value at all: [0, 1] images taken for [-1, 1] ones would look washed out to the VAE and shift
    every score without an error (on the tiny model, from an AUROC of 0.998 to 0.81). Declare
    ``value_range=(-1, 1)`` to pass such a batch on purpose.
    """
    x, (lo, hi), declared = _range_of(images, value_range)
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("no images given")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinity")
    tol = 0.025 * (hi - lo)
    if float(x.min()) < lo - tol or float(x.max()) > hi + tol:
        raise ValueError(f"images hold values in [{float(x.min()):.3g}, {float(x.max()):.3g}], outside the declared "
                         f"value_range ({lo:g}, {hi:g}); pass the range the images are in")
    if not declared and float(x.min()) >= 0:
        raise ValueError("these float images have no negative value: they look like [0, 1] images (diffusers' "
                         "output_type='pt' or 'np'), but [-1, 1] is assumed; pass value_range=(0, 1), or "
                         "value_range=(-1, 1) if they really are [-1, 1] images")
    return (2 * (x - lo) / (hi - lo) - 1).clamp(-1, 1).contiguous()


@torch.no_grad()
def encode_images(pipe, images, generator: torch.Generator | None = None, batch_size: int = 64, *,
                  value_range: ValueRange = None) -> torch.Tensor:
    """VAE latents ``(N, C, h, w)`` (× ``scaling_factor``) of finished images; a sample of the posterior.

    ``images`` and ``value_range`` as in :func:`as_model_images` (default: float ``(N, 3, H, W)`` in [-1, 1],
    checked). With ``generator=None`` the posterior mean is used (deterministic).
    """
    images = as_model_images(images, value_range)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(pipe.vae.device, pipe.vae.dtype)
        post = pipe.vae.encode(x).latent_dist
        z = post.mean if generator is None else post.mean + post.std * torch.randn(
            post.mean.shape, generator=generator, device=generator.device).to(post.mean)
        out.append(z * pipe.vae.config.scaling_factor)
    return torch.cat(out)


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` float32 in [-1, 1] on the CPU from latents ``(N, C, h, w)`` (× ``scaling_factor``).

    The inverse of :func:`encode_images`. ``decode_latents(pipe, encode_images(pipe, x))`` is what the VAE makes
    of ``x``: the best a copy of ``x`` can look like after generation (Chapters 12 and 14 compare generations
    with these reconstructions).
    """
    if latents.ndim != 4:
        raise ValueError(f"latents must have shape (N, C, h, w), got {tuple(latents.shape)}")
    vae = pipe.vae
    out = [vae.decode(latents[i:i + batch_size].to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
           for i in range(0, len(latents), batch_size)]
    return torch.cat(out).float().clamp(-1, 1).cpu()


def renoise(pipe, latents: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """Forward-noise clean latents ``(N, C, h, w)`` to timestep ``t``: √ᾱ_t z + √(1 − ᾱ_t) ε (SD's VP form)."""
    n_train = pipe.scheduler.config.num_train_timesteps
    if not 0 <= int(t) < n_train:
        raise ValueError(f"t must be an integer timestep in [0, {n_train}), got {t}")
    eps = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents)
    return pipe.scheduler.add_noise(latents, eps, torch.tensor([int(t)], device=latents.device))


def guided_pass(pipe, latents: torch.Tensor, t, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One U-Net pass on both halves of a classifier-free-guidance batch: ``(ε̂_∅, ε̂_c)``, each ``(B, C, h, w)``.

    ``latents`` ``(B, C, h, w)`` are evaluated twice in one batch, with ``context`` ``(2B, L, D)`` holding
    the empty prompt's states for the first ``B`` and the prompts' states for the last ``B``
    (:func:`encode_prompts`). Combine the halves with :func:`repdiff.noise.guided_eps`. Chapters 12-14.
    """
    if len(context) != 2 * len(latents):
        raise ValueError(f"context must hold 2 x {len(latents)} states (empty prompt, then prompts), "
                         f"got {len(context)}")
    eps_uncond, eps_cond = pipe.unet(torch.cat([latents, latents]), t, encoder_hidden_states=context).sample.chunk(2)
    return eps_uncond, eps_cond


@dataclass
class Generation:
    """What :func:`generate` returns.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in [-1, 1] on the CPU.
        wen_first: ``(N,)`` ‖ε(x_T, c) − ε(x_T, ∅)‖₂ at the first step (Wen et al., one step).
        wen_mean: ``(N,)`` the same norm averaged over all steps.
        first_step: ``site -> (N, C)`` pooled conditional-branch representations at the first step.
        seconds_per_sample: wall time of the generation, per image.
        latents0: ``(N, C, h, w)`` the initial noise of each prompt (pass it back as ``latents=`` to
            start again from the same noise).
        latents_at: ``(N, C, h, w)`` the latents entering step ``keep_step`` (``None`` unless asked for);
            :func:`generate` with ``start_step=keep_step, latents=latents_at`` finishes the same samples.
    """

    images: torch.Tensor
    wen_first: np.ndarray
    wen_mean: np.ndarray
    first_step: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds_per_sample: float = float("nan")
    latents0: torch.Tensor | None = None
    latents_at: torch.Tensor | None = None


@torch.no_grad()
def generate(pipe, prompts: Sequence[str], *, steps: int = 30, guidance: float = 7.5, seed: int = 0,
             batch_size: int = 100, first_step_sites: Sequence[str] = (), first_step_pooling: str = "max",
             progress: bool = False, latents: torch.Tensor | None = None, keep_step: int | None = None,
             start_step: int = 0) -> Generation:
    """Classifier-free-guided DDIM sampling with the pipeline's parts, recording Wen et al.'s score.

    The same computation as ``pipe(prompts, num_inference_steps=steps, guidance_scale=guidance)`` (the
    unconditional and conditional halves in one batch, ε = ε_∅ + w(ε_c − ε_∅)), written out so that the norm
    ‖ε_c − ε_∅‖ and first-step representations can be read on the way. One ``torch.Generator`` seeded
    ``seed`` draws the initial noise of all prompts in order, so a prompt's noise depends on its place in
    the list; ``latents`` (shape ``(len(prompts), C, H, W)``, the U-Net's latent shape) gives each prompt
    its own starting noise instead, e.g. ``Generation.latents0[idx]`` of an earlier run (Chapter 14 steers
    prompts from the very noise under which they were screened).

    ``keep_step=k`` also returns the latents entering step ``k``; ``start_step=k`` with those as ``latents``
    runs only steps ``k, k+1, ...`` (DDIM is deterministic, so the result is the sample a full run gives).
    Chapter 14 steers only late steps, and so shares the early ones between all strengths.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 <= start_step < steps or (keep_step is not None and not start_step <= keep_step < steps):
        raise ValueError(f"need 0 <= start_step <= keep_step < steps, got {start_step}, {keep_step}, {steps}")
    if start_step and latents is None:
        raise ValueError("start_step > 0 needs the latents entering that step (Generation.latents_at)")
    unet, sched = pipe.unet, pipe.scheduler
    dev, dtype = unet.device, unet.dtype
    gen = torch.Generator().manual_seed(seed)
    c, s = unet.config.in_channels, unet.config.sample_size
    if latents is None:
        latents0 = torch.randn((len(prompts), c, s, s), generator=gen)
    elif tuple(latents.shape) != (len(prompts), c, s, s):
        raise ValueError(f"latents must have shape {(len(prompts), c, s, s)} (one per prompt), "
                         f"got {tuple(latents.shape)}")
    else:
        latents0 = latents.detach().float().cpu()
    empty = encode_prompts(pipe, [""])
    images, wen_first, wen_mean, kept = [], [], [], []
    first: dict[str, list[torch.Tensor]] = {site: [] for site in first_step_sites}
    t0 = time.perf_counter()
    batches = range(0, len(prompts), batch_size)
    if progress:
        batches = tqdm(batches, desc="generating")
    for i in batches:
        p = list(prompts[i:i + batch_size])
        cond = encode_prompts(pipe, p)
        ctx = torch.cat([empty.expand(len(p), -1, -1), cond])
        sched.set_timesteps(steps, device=dev)
        lat = latents0[i:i + batch_size].to(dev, dtype) * (sched.init_noise_sigma if start_step == 0 else 1)
        norms = []
        for k, t in enumerate(sched.timesteps):
            if k < start_step:
                continue
            if k == keep_step:
                kept.append(lat.float().cpu())
            inp = sched.scale_model_input(lat, t)
            if k == start_step and first_step_sites:
                with ActivationRecorder(unet, first_step_sites, keep="all") as rec:
                    e_u, e_c = guided_pass(pipe, inp, t, ctx)
                for site in first_step_sites:
                    first[site].append(pool(rec[site][0][len(p):].float(), first_step_pooling).cpu())
            else:
                e_u, e_c = guided_pass(pipe, inp, t, ctx)
            norms.append((e_c - e_u).float().flatten(1).norm(dim=1).cpu())
            lat = sched.step(noise.guided_eps(e_u, e_c, guidance), t, lat).prev_sample
        images.append(decode_latents(pipe, lat))
        wen_first.append(norms[0])
        wen_mean.append(torch.stack(norms).mean(0))
    elapsed = time.perf_counter() - t0
    return Generation(
        images=torch.cat(images), wen_first=torch.cat(wen_first).numpy(), wen_mean=torch.cat(wen_mean).numpy(),
        first_step={site: torch.cat(v) for site, v in first.items()},
        seconds_per_sample=elapsed / max(1, len(prompts)), latents0=latents0,
        latents_at=torch.cat(kept) if kept else None,
    )


@torch.no_grad()
def clean_estimate_error(pipe, latents: torch.Tensor, prompts: Sequence[str], timesteps: Sequence[int], *,
                         seed: int = 0, batch_size: int = 100) -> np.ndarray:
    """How well one U-Net pass recovers clean latents from noise, given a prompt (Chapter 12).

    Each latent is noised to each timestep t (the same noise for every call with the same ``seed``, so
    different prompts are compared on identical noisy inputs), the noise prediction is turned into the
    one-step estimate of the clean latent, ẑ₀ = (z_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, and the error is reported
    relative to the latent's own energy, ‖ẑ₀ − z₀‖² / ‖z₀‖².

    At large t almost nothing of z₀ is left in z_t, so a small error there means the model produces the image
    from the prompt alone (recall); at moderate t it can also complete the image from what is left of it.

    Args:
        latents: ``(N, C, h, w)`` clean latents (:func:`encode_images`).
        prompts: ``N`` prompts, one per latent (``""`` for the unconditional branch).
        timesteps: training timesteps in ``[0, 1000)``.
    Returns:
        ``(len(timesteps), N)`` relative errors (0: exact; about 1: no better than predicting zero).
    """
    if latents.ndim != 4:
        raise ValueError(f"latents must have shape (N, C, h, w), got {tuple(latents.shape)}")
    if len(prompts) != len(latents):
        raise ValueError(f"need one prompt per latent: {len(prompts)} prompts for {len(latents)} latents")
    alphas = pipe.scheduler.alphas_cumprod
    out = np.zeros((len(timesteps), len(latents)))
    for k, t in enumerate(timesteps):
        zt = renoise(pipe, latents, int(t), torch.Generator(device=latents.device).manual_seed(seed + k))
        a = alphas[int(t)].to(latents)
        for i in range(0, len(latents), batch_size):
            ctx = encode_prompts(pipe, prompts[i:i + batch_size])
            zb = zt[i:i + batch_size].to(pipe.unet.dtype)
            eps = pipe.unet(zb, int(t), encoder_hidden_states=ctx).sample.to(latents)
            z0_hat = noise.x0_from_eps(zt[i:i + batch_size], eps, a)
            z0 = latents[i:i + batch_size]
            err = (z0_hat - z0).square().flatten(1).sum(1) / z0.square().flatten(1).sum(1)
            out[k, i:i + batch_size] = err.float().cpu().numpy()
    return out


@torch.no_grad()
def features_at_t(pipe, latents: torch.Tensor, sites: Sequence[str], *, t: int = 10, prompt: str = "",
                  pooling: str | Sequence[str] = "max", seed: int = 0,
                  batch_size: int = 100) -> dict[tuple[str, str], torch.Tensor]:
    """Pooled U-Net activations of clean latents ``(N, C, h, w)`` re-noised to ``t``: one pass per latent.

    Each pass is conditioned on ``prompt`` (default ``""``: the paper's prompt-free setting) and reads the
    first call of every site (:class:`repdiff.representations.ActivationRecorder`). Returns
    ``{(site, pooling): (N, C)}``; ``pooling="none"`` keeps the map, ``(N, C, H, W)`` (Chapter 14's spatial
    steering vectors). Chapters 13-14 (the detector, concept vectors, layer sweeps).
    """
    poolings = [pooling] if isinstance(pooling, str) else list(pooling)
    for p in poolings:
        if p != "none" and p not in POOLINGS:
            raise ValueError(f"pooling must be 'none' or one of {POOLINGS}, got {p!r}")
    unet = pipe.unet
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ctx1 = encode_prompts(pipe, [prompt])
    out: dict[tuple[str, str], list[torch.Tensor]] = {(s, p): [] for s in sites for p in poolings}
    for i in range(0, len(latents), batch_size):
        zt = renoise(pipe, latents[i:i + batch_size].to(unet.device, unet.dtype), t, gen)
        with ActivationRecorder(unet, sites, keep="all") as rec:
            unet(zt, int(t), encoder_hidden_states=ctx1.expand(len(zt), -1, -1))
        for s in sites:
            for p in poolings:
                h = rec[s][0].float()
                out[(s, p)].append((h if p == "none" else pool(h, p)).cpu())
    return {k: torch.cat(v) for k, v in out.items()}
