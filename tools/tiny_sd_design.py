"""The tiny SD's design study (data/tiny_sd/README.md): train recipe variants side by side, screen each stage.

Each variant is the base recipe (``data/tiny_sd/recipe.json`` when run after the study; here :data:`BASE`)
with a few fields changed. Every variant trains in its own process (they share one GPU), and after each U-Net
stage the saved pipeline is screened with the protocol of Chapters 12-13 (plain ``StableDiffusionPipeline``,
DDIM 30 steps, guidance 7.5, the 1/3 nearest-neighbour rule against the distinct training images):

- planted titles, two noise seeds each: share of generations that copy their OWN training poster;
- control titles (posters seen once): share that copy their own poster, and that copy anything;
- held-out captions: share that copy anything;
- the paper's detector (re-noise to t = 10, one pass with the empty prompt, ``up_blocks.0.resnets.2``,
  spatial max, Std), written here without ``repdiff.sd.detection``: AUROC and TPR@1%FPR of copies vs held-out,
  AUROC of copies vs control generations.

Usage (one GPU, about 8 minutes)::

    python tools/tiny_sd_design.py --out DIR [--variants a,b] [--minutes 6.5]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from repdiff import noise  # noqa: E402
from repdiff.sd import tiny_sd, tiny_sd_train  # noqa: E402

#: The study's starting point: the shipped recipe's data, components and VAE stage with the planned U-Net
#: schedule (two stages of 3,000 steps, no early stop) and 4x4 mosaics.
BASE: dict = copy.deepcopy(tiny_sd.DEFAULT_RECIPE)
BASE["dataset"]["mosaic_cells"] = 4
BASE["train_unet"] = {"steps": 3000, "batch_size": 256, "lr": 1e-3, "p_uncond": 0.1, "warmup": 200}
BASE["train_unet_more"] = [{"steps": 3000, "batch_size": 256, "lr": 4e-4, "p_uncond": 0.1, "warmup": 100}]


def _variant(name: str) -> dict:
    r = copy.deepcopy(BASE)
    if name == "p48m4":  # the base: 48 planted titles x 80 copies, 4x4 mosaics
        pass
    elif name == "p48m8":  # 8x8 mosaics (the previous model's look)
        r["dataset"]["mosaic_cells"] = 8
    elif name == "p48m4v":  # the second stage with the v-weighted loss
        r["train_unet_more"][0]["loss_weight"] = "v"
    elif name == "p48m4b128":  # half the batch: half the epochs over the images seen once
        r["train_unet"]["batch_size"] = 128
        r["train_unet_more"][0]["batch_size"] = 128
    else:
        raise ValueError(f"unknown variant {name!r}")
    if SMOKE:  # a seconds-long run on a CPU that exercises every line (not a result)
        r["dataset"].update(n_unique=40, n_planted=4, n_copies=3, n_single_posters=4, n_held_out=6)
        r["train_vae"]["steps"] = 3
        for st in (r["train_unet"], *r["train_unet_more"]):
            st.update(steps=3, warmup=1, batch_size=8)
    return r


SMOKE = False
VARIANTS = ("p48m4", "p48m8", "p48m4v", "p48m4b128")


def _detector_std(pipe, x: torch.Tensor, seed: int) -> np.ndarray:
    dev = pipe.device
    g = torch.Generator(device=dev).manual_seed(seed)
    out = []
    with torch.no_grad():
        ids = pipe.tokenizer([""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids.to(dev)
        ctx1 = pipe.text_encoder(ids)[0]
        for i in range(0, len(x), 256):
            xb = x[i:i + 256].to(dev)
            z = pipe.vae.encode(xb).latent_dist.sample(generator=g) * pipe.vae.config.scaling_factor
            ab = pipe.scheduler.alphas_cumprod[10].to(dev)
            zt = noise.add_noise(z, torch.randn(z.shape, generator=g, device=dev), ab)
            calls: list[torch.Tensor] = []
            hook = pipe.unet.up_blocks[0].resnets[2].nonlinearity.register_forward_hook(
                lambda m, a, o, calls=calls: calls.append(o))
            try:
                pipe.unet(zt, 10, encoder_hidden_states=ctx1.expand(len(xb), -1, -1))
            finally:
                hook.remove()
            out.append(calls[-1].amax(dim=(2, 3)).double().cpu().numpy().std(axis=1))  # last of its 3 calls
    return np.concatenate(out)


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def evaluate(folder: Path, device: str) -> dict:
    """Screen a saved pipeline (see the module docstring)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    recipe = json.loads((folder / "recipe.json").read_text())
    ds = tiny_sd.make_dataset(recipe)
    refs = torch.from_numpy(ds.unique_images())
    non_planted = np.nonzero(ds.kind != "planted")[0]
    n_np = len(non_planted)
    own_mem = [n_np + j for j in range(len(ds.planted_captions))]
    ctrl_caps, _ = tiny_sd.control_captions_and_images(ds)
    pos_in_np = {int(r): i for i, r in enumerate(non_planted)}
    own_ctrl = [pos_in_np[int(r)] for r in np.nonzero(ds.kind == "single_poster")[0]]
    mem = [tiny_sd.screen(pipe, ds.planted_captions, refs, own=own_mem, seed=s) for s in (0, 1)]
    ctrl = tiny_sd.screen(pipe, ctrl_caps, refs, own=own_ctrl, seed=2)
    held = tiny_sd.screen(pipe, ds.held_out_captions, refs, seed=3)
    mem_imgs = torch.cat([m["images"] for m in mem])
    mem_copy = np.concatenate([m["copy"] for m in mem])
    s_mem = _detector_std(pipe, mem_imgs, 11)
    s_ctrl = _detector_std(pipe, ctrl["images"], 12)
    s_held = _detector_std(pipe, held["images"], 13)
    s_copy = s_mem[mem_copy]
    thr = np.percentile(s_held, 99)
    ctrl_any = ctrl["ratio"] < 1 / 3
    return {
        "planted_copy_own": float(mem_copy.mean()),
        "planted_titles_copied_any_seed": float(np.mean(mem[0]["copy"] | mem[1]["copy"])),
        "control_copy_own": float(ctrl["copy"].mean()), "control_copy_any": float(ctrl_any.mean()),
        "held_out_copy_any": float((held["ratio"] < 1 / 3).mean()),
        "median_ratio": {"planted": float(np.median(np.concatenate([m["ratio"] for m in mem]))),
                         "control": float(np.median(ctrl["ratio"])), "held_out": float(np.median(held["ratio"]))},
        "auroc_copies_vs_held": _auroc(s_copy, s_held), "tpr1_copies_vs_held": float(np.mean(s_copy > thr)),
        "auroc_copies_vs_control": _auroc(s_copy, s_ctrl),
        "auroc_all_planted_vs_held": _auroc(s_mem, s_held),
        "n": {"copies": int(mem_copy.sum()), "planted_gens": len(mem_copy), "control": len(ctrl_caps),
              "held_out": len(ds.held_out_captions)},
    }


