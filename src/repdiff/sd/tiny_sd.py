"""A tiny Stable Diffusion, trained here on the mini-LAION (Chapters 12-14).

The model is made of the real ``StableDiffusionPipeline`` components, only smaller:

- an ``AutoencoderKL`` (32x32 RGB images -> 16x16x4 latents),
- a ``CLIPTextModel`` from a small ``CLIPTextConfig`` with a ``CLIPTokenizer`` whose vocabulary
  (``vocab.json``, ``merges.txt``) is written from the data set's own words (:func:`build_tokenizer`),
- a ``UNet2DConditionModel`` with SD v1's block layout (three cross-attention down blocks and a plain one,
  a plain up block and three cross-attention up blocks, two resnets per down block so three per up block),
- SD v1's noise schedule (scaled-linear betas 0.00085 -> 0.012, 1000 steps) with a DDIM scheduler.

Everything is built from one recipe (a JSON file, :data:`DEFAULT_RECIPE`), trained by
:func:`repdiff.sd.tiny_sd_train.train`, saved with ``save_pretrained`` and loaded offline with
``StableDiffusionPipeline.from_pretrained(path)`` (:func:`load_pipeline`). To retrain (GPU or CPU)::

    python -m repdiff.sd.tiny_sd data/tiny_sd/recipe.json --out data/tiny_sd

(the same as ``python -m repdiff.sd.tiny_sd_train ...``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from repdiff._compat import check_pipeline_dtype, diffusers_dtype_kwargs
from repdiff.data import captioned
from repdiff.paths import data_path

__all__ = [
    "DEFAULT_RECIPE",
    "build_tokenizer",
    "build_components",
    "make_dataset",
    "load_pipeline",
    "read_prompts",
    "read_prompt_images",
    "control_captions_and_images",
    "screen",
    "default_model_path",
    "PROMPT_LISTS",
]

#: The prompt lists shipped beside the model (``prompts/<name>.jsonl``).
PROMPT_LISTS = ("memorized", "control", "held_out")

#: The recipe of the shipped model (``data/tiny_sd/recipe.json`` holds the same values).
DEFAULT_RECIPE: dict[str, Any] = {
    "seed": 0,
    "image_size": 32,
    "dataset": {"n_unique": 5000, "n_planted": 48, "n_copies": 80, "n_single_posters": 200, "n_held_out": 200,
                "seed": 0, "mosaic_cells": 8},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "max_position_embeddings": 16},
    "vae": {"block_out_channels": [32, 32], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4},
    "unet": {"block_out_channels": [32, 64, 64, 128], "layers_per_block": 2, "attention_head_dim": 4,
             "norm_num_groups": 4},
    "train_vae": {"steps": 2000, "batch_size": 128, "lr": 2e-3, "kl_weight": 1e-6, "warmup": 50},
    "train_unet": {"steps": 3000, "batch_size": 256, "lr": 1e-3, "p_uncond": 0.1, "warmup": 200, "stop_after": 1125},
    "train_unet_more": [{"steps": 1000, "batch_size": 2048, "lr": 1e-3, "p_uncond": 0.1, "warmup": 50,
                         "stop_after": 602}],
    "save_dtype": "float16",
}


def default_model_path() -> Path:
    """``data/tiny_sd``: the shipped model folder."""
    return data_path("tiny_sd")


# ----------------------------------------------------------------------------------------------- tokenizer
def _write_bpe(words: list[str], merges: list[tuple[str, str]], folder: Path) -> None:
    chars = sorted({ch for w in words for ch in w})
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    for ch in chars:
        vocab.setdefault(ch + "</w>", len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def build_tokenizer(words: list[str], folder: str | Path | None = None, max_length: int = 16):
    """A ``CLIPTokenizer`` whose byte-pair merges make every word in ``words`` a single token.

    CLIP's tokenizer splits a word into characters (the last one marked ``</w>``) and applies the merges
    of ``merges.txt`` in rank order. We write one chain of merges per word; where two chains interfere, the
    pieces a word ends up in are joined by merges appended at the end, until each word is one token.

    Args:
        words: lower-case words without spaces.
        folder: where ``vocab.json`` and ``merges.txt`` are written (a temporary folder if ``None``).
        max_length: ``model_max_length`` (start and end tokens included).
    """
    from transformers import CLIPTokenizer

    if not words or any((not w) or (" " in w) or w != w.lower() for w in words):
        raise ValueError("words must be non-empty lower-case strings without spaces")
    folder = Path(tempfile.mkdtemp() if folder is None else folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add_chain(pieces: list[str]) -> None:  # merges joining the pieces left to right into one token
        cur = pieces[0]
        for p in pieces[1:]:
            if (cur, p) not in seen:
                merges.append((cur, p))
                seen.add((cur, p))
            cur += p

    for w in words:
        add_chain([*w[:-1], w[-1] + "</w>"])
    for _ in range(20):
        _write_bpe(words, merges, folder)
        tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length,
                            pad_token="<|endoftext|>")
        fixed = True
        for w in words:
            pieces = tok.tokenize(w)
            if len(pieces) > 1:
                fixed = False
                add_chain(pieces)
        if fixed:
            return tok
    raise RuntimeError("could not build whole-word merges for the vocabulary")


# ----------------------------------------------------------------------------------------------- components
def build_components(recipe: dict[str, Any], tokenizer) -> dict[str, Any]:
    """Build (untrained) ``text_encoder``, ``vae``, ``unet`` and SD v1's schedulers from a recipe."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    size = int(recipe["image_size"])
    t, v, u = recipe["text"], recipe["vae"], recipe["unet"]
    text_cfg = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        max_position_embeddings=t["max_position_embeddings"], projection_dim=t["hidden_size"],
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_cfg)
    n_vae = len(v["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae, block_out_channels=tuple(v["block_out_channels"]),
        layers_per_block=v["layers_per_block"], latent_channels=v["latent_channels"],
        norm_num_groups=v["norm_num_groups"], sample_size=size,
    )
    latent = size // 2 ** (n_vae - 1)
    unet = UNet2DConditionModel(
        sample_size=latent, in_channels=v["latent_channels"], out_channels=v["latent_channels"],
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=tuple(u["block_out_channels"]), layers_per_block=u["layers_per_block"],
        cross_attention_dim=t["hidden_size"], attention_head_dim=u["attention_head_dim"],
        norm_num_groups=u["norm_num_groups"],
    )
    sched_kw = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    prediction_type="epsilon", clip_sample=False)
    return {
        "text_encoder": text_encoder,
        "vae": vae,
        "unet": unet,
        "noise_scheduler": DDPMScheduler(**sched_kw),
        "scheduler": DDIMScheduler(**sched_kw, set_alpha_to_one=False, steps_offset=1),
    }


