"""Small diffusers U-Nets for Part III: construction from a recipe, noise parametrisations, sampling, loading.

A *recipe* (a JSON file; :mod:`repdiff.unets.train` trains one) has a ``model`` entry (keyword arguments of
``diffusers.UNet2DModel``, merged over :data:`DEFAULT_MODEL`) and a ``scheduler`` entry (of
``diffusers.DDIMScheduler``, merged over :data:`DEFAULT_SCHEDULER`). The network predicts the noise ε
(the standard DDPM objective) on the variance-preserving (VP) chain x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

The rest of the course speaks the variance-exploding (VE) language x = x_0 + σ ε of Chapters 1-8. The two
are the same family of noisy images up to a scale (Chapter 9 derives it):

    σ_t = √((1 − ᾱ_t)/ᾱ_t),   x_VE = x_t / √ᾱ_t,   x̂_0 = x_VE − σ_t ε̂.

- :func:`build_unet`, :func:`build_scheduler`: the model and its noise schedule from a recipe (Chapter 9).
- :func:`ve_sigmas`, :func:`eps_to_x0`, :func:`x0_to_eps`: the parametrisation helpers (Chapter 9).
- :class:`UNetDenoiser`: ``denoiser(x, sigma) → x̂_0`` for :func:`repdiff.sampling.sample` (Chapters 9-11).
- :func:`generate`: samples with the checkpoint's own saved scheduler (DDIM, 50 steps by default).
- :func:`ddim_vp_and_ve`: the same DDIM run by diffusers (VP) and by :func:`repdiff.sampling.sample` (VE).
- :func:`check_memorization_sweep`: Chapter 10's checks of the memorization fraction at every N.
- :func:`save_pipeline`, :func:`load_pipeline`: diffusers pipeline folders (``save_pretrained`` /
  ``DiffusionPipeline.from_pretrained``), safetensors weights, loadable offline (Chapters 9-11).

diffusers is imported inside the functions, so ``import repdiff`` works without it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from repdiff.noise import ve_sigma
from repdiff.notebook import check_range
from repdiff.sampling import sample

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SCHEDULER",
    "model_config",
    "scheduler_config",
    "build_unet",
    "build_scheduler",
    "ve_sigmas",
    "eps_to_x0",
    "x0_to_eps",
    "UNetDenoiser",
    "generate",
    "save_pipeline",
    "load_pipeline",
    "count_parameters",
    "ddim_vp_and_ve",
    "check_memorization_sweep",
]

#: A small U-Net for 16×16 grey images: three resolutions (16, 8, 4), one ResNet block per level, attention
#: only in the middle block (at 4×4). 671,137 parameters (2.7 MB in float32).
DEFAULT_MODEL: dict[str, Any] = {
    "block_out_channels": [32, 48, 48],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}

#: The noise schedule: 1,000 steps of the cosine schedule (Nichol & Dhariwal 2021), ε-prediction, and DDIM
#: sampling that clips its x̂_0 estimate to the data range [−1, 1].
DEFAULT_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "set_alpha_to_one": True,
    "timestep_spacing": "leading",
}


def model_config(recipe: dict[str, Any], image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """``UNet2DModel`` keyword arguments: :data:`DEFAULT_MODEL`, then the recipe's ``model`` entry, then the shape.

    ``image_shape`` is ``(C, H, W)`` of the training images (square, H = W).
    """
    c, h, w = image_shape
    if h != w:
        raise ValueError(f"the U-Net expects square images, got {h}×{w}")
    cfg = copy.deepcopy(DEFAULT_MODEL)
    cfg.update(copy.deepcopy(recipe.get("model", {})))
    levels = len(cfg["block_out_channels"])
    if h % 2 ** (levels - 1) != 0:
        raise ValueError(f"{levels} resolution levels need a side divisible by {2 ** (levels - 1)}, got {h}")
    if len(cfg["down_block_types"]) != levels or len(cfg["up_block_types"]) != levels:
        raise ValueError("block_out_channels, down_block_types and up_block_types must have the same length")
    cfg.update(sample_size=h, in_channels=c, out_channels=c)
    return cfg


def scheduler_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """``DDIMScheduler`` keyword arguments: :data:`DEFAULT_SCHEDULER` updated by the recipe's ``scheduler`` entry."""
    cfg = copy.deepcopy(DEFAULT_SCHEDULER)
    cfg.update(copy.deepcopy(recipe.get("scheduler", {})))
    if cfg["prediction_type"] != "epsilon":
        raise ValueError("the course's U-Nets predict the noise: scheduler.prediction_type must be 'epsilon'")
    return cfg


