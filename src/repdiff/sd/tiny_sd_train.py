"""Training the tiny Stable Diffusion of Chapters 12-14 from its recipe, and saving it (``python -m``).

:func:`train` builds the components of a recipe (:mod:`repdiff.sd.tiny_sd`), trains the VAE and then the
U-Net and text encoder (classifier-free guidance dropout, v-weighted loss, bf16 autocast on a GPU; interim
checkpoints resume exactly), and :func:`save_model` writes the pipeline with its prompt lists. Command line::

    python -m repdiff.sd.tiny_sd data/tiny_sd/recipe.json --out data/tiny_sd

(``python -m repdiff.sd.tiny_sd_train`` is the same command).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from repdiff.data import captioned
from repdiff.sd import tiny_sd

__all__ = ["train", "save_model", "v_weight_mean", "v_loss_weights", "main"]


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


def _autocast(dev: torch.device, bf16: bool):
    """bf16 autocast on a GPU (weights and optimizer stay float32); a no-op elsewhere."""
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16 and dev.type == "cuda")


def _bar(total: int, desc: str, initial: int = 0, progress: bool = True):
    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, mininterval=1.0, leave=False)


def _train_vae(vae, images: torch.Tensor, cfg: dict, gen: torch.Generator, log, bf16: bool,
               progress: bool) -> float:
    """Stage 1: the VAE on the distinct training images (L1 + L2 reconstruction, tiny KL weight)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    dev = images.device
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["lr"], weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, cfg.get("warmup", 50), cfg["steps"])
    loss_sum, k, loss_val = torch.zeros((), device=dev), 0, float("nan")
    bar = _bar(cfg["steps"], "vae", progress=progress)
    for step in range(cfg["steps"]):
        x = images[torch.randint(0, len(images), (cfg["batch_size"],), generator=gen, device=dev)]
        with _autocast(dev, bf16):
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen, device=dev)
            rec = vae.decode(z).sample.float()
            kl = post.kl().mean()
        loss = (rec - x).abs().mean() + 0.5 * (rec - x).square().mean() + cfg["kl_weight"] * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.detach()
        k += 1
        bar.update()
        if (step + 1) % 200 == 0 or step == cfg["steps"] - 1:  # the only host sync: every 200 steps
            loss_val = float(loss_sum / k)
            loss_sum.zero_()
            k = 0
            bar.set_postfix(loss=f"{loss_val:.4f}")
            log(f"vae step {step + 1:5d}  loss {loss_val:.4f}")
    bar.close()
    return loss_val