def make_dataset(recipe: dict[str, Any]) -> captioned.CaptionedDataset:
    """The recipe's mini-LAION (deterministic: same recipe, same images)."""
    return captioned.make_mini_laion(size=int(recipe["image_size"]), **recipe["dataset"])


def control_captions_and_images(ds: captioned.CaptionedDataset) -> tuple[list[str], np.ndarray]:
    """The control titles: posters that occur ONCE in training (same look as the planted ones), with their images.

    Returns ``(captions, images)``, images ``(n, 3, H, W)`` in [-1, 1]. Chapter 13's third class.
    """
    rows = np.nonzero(ds.kind == "single_poster")[0]
    return [ds.captions[i] for i in rows], ds.images[rows]


# ----------------------------------------------------------------------------------------------- loading
def load_pipeline(path: str | Path | None = None, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32):
    """``StableDiffusionPipeline.from_pretrained`` on the shipped folder (offline), moved to ``device``.

    diffusers' and transformers' import-time notices (e.g. that torchvision is absent, which the pipeline does not
    need) are silenced while loading, so a chapter's output shows only what the chapter prints.
    """
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    path = Path(path) if path is not None else default_model_path()
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"{path} holds no saved pipeline (model_index.json is missing); "
                                f"retrain with: python -m repdiff.sd.tiny_sd {path / 'recipe.json'} --out {path}")
    verbosity = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    try:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(path, **diffusers_dtype_kwargs(dtype), safety_checker=None,
                                                       feature_extractor=None, requires_safety_checker=False,
                                                       local_files_only=True)
        check_pipeline_dtype(pipe, dtype)
    finally:
        dlogging.set_verbosity(verbosity[0])
        tlogging.set_verbosity(verbosity[1])
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _prompt_rows(name: str, path: str | Path | None) -> tuple[Path, list[dict]]:
    path = Path(path) if path is not None else default_model_path()
    if name not in PROMPT_LISTS:
        raise ValueError(f"unknown prompt list {name!r}; expected one of {PROMPT_LISTS}")
    f = path / "prompts" / f"{name}.jsonl"
    if not f.exists():
        raise FileNotFoundError(f"{f} is missing")
    return path, [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def read_prompts(name: str, path: str | Path | None = None) -> list[str]:
    """Captions from ``<model>/prompts/<name>.jsonl``: ``"memorized"``, ``"control"`` or ``"held_out"``."""
    return [r["caption"] for r in _prompt_rows(name, path)[1]]


def read_prompt_images(name: str, path: str | Path | None = None) -> torch.Tensor:
    """The training images of a prompt list (``"memorized"`` or ``"control"``), in list order.

    Returns ``(N, 3, H, W)`` float32 in [-1, 1], read from the PNGs the list's ``"image"`` fields name
    (Chapters 12-14 use them as the reference set of the copy test).
    """
    path, rows = _prompt_rows(name, path)
    if any("image" not in r for r in rows):
        raise ValueError(f"prompts/{name}.jsonl has lines without an 'image' field (held-out captions have none)")
    arrs = [np.asarray(Image.open(path / r["image"]).convert("RGB"), dtype=np.float32) for r in rows]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) / 127.5 - 1.0