def build_unet(recipe: dict[str, Any], image_shape: tuple[int, int, int]) -> torch.nn.Module:
    """A freshly initialised ``diffusers.UNet2DModel`` for images of shape ``(C, H, W)`` (Chapter 9)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**model_config(recipe, image_shape))


def build_scheduler(recipe: dict[str, Any]):
    """The recipe's ``diffusers.DDIMScheduler`` (its ᾱ_t serve training; its DDIM loop serves sampling)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config(recipe))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def ve_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """VE noise level of every step of a schedule: :func:`repdiff.noise.ve_sigma` in float64 (Chapters 9-11).

    Shape ``(T,)`` → ``(T,)``, increasing; σ_t = √((1 − ᾱ_t)/ᾱ_t).
    """
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    if a.ndim != 1:
        raise ValueError(f"alphas_cumprod must be a 1-D tensor (T,), got shape {tuple(a.shape)}")
    return ve_sigma(a)


def eps_to_x0(x_ve: torch.Tensor, eps: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """x̂_0 = x − σ ε̂ in VE coordinates (Tweedie's formula for a noise predictor). Shapes ``(N, ...)``."""
    return x_ve - _as_col(sigma, x_ve) * eps


def x0_to_eps(x_ve: torch.Tensor, x0: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """ε̂ = (x − x̂_0)/σ in VE coordinates, the inverse of :func:`eps_to_x0`. Shapes ``(N, ...)``; σ > 0."""
    s = _as_col(sigma, x_ve)
    if (s <= 0).any():
        raise ValueError("sigma must be > 0")
    return (x_ve - x0) / s


def _as_col(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 1:
        s = s.view(-1, *([1] * (like.ndim - 1)))
    if not torch.isfinite(s).all():
        raise ValueError("sigma must be finite")
    return s


class UNetDenoiser(torch.nn.Module):
    """A noise-predicting U-Net seen as a VE denoiser ``f(x, σ) → x̂_0`` (Chapters 9-11).

    For σ between two training steps the timestep fed to the U-Net is interpolated linearly in log σ (the
    U-Net's sinusoidal time embedding accepts fractional timesteps). σ outside
    ``[sigma_min, sigma_max]`` raises.

    Args:
        unet: a ``UNet2DModel`` predicting ε.
        alphas_cumprod: ``(T,)`` ᾱ_t of its training schedule (``scheduler.alphas_cumprod``).
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        sig = ve_sigmas(alphas_cumprod)
        self.register_buffer("log_sigmas", sig.log(), persistent=False)
        self.sigma_min = float(sig[0])
        self.sigma_max = float(sig[-1])

    def timestep(self, sigma: float) -> float:
        """The fractional training step t with σ_t = σ."""
        if not self.sigma_min <= sigma <= self.sigma_max * (1 + 1e-9):
            raise ValueError(
                f"sigma = {sigma:.4g} is outside the trained range [{self.sigma_min:.4g}, {self.sigma_max:.4g}]"
            )
        ls = self.log_sigmas
        target = torch.tensor(math.log(sigma), dtype=ls.dtype, device=ls.device)
        i = int(torch.searchsorted(ls, target).clamp(1, len(ls) - 1))
        w = float((target - ls[i - 1]) / (ls[i] - ls[i - 1]))
        return (i - 1) + min(max(w, 0.0), 1.0)

    def predict_eps(self, x_ve: torch.Tensor, sigma: float) -> torch.Tensor:
        """ε̂ for VE inputs ``x_ve`` ``(N, C, H, W)`` at level σ (the U-Net sees x_ve/√(1+σ²))."""
        if x_ve.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x_ve.shape)}")
        t = self.timestep(float(sigma))
        x_vp = x_ve / math.sqrt(1 + float(sigma) ** 2)
        ts = torch.full((x_ve.shape[0],), t, device=x_ve.device, dtype=torch.float32)
        return self.unet(x_vp, ts).sample

    def forward(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """x̂_0 = x − σ ε̂(x, σ); ``x`` ``(N, C, H, W)`` → same shape."""
        return eps_to_x0(x, self.predict_eps(x, sigma), float(sigma))


@torch.no_grad()
def generate(
    pipeline: Any,
    n: int,
    *,
    seed: int = 0,
    num_inference_steps: int = 50,
    noise: torch.Tensor | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> torch.Tensor:
    """Sample with a checkpoint's own saved scheduler (DDIM, η = 0): ``(n, C, H, W)`` in [−1, 1] (Chapters 9-11).

    This is the loop of ``DDIMPipeline.__call__`` without the conversion to [0, 1] images: the scheduler's
    ``set_timesteps``, then one U-Net call and one ``scheduler.step`` per step. The starting noise comes from
    a CPU generator seeded with ``seed`` (so the same seed gives the same noise on any device) unless
    ``noise`` ``(n, C, H, W)`` is given, e.g. to compare two models from the same initial noise.
    """
    unet, scheduler = pipeline.unet, copy.deepcopy(pipeline.scheduler)
    c, s = unet.config.in_channels, unet.config.sample_size
    if noise is None:
        noise = torch.randn((n, c, s, s), generator=torch.Generator().manual_seed(seed))
    if noise.shape != (n, c, s, s):
        raise ValueError(f"noise must have shape {(n, c, s, s)}, got {tuple(noise.shape)}")
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    scheduler.set_timesteps(num_inference_steps)
    out = []
    bar = tqdm(total=math.ceil(n / batch_size) * len(scheduler.timesteps), desc="sampling", disable=not progress,
               leave=False)
    for start in range(0, n, batch_size):
        x = noise[start : start + batch_size].to(device=device, dtype=dtype) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = unet(x, t).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            bar.update(1)
        out.append(x.float().clamp(-1, 1).cpu())
    bar.close()
    return torch.cat(out)


def save_pipeline(unet: torch.nn.Module, scheduler: Any, path: str | Path) -> Path:
    """Save U-Net and scheduler as a ``DDIMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``)."""
    from diffusers import DDIMPipeline

    DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(path), safe_serialization=True)
    return Path(path)


def load_pipeline(path: str | Path, device: str | torch.device = "cpu"):
    """Load a shipped checkpoint folder with ``DiffusionPipeline.from_pretrained`` (offline), in eval mode."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a diffusers pipeline folder (no model_index.json). Train it with "
            f"`python -m repdiff.unets.train {path / 'recipe.json'}` or use a clone of the repository that ships data/."
        )
    pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    pipe.unet.to(device).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def ddim_vp_and_ve(
    pipeline: Any, noise: torch.Tensor, steps: int, *, sigma_kind: str = "ve"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same deterministic DDIM run two ways, from the same noise ``(n, C, H, W)`` (Chapter 9).

    Returns ``(x_vp, x_ve)``: diffusers' ``DDIMScheduler`` (η = 0, x̂_0 clipping off) on the VP chain, and
    :func:`repdiff.sampling.sample` with :class:`UNetDenoiser` on the VE chain at the scheduler's steps.
    ``sigma_kind="ve"`` uses σ_t = √((1 − ᾱ_t)/ᾱ_t) (correct); ``"vp"`` uses the VP noise std √(1 − ᾱ_t)
    instead (floored at the smallest trained σ), the natural wrong answer that a negative-control test
    feeds the same comparison.
    """
    from diffusers import DDIMScheduler

    if sigma_kind not in ("ve", "vp"):
        raise ValueError(f"sigma_kind must be 've' or 'vp', got {sigma_kind!r}")
    sched = DDIMScheduler.from_config(pipeline.scheduler.config, clip_sample=False)
    sched.set_timesteps(steps)
    unet = pipeline.unet
    x = noise.clone()
    for tt in sched.timesteps:
        x = sched.step(unet(x, tt).sample, tt, x, eta=0.0).prev_sample
    ts = sched.timesteps.long()
    abar = sched.alphas_cumprod.double()
    sig_ve = ve_sigmas(abar)
    sig = sig_ve
    if sigma_kind == "vp":  # kept inside the trained range, so the denoiser accepts it
        sig = torch.maximum((1 - abar).sqrt(), sig_ve[0])
    sig_sched = torch.cat([sig[ts], torch.zeros(1, dtype=torch.float64)])
    den = UNetDenoiser(unet, sched.alphas_cumprod)
    start = noise * math.sqrt(1 + float(sig_ve[ts[0]]) ** 2)
    x_ve = sample(den, start, sig_sched, progress=False)
    return x, x_ve


def check_memorization_sweep(
    fracs: dict[int, float], *, copies_up_to: int, most_at: int, none_from: int, copy_level: float = 0.95,
    most_level: float = 0.5, none_level: float = 0.1,
) -> None:
    """Chapter 10's claims about memorization fractions over training-set sizes N (``{N: fraction}``).

    Checks, each with :func:`repdiff.check_range` (so each prints and raises :class:`repdiff.CheckFailed`):
    the fraction is ≥ ``copy_level`` at every N ≤ ``copies_up_to``; ≥ ``most_level`` at ``most_at``;
    ≤ ``none_level`` at every N ≥ ``none_from``; and it falls by more than half between ``most_at`` and
    ``none_from`` (the switch). A shuffled or flat curve fails (``tests/test_negative_controls_part23.py``).
    """
    if most_at not in fracs or not copies_up_to < most_at < none_from:
        raise ValueError(f"need copies_up_to < most_at < none_from with most_at in fracs, got "
                         f"{copies_up_to}, {most_at}, {none_from} and sizes {sorted(fracs)}")
    for N in sorted(fracs):
        if N <= copies_up_to:
            check_range(f"memorization fraction at N = {N}", fracs[N], low=copy_level)
        elif N >= none_from:
            check_range(f"memorization fraction at N = {N}", fracs[N], high=none_level)
    check_range(f"memorization fraction at N = {most_at}", fracs[most_at], low=most_level)
    nxt = min(N for N in fracs if N >= none_from)
    check_range(f"drop of the memorization fraction from N = {most_at} to N = {nxt}",
                fracs[most_at] - fracs[nxt], low=0.5)
