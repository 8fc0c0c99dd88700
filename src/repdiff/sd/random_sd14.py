"""SD v1.4's architecture without a download: its configurations and a random-weight pipeline (Part IV).

The four ``sd14_*_config`` functions return the values of SD v1.4's ``config.json`` files (a fresh copy each
call); :func:`random_sd14_pipeline` builds the full U-Net, VAE and CLIP text encoder from them with random
weights. The representation code is tested offline on it (``tests/test_sd_hub.py``), Chapter 12 compares the
tiny model's U-Net with it, and ``scripts/gpu_check.sh`` measures its memory and time on a GPU
(:mod:`repdiff.sd.gpu_check`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["sd14_unet_config", "sd14_vae_config", "sd14_text_config", "sd14_scheduler_config",
           "random_sd14_pipeline"]

_CONFIGS: dict[str, dict[str, Any]] = {
    # UNet2DConditionModel (unet/config.json)
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
                 freq_shift=0,
                 down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                 block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1,
                 mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
                 cross_attention_dim=768, attention_head_dim=8),
    # AutoencoderKL (vae/config.json): 512² images, 64² latents
    "vae": dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512,
                scaling_factor=0.18215),
    # CLIPTextConfig: CLIP ViT-L/14's text tower, 12 layers of width 768
    "text": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                 projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1),
    # scheduler/scheduler_config.json, as a DDIM scheduler
    "scheduler": dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon"),
}


def sd14_unet_config() -> dict:
    """The ``UNet2DConditionModel`` configuration of SD v1.4 (values of its ``unet/config.json``)."""
    return copy.deepcopy(_CONFIGS["unet"])


def sd14_vae_config() -> dict:
    """The ``AutoencoderKL`` configuration of SD v1.4 (values of its ``vae/config.json``): 512² images, 64² latents."""
    return copy.deepcopy(_CONFIGS["vae"])


def sd14_text_config() -> dict:
    """The ``CLIPTextConfig`` of SD v1.4's text encoder (CLIP ViT-L/14's text tower: 12 layers, width 768)."""
    return copy.deepcopy(_CONFIGS["text"])


def sd14_scheduler_config() -> dict:
    """SD v1.4's noise schedule (its ``scheduler/scheduler_config.json``, as a DDIM scheduler)."""
    return copy.deepcopy(_CONFIGS["scheduler"])


#: the words of the no-download tokenizer of :func:`random_sd14_pipeline` (its weights are random anyway)
_TOKENIZER_WORDS = ("a", "an", "the", "of", "in", "with", "and", "on", "photo", "portrait", "painting", "woman",
                    "man", "old", "young", "elderly", "living", "light", "book", "cover", "poster", "high",
                    "resolution", "realistic", "detailed", "cat", "dog", "city", "night", "red", "blue", "white")


def random_sd14_pipeline(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, *,
                         small: bool = False, seed: int = 0):
    """A ``StableDiffusionPipeline`` with SD v1.4's architecture and random weights: nothing is downloaded.

    U-Net, VAE and text encoder are built from :func:`sd14_unet_config`, :func:`sd14_vae_config` and
    :func:`sd14_text_config`; the tokenizer is a ``CLIPTokenizer`` over a few words (other words become the
    unknown token), padded to CLIP's 77 tokens. ``small=True`` keeps the layout (four U-Net levels, three resnets
    in ``up_blocks.0``, four VAE levels, 77 tokens, CLIP's vocabulary) at tiny widths for 64×64 images on a CPU.
    Used by the tests and by :mod:`repdiff.sd.gpu_check`.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from repdiff.sd.tiny_sd import build_tokenizer

    unet_cfg, vae_cfg, text_cfg = sd14_unet_config(), sd14_vae_config(), sd14_text_config()
    if small:
        unet_cfg.update(block_out_channels=[32, 64, 64, 64], norm_num_groups=8, cross_attention_dim=64,
                        attention_head_dim=4, sample_size=8)
        vae_cfg.update(block_out_channels=[16, 16, 32, 32], norm_num_groups=8, layers_per_block=1, sample_size=64)
        text_cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                        projection_dim=64)
    tok = build_tokenizer(list(_TOKENIZER_WORDS), max_length=77)
    torch.manual_seed(seed)
    device = torch.device(device)

    def build() -> tuple[Any, Any, Any]:
        return (UNet2DConditionModel.from_config(unet_cfg), AutoencoderKL.from_config(vae_cfg),
                CLIPTextModel(CLIPTextConfig(**text_cfg)))

    try:  # initialise on the device itself: much faster than 1 B random values on a CPU
        with device:
            unet, vae, text = build()
    except Exception:  # noqa: BLE001 - any library that cannot build under a device context: build on the CPU
        torch.manual_seed(seed)
        unet, vae, text = build()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=DDIMScheduler(**sd14_scheduler_config()), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device, dtype)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.eval()
    return pipe
