"""Prompt-free memorization detection in a Stable Diffusion U-Net, and Wen et al.'s baseline (Chapter 13).

The paper's detector (Zhang et al., Algorithm 1): take a generated image, encode it with the VAE, add noise
at a small timestep t (t = 10 for SD v1.4), run **one** U-Net pass with the **empty prompt**, read the
activation of one inner layer, pool it over space, and score it by its standard deviation: memorized images
give spiky (high-Std) representations, generalized ones balanced (low-Std) ones.

The paper's layer is the post-``norm2`` activation of ``up_blocks.0.resnets.2`` (SiLU(GroupNorm2(.)) in
diffusers' ``ResnetBlock2D``). The shared ``nonlinearity`` module of a resnet is called three times per
forward pass (after ``norm1``, on the time embedding, after ``norm2``), so we read it unambiguously as
the **input of that resnet's ``conv2``** (dropout is the identity in eval mode): the site name
``"<resnet>.post_norm2"`` of :mod:`repdiff.representations`.

The baseline (Wen et al., ICLR 2024) needs the prompt: the norm of the text-conditional part of the noise
prediction, ``‖ε(x_t, c) − ε(x_t, ∅)‖₂``, at the first sampling step or averaged over all of them.

Everything here works with any ``StableDiffusionPipeline``: the course's tiny model on a CPU, or SD v1.4 on a
GPU (:mod:`repdiff.sd.hub`); the pipeline's stages (encoding, re-noising, the guided pass) are
:mod:`repdiff.sd.pipeline`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from repdiff.metrics import participation_ratio, representation_std
from repdiff.sd.pipeline import ValueRange, encode_images, encode_prompts, features_at_t, guided_pass

__all__ = ["DETECTION_SITE", "SCORES", "spikiness", "detector_scores", "wen_scores", "best_cells"]

#: the paper's detection site for SD v1.4: post-norm2 activation of the last resnet of the first up block
DETECTION_SITE = "up_blocks.0.resnets.2.post_norm2"
SCORES = ("std", "inv_pr", "l4_l2")


def spikiness(h: torch.Tensor | np.ndarray, score: str = "std") -> np.ndarray:
    """Score pooled representations ``(B, C)`` → ``(B,)``; higher = spikier = "memorized".

    ``"std"``: population Std (the paper's score); ``"inv_pr"``: C / participation ratio (1 for a flat
    vector, C for a one-hot one; scale-free); ``"l4_l2"``: ‖h‖₄ / ‖h‖₂ (also scale-free).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    h = torch.as_tensor(h).double()
    if h.ndim != 2:
        raise ValueError(f"expected pooled representations of shape (B, C), got {tuple(h.shape)}")
    if not torch.isfinite(h).all():
        raise ValueError("representations contain NaN or infinity")
    if score == "std":
        out = representation_std(h)
    elif score == "inv_pr":
        pr = participation_ratio(h)
        if (pr <= 0).any():
            raise ValueError("an all-zero representation has no participation ratio")
        out = h.shape[1] / pr
    else:
        l2 = h.norm(dim=1)
        if (l2 <= 0).any():
            raise ValueError("an all-zero representation has no ‖h‖₄/‖h‖₂")
        out = h.norm(p=4, dim=1) / l2
    return out.cpu().numpy()


def detector_scores(pipe, images, *, site: str = DETECTION_SITE, t: int = 10, pooling: str = "max",
                    score: str = "std", seed: int = 0, batch_size: int = 100,
                    value_range: ValueRange = None) -> tuple[np.ndarray, float]:
    """The paper's prompt-free detector on finished images (Chapter 13, Assignment 3).

    VAE-encode (posterior sample) → re-noise at ``t`` → one U-Net pass with the empty prompt → pooled
    activation at ``site`` → spikiness. ``images``: ``(N, 3, H, W)`` float in [-1, 1] by default; diffusers'
    [0, 1] outputs with ``value_range=(0, 1)``, uint8 or PIL images as they are
    (:func:`~repdiff.sd.pipeline.as_model_images`, which raises on a range that does not match).
    Returns ``(scores (N,), seconds per image)``.
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    z = encode_images(pipe, images, generator=gen, batch_size=batch_size, value_range=value_range)
    h = features_at_t(pipe, z, [site], t=t, pooling=pooling, seed=seed, batch_size=batch_size)[(site, pooling)]
    s = spikiness(h, score)
    return s, (time.perf_counter() - t0) / len(z)


def wen_scores(pipe, prompts: Sequence[str], *, steps: int = 30, seed: int = 0,
               batch_size: int = 100) -> tuple[np.ndarray, float]:
    """Wen et al.'s score from the first sampling step only (two U-Net evaluations per prompt).

    Same initial noise as :func:`repdiff.sd.pipeline.generate` with the same ``seed``. Returns
    ``(‖ε(x_T, c) − ε(x_T, ∅)‖₂ per prompt, seconds per prompt)``.
    """
    t0 = time.perf_counter()
    unet, sched = pipe.unet, pipe.scheduler
    gen = torch.Generator().manual_seed(seed)
    c, s = unet.config.in_channels, unet.config.sample_size
    lat_all = torch.randn((len(prompts), c, s, s), generator=gen)
    sched.set_timesteps(steps, device=unet.device)
    t = sched.timesteps[0]
    empty = encode_prompts(pipe, [""])
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            p = list(prompts[i:i + batch_size])
            lat = lat_all[i:i + batch_size].to(unet.device, unet.dtype) * sched.init_noise_sigma
            ctx = torch.cat([empty.expand(len(p), -1, -1), encode_prompts(pipe, p)])
            e_u, e_c = guided_pass(pipe, sched.scale_model_input(lat, t), t, ctx)
            out.append((e_c - e_u).float().flatten(1).norm(dim=1).cpu())
    return torch.cat(out).numpy(), (time.perf_counter() - t0) / len(prompts)


def best_cells(auroc: dict, *, tol: float = 1e-9) -> list:
    """The keys of ``auroc`` (e.g. :func:`repdiff.sd.screening.layer_sweep`'s ``{(site, t, pooling): AUROC}``)
    whose value is within ``tol`` of the largest, in the dict's order (Chapter 13). ``max(d, key=d.get)``
    returns only the first of a tie; this returns all of them, so a chapter can say how many cells tie."""
    if not auroc:
        raise ValueError("need at least one cell")
    top = max(auroc.values())
    return [k for k, v in auroc.items() if v >= top - tol]