def screen(pipe, prompts: list[str], references: torch.Tensor, *, own: list[int] | None = None, seed: int = 0,
           steps: int = 30, guidance: float = 7.5, batch_size: int = 256, threshold: float = 1 / 3) -> dict:
    """Generate each prompt once with the plain pipeline and test the result for copies (the screening protocol).

    Args:
        pipe: a ``StableDiffusionPipeline`` (DDIM, ``steps`` steps, classifier-free guidance ``guidance``).
        prompts: ``n`` captions.
        references: ``(m, 3, H, W)`` in [-1, 1]: the distinct training images.
        own: for each prompt the index into ``references`` of its own training image (planted titles), or
            ``None``; a copy of a planted title must be a copy of its own poster.
    Returns:
        dict with ``images`` ``(n, 3, H, W)`` in [-1, 1], ``ratio`` and ``nearest`` (NN1/NN2 distance ratio and
        index of the nearest reference), and ``copy`` ``(n,)`` bool: ratio < ``threshold`` (and nearest == own).
    """
    size = int(references.shape[-1])
    gen = torch.Generator(device=pipe.device).manual_seed(seed)
    imgs = []
    for i in range(0, len(prompts), batch_size):
        out = pipe(prompts[i:i + batch_size], num_inference_steps=steps, guidance_scale=guidance, height=size,
                   width=size, output_type="pt", generator=gen).images
        imgs.append(out.float().cpu() * 2 - 1)
    images = torch.cat(imgs)
    flat_x, flat_r = images.flatten(1).double(), references.flatten(1).double()
    d = torch.cdist(flat_x, flat_r)
    two = d.topk(2, largest=False)
    ratio = (two.values[:, 0] / two.values[:, 1].clamp_min(1e-12)).numpy()
    nearest = two.indices[:, 0].numpy()
    copy_ = ratio < threshold
    if own is not None:
        copy_ &= nearest == np.asarray(own)
    return {"images": images, "ratio": ratio, "nearest": nearest, "copy": copy_}


if __name__ == "__main__":  # python -m repdiff.sd.tiny_sd RECIPE: training lives in tiny_sd_train (it imports this)
    from repdiff.sd.tiny_sd_train import main

    main()