def run_variant(name: str, out: Path, device: str, stop_at: float) -> None:
    """Train one variant stage by stage (each resumed from the last), screening after each stage."""
    full = _variant(name)
    stages = [full["train_unet"], *full["train_unet_more"]]
    prev = None
    for k in range(len(stages)):
        recipe = copy.deepcopy(full)
        recipe["train_unet_more"] = full["train_unet_more"][:k]
        folder = out / name / f"stage{k + 1}"
        t0 = time.time()
        rec = tiny_sd_train.train(recipe, out=folder, device=device, resume_from=prev, progress=False,
                            log=lambda s, n=name: print(f"[{n}] {s}", flush=True), stop_at=stop_at)["record"]
        t_train = time.time() - t0
        t0 = time.time()
        res = evaluate(folder, device)
        res.update(variant=name, stage=k + 1, train_s=round(t_train, 1), eval_s=round(time.time() - t0, 1),
                   steps_per_s=rec["runs"][-1]["steps_per_s"], unet_steps=rec["unet_steps"],
                   stopped_early=rec.get("stopped_early"), vae_rmse=rec["vae_rmse"], recipe=recipe)
        print(f"[{name}] RESULT {json.dumps({k2: v for k2, v in res.items() if k2 != 'recipe'})}", flush=True)
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
        prev = folder
        if rec.get("stopped_early") or time.time() > stop_at:
            break


