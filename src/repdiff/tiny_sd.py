"""A tiny Stable Diffusion, trained here on the mini-LAION (Chapters 12-14).

The model is made of the real ``StableDiffusionPipeline`` components, only smaller:

- an ``AutoencoderKL`` (32x32 RGB images -> 16x16x4 latents),
- a ``CLIPTextModel`` from a small ``CLIPTextConfig`` with a ``CLIPTokenizer`` whose vocabulary
  (``vocab.json``, ``merges.txt``) is written from the data set's own words (:func:`build_tokenizer`),
- a ``UNet2DConditionModel`` with SD v1's block layout (three cross-attention down blocks and a plain one,
  a plain up block and three cross-attention up blocks, two resnets per down block so three per up block),
- SD v1's noise schedule (scaled-linear betas 0.00085 -> 0.012, 1000 steps) with a DDIM scheduler.

Everything is built from one recipe (a JSON file, :data:`DEFAULT_RECIPE`), trained by :func:`train`, saved
with ``save_pretrained`` and loaded offline with ``StableDiffusionPipeline.from_pretrained(path)``
(:func:`load_pipeline`). To retrain (GPU or CPU)::

    python -m repdiff.tiny_sd data/tiny_sd/recipe.json --out data/tiny_sd
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import captioned
from ._compat import check_pipeline_dtype, diffusers_dtype_kwargs
from .paths import data_path

__all__ = [
    "DEFAULT_RECIPE",
    "build_tokenizer",
    "build_components",
    "make_dataset",
    "train",
    "save_model",
    "load_pipeline",
    "read_prompts",
    "default_model_path",
]

#: The recipe of the shipped model (``data/tiny_sd/recipe.json`` holds the same values).
DEFAULT_RECIPE: dict[str, Any] = {
    "seed": 0,
    "image_size": 32,
    "dataset": {"n_unique": 3000, "n_planted": 100, "n_copies": 40, "n_single_posters": 300,
                "n_held_out": 200, "seed": 0, "mosaic_cells": 8},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "max_position_embeddings": 16},
    "vae": {"block_out_channels": [16, 32], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 16},
    "unet": {"block_out_channels": [16, 32, 64, 128], "layers_per_block": 2, "attention_head_dim": 4,
             "norm_num_groups": 16},
    "train_vae": {"steps": 800, "batch_size": 64, "lr": 2e-3, "kl_weight": 1e-6},
    "train_unet": {"steps": 2400, "batch_size": 64, "lr": 1.5e-3, "p_uncond": 0.1, "warmup": 100},
    "train_unet_more": [{"steps": 1500, "batch_size": 64, "lr": 1e-3, "p_uncond": 0.1, "warmup": 50,
                         "planted_share": 0.85}],
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


# ----------------------------------------------------------------------------------------------- training
def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * frac))


def v_weight_mean(alphas_cumprod: torch.Tensor, max_weight: float | None = None) -> float:
    """Mean over timesteps of the v-loss weight ``1 / alpha_bar_t`` (clipped at ``max_weight``).

    With ``x0_hat = (z_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)`` and ``v = sqrt(alpha_bar) eps -
    sqrt(1 - alpha_bar) x0``, the v-prediction error equals the epsilon error divided by ``sqrt(alpha_bar)``,
    so ``|v_hat - v|^2 = |eps_hat - eps|^2 / alpha_bar = |x0_hat - x0|^2 / (1 - alpha_bar)``. A stage with
    ``"loss_weight": "v"`` weights each sample's epsilon loss by that factor and divides by this mean, so the
    loss keeps the epsilon loss's scale. Used by :func:`train` (Chapter 12's recipe).
    """
    return float(v_loss_weights(alphas_cumprod.double(), max_weight).mean())


def v_loss_weights(alphas_cumprod: torch.Tensor, max_weight: float | None = None) -> torch.Tensor:
    """``(T,)`` the v-loss weight ``1 / alpha_bar_t`` of every timestep, clipped at ``max_weight`` if given.

    Used by :func:`train` for the recipe's v-weighted stages (Chapter 12).
    """
    w = 1.0 / alphas_cumprod
    return w if max_weight is None else w.clamp(max=max_weight)


def _train_vae(vae, images: torch.Tensor, cfg: dict, gen: torch.Generator, log) -> float:
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], weight_decay=0.0)
    loss_val = float("nan")
    for step in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg["steps"], cfg["lr"], 50)
        idx = torch.randint(0, len(images), (cfg["batch_size"],), generator=gen)
        x = images[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(x)
        rec = vae.decode(z).sample
        kl = post.kl().mean()
        loss = (rec - x).abs().mean() + 0.5 * (rec - x).square().mean() + cfg["kl_weight"] * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_val = loss.item()
        if step % 100 == 0 or step == cfg["steps"] - 1:
            log(f"vae step {step:5d}  loss {loss_val:.4f}")
    return loss_val


def train(recipe: dict[str, Any] | None = None, out: str | Path | None = None, device: str | None = None,
          log=print, checkpoint_every: int = 0, checkpoint_dir: str | Path | None = None,
          resume_from: str | Path | None = None) -> dict[str, Any]:
    """Train the tiny SD from a recipe and (if ``out``) save it there. Returns a record of the run.

    Stage 1 trains the VAE on the distinct training images (L1 + L2 reconstruction, tiny KL weight) and sets
    its ``scaling_factor`` so latents have unit variance, as SD's 0.18215 does. Stage 2 trains the U-Net and
    the text encoder jointly on the noise-prediction (epsilon) loss with SD v1's schedule, replacing the
    caption by the empty prompt with probability ``p_uncond`` (what classifier-free guidance needs).
    With ``checkpoint_every > 0`` the pipeline is also saved to ``checkpoint_dir/step_<k>`` along the way.

    The U-Net stage may be followed by further stages, ``recipe["train_unet_more"]`` (a list of configs of
    the same form, each with its own warm-up and cosine schedule). A stage with ``planted_share`` draws that
    share of each batch from the duplicated rows (as if the posters had more copies), the rest from the
    others. A stage with ``"loss_weight": "v"`` (optionally ``max_weight``) weights the epsilon loss as the
    v-prediction loss does (see :func:`v_weight_mean`), which puts weight on the clean estimate at high noise
    levels, where the plain epsilon loss hardly looks. ``resume_from`` (a saved model folder whose
    ``training.json`` says how many stages it holds) skips the VAE and the stages already done; the random
    stream then differs from a run from scratch, so the weights are those of the same recipe, not bit-equal.
    """
    recipe = copy.deepcopy(DEFAULT_RECIPE if recipe is None else recipe)
    stages = [recipe["train_unet"], *recipe.get("train_unet_more", [])]
    for k, cfg in enumerate(stages):
        if cfg.get("loss_weight", "epsilon") not in ("epsilon", "v"):
            raise ValueError(f"U-Net stage {k}: loss_weight must be 'epsilon' or 'v', got {cfg['loss_weight']!r}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(recipe["seed"])
    gen = torch.Generator().manual_seed(recipe["seed"])
    t0 = time.time()
    ds = make_dataset(recipe)
    tok_dir = Path(tempfile.mkdtemp())
    tokenizer = build_tokenizer(captioned.vocabulary(), tok_dir, recipe["text"]["max_position_embeddings"])
    comps = build_components(recipe, tokenizer)
    vae, unet, text_encoder = comps["vae"].to(dev), comps["unet"].to(dev), comps["text_encoder"].to(dev)
    ns = comps["noise_scheduler"]

    # distinct images: every non-planted row once, then the planted images once
    uniq = torch.from_numpy(ds.unique_images()).to(dev)
    row_to_uniq = np.empty(len(ds), dtype=np.int64)
    non_planted = np.nonzero(ds.kind != "planted")[0]
    row_to_uniq[non_planted] = np.arange(len(non_planted))
    planted_rows = np.nonzero(ds.kind == "planted")[0]
    row_to_uniq[planted_rows] = len(non_planted) + ds.planted_id[planted_rows]

    done, prev = 0, {}
    if resume_from is not None:
        prev = json.loads((Path(resume_from) / "training.json").read_text())
        done = int(prev.get("stages_done", 1))
        saved = load_pipeline(resume_from, device=dev)
        vae.load_state_dict(saved.vae.state_dict())
        unet.load_state_dict(saved.unet.state_dict())
        text_encoder.load_state_dict(saved.text_encoder.state_dict())
        vae.register_to_config(scaling_factor=float(saved.vae.config.scaling_factor))
        del saved
        vae_loss = prev.get("vae_final_loss", float("nan"))
        log(f"resumed from {resume_from}: {done} U-Net stage(s) done")
    else:
        vae.train()
        vae_loss = _train_vae(vae, uniq, recipe["train_vae"], gen, log)
    vae.eval()
    with torch.no_grad():
        posts = [vae.encode(uniq[i:i + 256]).latent_dist for i in range(0, len(uniq), 256)]
        mu = torch.cat([p.mean for p in posts])
        sd = torch.cat([p.std for p in posts])
        rec = torch.cat([vae.decode(mu[i:i + 256]).sample for i in range(0, len(mu), 256)])
    vae_rmse = float((rec - uniq).square().mean().sqrt())
    scaling = float(1.0 / mu.std()) if resume_from is None else float(vae.config.scaling_factor)
    vae.register_to_config(scaling_factor=scaling)
    log(f"vae done: rmse {vae_rmse:.4f}, scaling_factor {scaling:.4f}, {time.time() - t0:.0f} s")
    vae.requires_grad_(False)

    ids = tokenizer(ds.captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(dev)
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids.to(dev)
    row_to_uniq_t = torch.from_numpy(row_to_uniq).to(dev)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    alphas = ns.alphas_cumprod.to(dev)
    planted_rows_t = torch.from_numpy(planted_rows)
    other_rows_t = torch.from_numpy(non_planted)
    losses: list[float] = []
    total = int(prev.get("unet_steps", 0))
    for stage, cfg in enumerate(stages):
        if stage < done:
            continue
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
        v_loss = cfg.get("loss_weight", "epsilon") == "v"  # the v-prediction loss, written in epsilon terms
        if v_loss:  # per-timestep weights, divided by their mean so the loss keeps the epsilon loss's scale
            w_table = v_loss_weights(alphas, cfg.get("max_weight")) / v_weight_mean(alphas, cfg.get("max_weight"))
        unet.train()
        text_encoder.train()
        for step in range(cfg["steps"]):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg["steps"], cfg["lr"], cfg["warmup"])
            if cfg.get("planted_share") is None:  # rows drawn uniformly: duplicates as often as they occur
                rows = torch.randint(0, len(ds), (cfg["batch_size"],), generator=gen).to(dev)
            else:  # a share of each batch drawn from the duplicated rows, the rest from the others
                pick = torch.rand(cfg["batch_size"], generator=gen) < cfg["planted_share"]
                r_pl = planted_rows_t[torch.randint(0, len(planted_rows_t), (cfg["batch_size"],), generator=gen)]
                r_ot = other_rows_t[torch.randint(0, len(other_rows_t), (cfg["batch_size"],), generator=gen)]
                rows = torch.where(pick, r_pl, r_ot).to(dev)
            u = row_to_uniq_t[rows]
            z0 = (mu[u] + sd[u] * torch.randn(mu[u].shape, generator=gen).to(dev)) * scaling
            noise = torch.randn(z0.shape, generator=gen).to(dev)
            tt = torch.randint(0, ns.config.num_train_timesteps, (len(rows),), generator=gen).to(dev)
            a = alphas[tt].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
            drop = (torch.rand(len(rows), generator=gen) < cfg["p_uncond"]).to(dev)
            batch_ids = torch.where(drop[:, None], empty.expand(len(rows), -1), ids[rows])
            enc = text_encoder(batch_ids).last_hidden_state
            pred = unet(zt, tt, encoder_hidden_states=enc).sample
            err = (pred - noise).square().mean(dim=(1, 2, 3))
            loss = (w_table[tt] * err).mean() if v_loss else err.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
            total += 1
            if step % 100 == 0 or step == cfg["steps"] - 1:
                log(f"unet stage {stage} step {step:5d}  loss {np.mean(losses[-100:]):.4f}  "
                    f"{time.time() - t0:.0f} s")
            if checkpoint_every and checkpoint_dir and total % checkpoint_every == 0:
                unet.eval()
                text_encoder.eval()
                rec = {"unet_steps": total, "partial": True, "stages_done": stage}
                save_model(Path(checkpoint_dir) / f"step_{total}", recipe, ds, tokenizer, text_encoder, vae, unet,
                           comps["scheduler"], rec)
                unet.train()
                text_encoder.train()
    unet.eval()
    text_encoder.eval()
    record = {
        "vae_final_loss": vae_loss, "vae_rmse": vae_rmse, "scaling_factor": scaling,
        "unet_final_loss": float(np.mean(losses[-200:])) if losses else prev.get("unet_final_loss"),
        "unet_steps": total, "stages_done": len(stages),
        "wall_time_s": time.time() - t0 + float(prev.get("wall_time_s", 0.0)), "device": str(dev),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "n_train_rows": len(ds), "n_distinct_images": len(uniq),
    }
    # one entry per call, so a model trained in several resumed runs says what each run did
    record["runs"] = list(prev.get("runs", [])) + [{
        "stages": [done + 1, len(stages)], "unet_steps": total - int(prev.get("unet_steps", 0)),
        "wall_time_s": time.time() - t0, "device": str(dev), "threads": torch.get_num_threads(),
    }]
    if out is not None:
        save_model(out, recipe, ds, tokenizer, text_encoder, vae, unet, comps["scheduler"], record)
        for name in ("vocab.json", "merges.txt"):  # the hand-written BPE files, kept beside tokenizer.json
            (Path(out) / "tokenizer" / name).write_text((tok_dir / name).read_text())
    return {"record": record, "tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet,
            "scheduler": comps["scheduler"], "dataset": ds}


def _jsonl(path: Path, captions: list[str]) -> None:
    path.write_text("".join(json.dumps({"caption": c}) + "\n" for c in captions))


def save_model(out: str | Path, recipe: dict, ds: captioned.CaptionedDataset, tokenizer, text_encoder, vae, unet,
               scheduler, record: dict) -> Path:
    """Save the pipeline with ``save_pretrained`` plus ``recipe.json``, ``training.json`` and the prompt lists."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    dtype = torch.float16 if recipe.get("save_dtype", "float32") == "float16" else torch.float32
    # copies: the modules being trained keep their device and dtype. U-Net and VAE are stored in ``save_dtype``
    # (diffusers loads them as float32 by default); the text encoder stays float32, because transformers
    # would load it in its stored dtype, and a float16 text encoder does not run on every CPU.
    vae, unet = (copy.deepcopy(m).to("cpu", dtype) for m in (vae, unet))
    text_encoder = copy.deepcopy(text_encoder).to("cpu", torch.float32)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "prompts").mkdir(exist_ok=True)
    _jsonl(out / "prompts" / "memorized.jsonl", ds.planted_captions)
    _jsonl(out / "prompts" / "held_out.jsonl", ds.held_out_captions)
    return out


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
                                f"retrain with: python -m repdiff.tiny_sd {path / 'recipe.json'} --out {path}")
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