def _save_state(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a run killed while saving leaves the previous state intact


def train(recipe: dict[str, Any] | None = None, out: str | Path | None = None, device: str | None = None,
          log=print, checkpoint_every: int = 0, checkpoint_dir: str | Path | None = None,
          resume_from: str | Path | None = None, *, bf16: bool = True, compile: bool = False,
          progress: bool = True, log_every: int = 200, stop_at: float | None = None) -> dict[str, Any]:
    """Train the tiny SD from a recipe and (if ``out``) save it there. Returns a record of the run.

    Stage 1 trains the VAE on the distinct training images (L1 + L2 reconstruction, tiny KL weight) and sets
    its ``scaling_factor`` so latents have unit variance, as SD's 0.18215 does. Then the U-Net and the text
    encoder are trained jointly on the noise-prediction (epsilon) loss with SD v1's schedule, replacing the
    caption by the empty prompt with probability ``p_uncond`` (what classifier-free guidance needs). Each
    U-Net stage (``recipe["train_unet"]``, then the list ``recipe.get("train_unet_more", [])``) has its own
    warm-up and cosine schedule (``diffusers.optimization``). A stage with ``planted_share`` draws that share of
    each batch from the duplicated rows, the rest from the others; ``"loss_weight": "v"`` weights the epsilon
    loss as the v-prediction loss does (:func:`v_weight_mean`); ``"stop_after": k`` ends the stage after ``k`` of
    its ``steps`` (its learning-rate schedule still spans ``steps``).

    The loop is written for the hardware: the data set's latent posteriors, captions and every random draw
    live on the training device (a device ``torch.Generator``), on a GPU the forward pass runs under bf16
    autocast (``bf16``) and optionally through ``torch.compile`` (``compile``), and the host reads the loss
    back only every ``log_every`` steps, so the GPU is never waiting for Python. ``bench.tiny_sd_steps``
    compares it with the plain loop.

    Resuming: with ``checkpoint_every > 0`` the full training state (weights, optimizer, learning-rate
    schedule, random stream, position) is written to ``checkpoint_dir/state.pt`` every that many U-Net steps,
    and ``resume_from`` that folder continues exactly where it stopped, so a CPU can train the recipe in
    several runs. ``resume_from`` a saved model folder (with ``training.json``) instead skips the VAE and
    the U-Net stages it already holds. ``stop_at`` (a ``time.time()`` value) is a guard for a lent machine: a
    stage still running then ends early, and the record says at which step (``stopped_early``).
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup

    recipe = copy.deepcopy(tiny_sd.DEFAULT_RECIPE if recipe is None else recipe)
    stages = [recipe["train_unet"], *recipe.get("train_unet_more", [])]
    for k, cfg in enumerate(stages):
        if cfg.get("loss_weight", "epsilon") not in ("epsilon", "v"):
            raise ValueError(f"U-Net stage {k}: loss_weight must be 'epsilon' or 'v', got {cfg['loss_weight']!r}")
        if not 0 < int(cfg.get("stop_after", cfg["steps"])) <= int(cfg["steps"]):
            raise ValueError(f"U-Net stage {k}: stop_after must be in 1..steps ({cfg['steps']}), "
                             f"got {cfg['stop_after']}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(recipe["seed"])
    gen = torch.Generator(device=dev).manual_seed(recipe["seed"])
    t0 = time.time()
    ds = tiny_sd.make_dataset(recipe)
    tok_dir = Path(tempfile.mkdtemp())
    tokenizer = tiny_sd.build_tokenizer(captioned.vocabulary(), tok_dir, recipe["text"]["max_position_embeddings"])
    comps = tiny_sd.build_components(recipe, tokenizer)
    vae, unet, text_encoder = comps["vae"].to(dev), comps["unet"].to(dev), comps["text_encoder"].to(dev)
    ns = comps["noise_scheduler"]

    # distinct images: every non-planted row once, then the planted images once
    uniq = torch.from_numpy(ds.unique_images()).to(dev)
    row_to_uniq = np.empty(len(ds), dtype=np.int64)
    non_planted = np.nonzero(ds.kind != "planted")[0]
    row_to_uniq[non_planted] = np.arange(len(non_planted))
    planted_rows = np.nonzero(ds.kind == "planted")[0]
    row_to_uniq[planted_rows] = len(non_planted) + ds.planted_id[planted_rows]

    state_file = Path(resume_from) / "state.pt" if resume_from is not None else None
    mid = torch.load(state_file, map_location=dev, weights_only=False) if state_file and state_file.exists() else None
    done, prev, resume_step = 0, {}, 0
    if mid is not None:  # exact continuation of an interrupted run
        vae.load_state_dict(mid["vae"])
        unet.load_state_dict(mid["unet"])
        text_encoder.load_state_dict(mid["text_encoder"])
        vae.register_to_config(scaling_factor=float(mid["scaling_factor"]))
        gen.set_state(mid["generator"].cpu())
        prev, done, resume_step = mid["record"], int(mid["stage"]), int(mid["step"])
        vae_loss = prev.get("vae_final_loss", float("nan"))
        log(f"resumed from {state_file}: U-Net stage {done}, step {resume_step}")
    elif resume_from is not None:
        prev = json.loads((Path(resume_from) / "training.json").read_text())
        done = int(prev.get("stages_done", 1))
        saved = tiny_sd.load_pipeline(resume_from, device=dev)
        vae.load_state_dict(saved.vae.state_dict())
        unet.load_state_dict(saved.unet.state_dict())
        text_encoder.load_state_dict(saved.text_encoder.state_dict())
        vae.register_to_config(scaling_factor=float(saved.vae.config.scaling_factor))
        del saved
        vae_loss = prev.get("vae_final_loss", float("nan"))
        log(f"resumed from {resume_from}: {done} U-Net stage(s) done")
    else:
        vae.train()
        vae_loss = _train_vae(vae, uniq, recipe["train_vae"], gen, log, bf16, progress)
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
    planted_rows_t = torch.from_numpy(planted_rows).to(dev)
    other_rows_t = torch.from_numpy(non_planted).to(dev)
    unet_fwd = torch.compile(unet) if compile else unet
    last_losses: list[float] = []
    total = int(prev.get("unet_steps", 0))
    steps_per_s: list[float] = []
    stopped: list[dict] = []
    for stage, cfg in enumerate(stages):
        if stage < done or stopped:
            continue
        bs = int(cfg["batch_size"])
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0, fused=dev.type == "cuda")
        sched = get_cosine_schedule_with_warmup(opt, cfg["warmup"], cfg["steps"])
        first = 0
        if mid is not None and stage == done:
            opt.load_state_dict(mid["optimizer"])
            sched.load_state_dict(mid["lr_schedule"])
            first = resume_step
        w_table = None
        if cfg.get("loss_weight", "epsilon") == "v":  # per-timestep weights, mean 1: the epsilon loss's scale
            w_table = v_loss_weights(alphas, cfg.get("max_weight")) / v_weight_mean(alphas, cfg.get("max_weight"))
        unet.train()
        text_encoder.train()
        loss_sum, k = torch.zeros((), device=dev), 0
        end = int(cfg.get("stop_after", cfg["steps"]))  # the schedule spans "steps"; training may end sooner
        bar = _bar(end, f"U-Net stage {stage}", initial=first, progress=progress)
        t_stage, n_stage = time.time(), 0
        for step in range(first, end):
            if cfg.get("planted_share") is None:  # rows drawn uniformly: duplicates as often as they occur
                rows = torch.randint(0, len(ds), (bs,), generator=gen, device=dev)
            else:  # a share of each batch drawn from the duplicated rows, the rest from the others
                pick = torch.rand(bs, generator=gen, device=dev) < cfg["planted_share"]
                r_pl = planted_rows_t[torch.randint(0, len(planted_rows_t), (bs,), generator=gen, device=dev)]
                r_ot = other_rows_t[torch.randint(0, len(other_rows_t), (bs,), generator=gen, device=dev)]
                rows = torch.where(pick, r_pl, r_ot)
            u = row_to_uniq_t[rows]
            z0 = (mu[u] + sd[u] * torch.randn(mu[u].shape, generator=gen, device=dev)) * scaling
            noise = torch.randn(z0.shape, generator=gen, device=dev)
            tt = torch.randint(0, ns.config.num_train_timesteps, (bs,), generator=gen, device=dev)
            zt = ns.add_noise(z0, noise, tt)  # the scheduler's forward process (its table moves to dev once)
            drop = torch.rand(bs, generator=gen, device=dev) < cfg["p_uncond"]
            batch_ids = torch.where(drop[:, None], empty.expand(bs, -1), ids[rows])
            with _autocast(dev, bf16):
                enc = text_encoder(batch_ids).last_hidden_state
                pred = unet_fwd(zt, tt, encoder_hidden_states=enc).sample
            err = (pred.float() - noise).square().mean(dim=(1, 2, 3))
            loss = (w_table[tt] * err).mean() if w_table is not None else err.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            k += 1
            n_stage += 1
            total += 1
            bar.update()
            if (step + 1) % log_every == 0 or step == end - 1:  # the loop's only host sync
                last_losses.append(float(loss_sum / k))
                loss_sum.zero_()
                k = 0
                rate = n_stage / (time.time() - t_stage)
                bar.set_postfix(loss=f"{last_losses[-1]:.4f}", it_s=f"{rate:.1f}")
                log(f"unet stage {stage} step {step + 1:5d}  loss {last_losses[-1]:.4f}  {rate:.1f} steps/s  "
                    f"{time.time() - t0:.0f} s")
            if stop_at is not None and time.time() > stop_at and step + 1 < end:
                stopped.append({"stage": stage, "step": step + 1, "of": cfg["steps"]})
                log(f"stop_at reached: stage {stage} ends at step {step + 1} of {cfg['steps']}")
                break
            if checkpoint_every and checkpoint_dir and total % checkpoint_every == 0:
                _save_state(Path(checkpoint_dir) / "state.pt", vae=vae.state_dict(), unet=unet.state_dict(),
                            text_encoder=text_encoder.state_dict(), optimizer=opt.state_dict(),
                            lr_schedule=sched.state_dict(), generator=gen.get_state(), scaling_factor=scaling,
                            stage=stage, step=step + 1,
                            record={**prev, "vae_final_loss": vae_loss, "unet_steps": total,
                                    "wall_time_s": time.time() - t0 + float(prev.get("wall_time_s", 0.0))})
        bar.close()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        steps_per_s.append(n_stage / max(time.time() - t_stage, 1e-9))
    unet.eval()
    text_encoder.eval()
    record = {
        "vae_final_loss": vae_loss, "vae_rmse": vae_rmse, "scaling_factor": scaling,
        "unet_final_loss": float(np.mean(last_losses[-2:])) if last_losses else prev.get("unet_final_loss"),
        "unet_steps": total, "stages_done": len(stages),
        "wall_time_s": time.time() - t0 + float(prev.get("wall_time_s", 0.0)), "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
        "bf16": bool(bf16 and dev.type == "cuda"), "compile": bool(compile),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "n_train_rows": len(ds), "n_distinct_images": len(uniq),
    }
    if stopped or prev.get("stopped_early"):
        record["stopped_early"] = list(prev.get("stopped_early", [])) + stopped
    # one entry per call, so a model trained in several resumed runs says what each run did
    record["runs"] = list(prev.get("runs", [])) + [{
        "stages": [done + 1, len(stages)], "unet_steps": total - int(prev.get("unet_steps", 0)),
        "wall_time_s": time.time() - t0, "device": str(dev), "threads": torch.get_num_threads(),
        "steps_per_s": [round(r, 2) for r in steps_per_s],
    }]
    if out is not None:
        save_model(out, recipe, ds, tokenizer, text_encoder, vae, unet, comps["scheduler"], record)
        for name in ("vocab.json", "merges.txt"):  # the hand-written BPE files, kept beside tokenizer.json
            (Path(out) / "tokenizer" / name).write_text((tok_dir / name).read_text())
    return {"record": record, "tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet,
            "scheduler": comps["scheduler"], "dataset": ds}


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _to_png(image: np.ndarray, path: Path) -> None:
    """Write a ``(3, H, W)`` image in [-1, 1] as an 8-bit RGB PNG."""
    arr = np.clip(np.rint((np.transpose(image, (1, 2, 0)) + 1) * 127.5), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="RGB").save(path, optimize=True)


def save_model(out: str | Path, recipe: dict, ds: captioned.CaptionedDataset, tokenizer, text_encoder, vae, unet,
               scheduler, record: dict) -> Path:
    """Save the pipeline with ``save_pretrained``, ``recipe.json``, ``training.json``, the prompt lists and images.

    ``prompts/memorized.jsonl`` and ``prompts/control.jsonl`` carry each title with its training image
    (``planted/NNN.png``, ``control/NNN.png``, 8-bit PNGs); ``prompts/held_out.jsonl`` the held-out captions.
    """
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
    rows = []
    for j, (cap, img) in enumerate(zip(ds.planted_captions, ds.planted_images, strict=True)):
        _to_png(img, out / "planted" / f"{j:03d}.png")
        rows.append({"caption": cap, "image": f"planted/{j:03d}.png"})
    _jsonl(out / "prompts" / "memorized.jsonl", rows)
    ctrl_caps, ctrl_imgs = tiny_sd.control_captions_and_images(ds)
    rows = []
    for j, (cap, img) in enumerate(zip(ctrl_caps, ctrl_imgs, strict=True)):
        _to_png(img, out / "control" / f"{j:03d}.png")
        rows.append({"caption": cap, "image": f"control/{j:03d}.png"})
    _jsonl(out / "prompts" / "control.jsonl", rows)
    _jsonl(out / "prompts" / "held_out.jsonl", [{"caption": c} for c in ds.held_out_captions])
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m repdiff.sd.tiny_sd[_train] RECIPE.json [--out DIR] [--device cpu|cuda] [--threads N]
    [--resume-from DIR]``."""
    ap = argparse.ArgumentParser(description="Train the course's tiny Stable Diffusion from a recipe.")
    ap.add_argument("recipe", help="recipe JSON (data/tiny_sd/recipe.json)")
    ap.add_argument("--out", default=None, help="output folder (default: the recipe's folder)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoint-every", type=int, default=0, help="also save every N U-Net steps")
    ap.add_argument("--checkpoint-dir", default=None, help="where those interim checkpoints go")
    ap.add_argument("--resume-from", default=None,
                    help="a checkpoint folder (state.pt: exact continuation) or a saved model folder to continue from")
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 on a GPU too")
    ap.add_argument("--compile", action="store_true", help="run the U-Net through torch.compile")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe_path = Path(args.recipe)
    recipe = json.loads(recipe_path.read_text())
    out = Path(args.out) if args.out else recipe_path.parent
    res = train(recipe, out=out, device=args.device, log=lambda s: print(s, flush=True),
                checkpoint_every=args.checkpoint_every, checkpoint_dir=args.checkpoint_dir,
                resume_from=args.resume_from, bf16=not args.no_bf16, compile=args.compile,
                progress=not args.no_progress)
    print(json.dumps(res["record"], indent=2))


if __name__ == "__main__":
    main()