def continue_variant(name: str, folder: Path, stage: dict, out: Path, device: str, stop_at: float,
                     bf16: bool) -> None:
    """Add one U-Net stage to a saved stage of a variant (resumed from ``folder``), then screen it.

    The data set is built once and shared by training and screening (both call ``tiny_sd.make_dataset``).
    """
    cache: dict[str, object] = {}
    build = tiny_sd.make_dataset

    def cached(recipe: dict):
        key = json.dumps(recipe, sort_keys=True)
        if key not in cache:
            cache[key] = build(recipe)
        return cache[key]

    tiny_sd.make_dataset = cached  # type: ignore[assignment]
    recipe = json.loads((folder / "recipe.json").read_text())
    recipe["train_unet_more"] = [*recipe.get("train_unet_more", []), stage]
    k = 1 + len(recipe["train_unet_more"])
    dest = out / name / f"stage{k}"
    t0 = time.time()
    rec = tiny_sd_train.train(recipe, out=dest, device=device, resume_from=folder, progress=False, bf16=bf16,
                        log=lambda s: print(f"[{name}] {s}", flush=True), stop_at=stop_at)["record"]
    t_train = time.time() - t0
    t0 = time.time()
    res = evaluate(dest, device)
    res.update(variant=name, stage=k, train_s=round(t_train, 1), eval_s=round(time.time() - t0, 1),
               steps_per_s=rec["runs"][-1]["steps_per_s"], unet_steps=rec["unet_steps"],
               stopped_early=rec.get("stopped_early"), vae_rmse=rec["vae_rmse"], recipe=recipe)
    print(f"[{name}] RESULT {json.dumps({k2: v for k2, v in res.items() if k2 != 'recipe'})}", flush=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")


def pick_stage(rows: list[dict]) -> dict:
    """The stage to keep: meets the copy targets (planted >= 0.8 own copies, held-out <= 0.02) with the best
    copies-vs-control AUROC; else the one with the most planted copies."""
    ok = [r for r in rows if r["planted_copy_own"] >= 0.8 and r["held_out_copy_any"] <= 0.02]
    if ok:
        return max(ok, key=lambda r: (np.nan_to_num(r["auroc_copies_vs_control"]), r["planted_copy_own"]))
    return max(rows, key=lambda r: r["planted_copy_own"])


def pack(out: Path, dest: Path) -> None:
    """Tar the chosen stage of every variant into ``dest/<variant>.tgz`` (the files that come back)."""
    import tarfile

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    dest.mkdir(parents=True, exist_ok=True)
    for v in sorted({r["variant"] for r in rows}):
        best = pick_stage([r for r in rows if r["variant"] == v])
        with tarfile.open(dest / f"{v}.tgz", "w:gz") as tar:
            tar.add(out / v / f"stage{best['stage']}", arcname=f"{v}_stage{best['stage']}")
        print(f"packed {v} stage {best['stage']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--minutes", type=float, default=6.5, help="training stops by then (then screening)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--pack", help="after the runs, tar each variant's chosen stage into this folder")
    ap.add_argument("--smoke", action="store_true", help="tiny data and 3 steps: checks the script runs")
    ap.add_argument("--continue-from", help="a saved stage folder of --variants (one variant): add --stage to it")
    ap.add_argument("--stage", help="the added U-Net stage, as JSON")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global SMOKE
    SMOKE = args.smoke
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.continue_from:
        continue_variant(args.variants, Path(args.continue_from), json.loads(args.stage), out, args.device,
                         time.time() + 60 * args.minutes, bf16=not args.no_bf16)
        if args.pack:
            pack(out, Path(args.pack))
        return
    if args.one:
        run_variant(args.one, out, args.device, args.stop_at)
        return
    stop_at = time.time() + 60 * args.minutes
    extra = ["--smoke"] if args.smoke else []
    procs = [subprocess.Popen([sys.executable, __file__, "--out", str(out), "--one", v, "--device", args.device,
                               "--stop-at", str(stop_at), *extra]) for v in args.variants.split(",")]
    codes = [p.wait() for p in procs]
    print("exit codes:", dict(zip(args.variants.split(","), codes, strict=True)), flush=True)
    if args.pack:
        pack(out, Path(args.pack))


if __name__ == "__main__":
    main()