def read_prompts(name: str, path: str | Path | None = None) -> list[str]:
    """Captions from ``<model>/prompts/<name>.jsonl`` (``"memorized"`` or ``"held_out"``)."""
    path = Path(path) if path is not None else default_model_path()
    f = path / "prompts" / f"{name}.jsonl"
    if not f.exists():
        raise FileNotFoundError(f"{f} is missing")
    return [json.loads(line)["caption"] for line in f.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> None:
    """``python -m repdiff.tiny_sd RECIPE.json [--out DIR] [--device cpu|cuda] [--threads N]``."""
    ap = argparse.ArgumentParser(description="Train the course's tiny Stable Diffusion from a recipe.")
    ap.add_argument("recipe", help="recipe JSON (data/tiny_sd/recipe.json)")
    ap.add_argument("--out", default=None, help="output folder (default: the recipe's folder)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint-every", type=int, default=0, help="also save every N U-Net steps")
    ap.add_argument("--checkpoint-dir", default=None, help="where those interim checkpoints go")
    ap.add_argument("--resume-from", default=None, help="a saved model folder to continue from")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe_path = Path(args.recipe)
    recipe = json.loads(recipe_path.read_text())
    out = Path(args.out) if args.out else recipe_path.parent
    res = train(recipe, out=out, device=args.device, log=lambda s: print(s, flush=True),
                checkpoint_every=args.checkpoint_every, checkpoint_dir=args.checkpoint_dir,
                resume_from=args.resume_from)
    print(json.dumps(res["record"], indent=2))


if __name__ == "__main__":
    main()
