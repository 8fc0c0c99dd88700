"""SD v1.4's architecture, random weights, through Part IV's GPU path: does it fit a free Colab T4? (Chapters 12-14)

``scripts/gpu_check.sh`` runs ``python -m repdiff.sd.gpu_check``: the full SD v1.4 U-Net, VAE and CLIP text
encoder (:func:`repdiff.sd.random_sd14.random_sd14_pipeline`, nothing downloaded) in fp16 at 512×512, through every
GPU stage the chapters' Colab cells run, each with the batch sizes :func:`repdiff.sd.gpu_memory.t4_batch_sizes`
picks for a 15 GB T4:

0. ``build`` and ``load``: the random pipeline is saved in the hub's layout (``fp16`` variant) and read back
   with :func:`repdiff.sd.hub.load_sd14`, the loader the Colab cells use, on this machine's libraries.
1. ``probe``: one U-Net batch, one VAE encode and one VAE decode at those sizes; the memory per item is compared
   with :data:`repdiff.sd.gpu_memory.PER_ITEM_BYTES` (what the batch sizes are planned from).
2. ``estimate``: :func:`repdiff.sd.gpu_memory.estimate_run` (what a Colab run prints before it starts).
3. ``generate``: guided DDIM sampling (:func:`repdiff.sd.pipeline.generate`, 30 steps, guidance 7.5).
4. ``pipeline``: ``StableDiffusionPipeline.__call__`` through the resumable cache
   (:func:`repdiff.sd.hub.generate_cached_batches`), run twice: the second run must generate nothing.
5. ``detector``: the paper's detector (:func:`repdiff.sd.detection.detector_scores`: VAE encode, re-noise to t = 10,
   one U-Net pass with the empty prompt, ``up_blocks.0.resnets.2`` max-pooled, Std).
6. ``wen``: Wen et al.'s first-step score (:func:`repdiff.sd.detection.wen_scores`).
7. ``concept``: the authors' steering vectors from 50 reference images (:func:`repdiff.sd.steering.concept_vectors`,
   mean-pooled at the authors' five blocks, t = 10, with the concept prompt).
8. ``steering``: ``a·v`` added to the conditional half at those blocks during the authors' window (U-Net calls
   18-37 of 40, guidance 3.5) for a few strengths (:func:`repdiff.sd.steering.steer`).

For each stage it prints the seconds and the peak GPU memory (``torch.cuda.max_memory_allocated`` and
``max_memory_reserved``) and fails (exit status 1) if a stage raises, gives a non-finite or wrongly shaped
result, or its peak reserved memory exceeds the T4 budget (:data:`repdiff.sd.gpu_memory.T4_BYTES`, 14 GiB = 15.0 GB).
Flash attention is switched off on GPUs that have it, so attention runs the memory-efficient kernel a T4 uses.

``--cpu-small`` runs the same stages on a CPU at 64×64 with tiny widths and 2 sampling steps (under a minute;
``tests/test_sd_hub.py`` runs it), which checks the wiring but not the memory.

The chapters' functions are called through the ``api_*`` functions below, one line each: if a signature in
:mod:`repdiff.sd.pipeline`, :mod:`repdiff.sd.detection` or :mod:`repdiff.sd.steering` changes, the fix is here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repdiff.sd import detection, gpu_memory, pipeline, random_sd14, steering
from repdiff.sd import hub as sd_hub
from repdiff.sd.stage_runner import StageResult, StageRunner, expect, expect_finite, expect_scores, over_budget, table

__all__ = ["Settings", "GPU", "CPU_SMALL", "StageResult", "run_checks", "over_budget", "main"]


@dataclass(frozen=True)
class Settings:
    """What one check runs (GPU: SD v1.4 at 512², bounded to a few minutes on an H100)."""

    size: int = 512
    small: bool = False
    dtype: str = "float16"
    n_prompts: int = 8  # one full T4 batch of guided prompts
    steps: int = 30
    guidance: float = 7.5
    pipeline_steps: int = 10  # the StableDiffusionPipeline call only checks that path; fewer steps
    n_refs: int = 50  # the authors' reference-set size
    steer_steps: int = 40
    steer_window: tuple[int, int] = (18, 38)  # the authors' U-Net calls 18..37 of 40
    steer_guidance: float = 3.5
    strengths: tuple[float, ...] = (0.0, 0.3, 0.5)
    batch_cap: int = 8


GPU = Settings()
CPU_SMALL = Settings(size=64, small=True, dtype="float32", n_prompts=3, steps=2, pipeline_steps=2, n_refs=5,
                     steer_steps=4, steer_window=(1, 3), strengths=(0.0, 0.5), batch_cap=2)

PROMPTS = ("a photo of a cat in the city at night", "a realistic portrait of an old man", "a red book cover",
           "a painting of a white dog", "a poster of a blue city", "a young woman with a cat",
           "the light of the city at night", "an old painting of a man with a dog")
CONCEPT_PROMPT = ("A high-resolution front-facing portrait of an elderly woman, wrinkles, aged skin texture, gray "
                  "hair, looking directly at the camera, natural lighting, highly detailed, realistic photography, 8k")
STEER_PROMPTS = ("A high-resolution front-facing portrait of a woman, looking directly at the camera, cinematic "
                 "lighting, highly detailed skin texture, realistic photography, 8k",
                 "Living in the Light with Ann Graham Lotz")


# ----------------------------------------------------------------------------------------------- the chapters' API
def api_generate(pipe, prompts, *, steps: int, guidance: float, seed: int, batch_size: int) -> pipeline.Generation:
    return pipeline.generate(pipe, list(prompts), steps=steps, guidance=guidance, seed=seed, batch_size=batch_size)


def api_detect(pipe, images: torch.Tensor, *, batch_size: int) -> tuple[np.ndarray, float]:
    return detection.detector_scores(pipe, images, site=detection.DETECTION_SITE, t=10, pooling="max", score="std",
                                     batch_size=batch_size, value_range=(-1.0, 1.0))


def api_wen(pipe, prompts, *, steps: int, batch_size: int) -> tuple[np.ndarray, float]:
    return detection.wen_scores(pipe, list(prompts), steps=steps, batch_size=batch_size)


def api_concept_vectors(pipe, images: torch.Tensor, prompt: str, *, batch_size: int) -> dict[str, torch.Tensor]:
    """The authors' vectors, in chunks of ``batch_size`` images (weighted mean of the chunk means, chunk ``k``
    read with ``seed=k``): :func:`repdiff.sd.steering.concept_vectors` reads its whole set in one batch."""
    total: dict[str, torch.Tensor] = {}
    for k, i in enumerate(range(0, len(images), batch_size)):
        part = images[i:i + batch_size]
        v = steering.concept_vectors(pipe, part, prompt, steering.STEERING_SITES, t=10, seed=k,
                                     value_range=(-1.0, 1.0))
        for site, x in v.items():
            total[site] = total.get(site, 0) + x.double() * len(part)
    return {site: (x / len(images)).float() for site, x in total.items()}


def api_steer(unet, vectors: dict[str, torch.Tensor], a: float, *, start: int, stop: int) -> AbstractContextManager:
    return steering.steer(unet, vectors, a, start=start, stop=stop)


# ----------------------------------------------------------------------------------------------- stages
def run_checks(settings: Settings, device: str | torch.device, *, seed: int = 0, verbose: bool = True,
               cache_dir: str | Path | None = None) -> list[StageResult]:
    """Run every stage once; returns one :class:`StageResult` per stage (failures are recorded, not raised)."""
    device = torch.device(device)
    dtype = getattr(torch, settings.dtype)
    s = settings
    r = StageRunner(device, verbose)
    state: dict[str, Any] = {}

    def build(res: StageResult) -> None:
        pipe = random_sd14.random_sd14_pipeline(device, dtype, small=s.small, seed=seed)
        expect(pipe.unet.dtype == dtype, f"U-Net is {pipe.unet.dtype}, not {dtype}")
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        expect(pipe.unet.config.sample_size * vae_scale == s.size,
                f"the U-Net's latents ({pipe.unet.config.sample_size}) do not make {s.size}² images")
        state["pipe"] = pipe
        n = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) for k in ("unet", "vae", "text_encoder")}
        res.info = {"parameters": n, "model_bytes": gpu_memory.model_bytes(pipe)}
        res.note = ("parameters: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in n.items())
                    + f"; weights {gpu_memory.model_bytes(pipe) / 2**30:.2f} GiB")

    r.stage("build", build)
    pipe = state.get("pipe")
    if pipe is None:
        return r.results

    def load(res: StageResult) -> None:
        """The Colab loader on this machine's libraries: save in the hub's layout (fp16 variant), load, compare."""
        folder = Path(tempfile.mkdtemp(prefix="sd14_random_"))
        try:
            variant = "fp16" if dtype == torch.float16 else None  # what load_sd14 asks for by default
            pipe.save_pretrained(folder, variant=variant)
            loaded = sd_hub.load_sd14(str(device), dtype, model_id=folder, verbose=False)
            for name in ("unet", "vae", "text_encoder"):
                a, b = next(getattr(pipe, name).parameters()), next(getattr(loaded, name).parameters())
                expect(b.dtype == dtype and torch.equal(a, b), f"{name} reloaded as {b.dtype}, or other weights")
            res.note = (f"load_sd14 (diffusers {'.'.join(map(str, sd_hub.diffusers_version()))}, "
                        f"{sd_hub.dtype_keyword()}=..., variant {variant}) read the saved weights back in {dtype}")
            del loaded
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    r.stage("load", load)
    cap_free = None if device.type == "cuda" or not s.small else 2**40  # CPU: the cap decides
    sizes = gpu_memory.t4_batch_sizes(pipe, s.size, s.size, cap=s.batch_cap, free_bytes=cap_free)
    state["sizes"] = sizes
    if verbose:
        print(f"   batch sizes for a T4 at {s.size}²: {sizes}", flush=True)

    def probe(res: StageResult) -> None:
        lat = pipe.unet.config.sample_size  # 64 for 512² images
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        per: dict[str, float] = {}
        with torch.no_grad():
            ctx = pipeline.encode_prompts(pipe, [""])
            for kind, n, run in (
                ("unet", sizes["unet"], lambda n: pipe.unet(
                    torch.randn(n, 4, lat, lat, device=device, dtype=dtype), 500,
                    encoder_hidden_states=ctx.expand(n, -1, -1))),
                ("vae_encode", sizes["encode"], lambda n: pipe.vae.encode(
                    torch.rand(n, 3, s.size, s.size, device=device, dtype=dtype) * 2 - 1)),
                ("vae_decode", sizes["decode"], lambda n: pipe.vae.decode(
                    torch.randn(n, 4, lat, lat, device=device, dtype=dtype))),
            ):
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                run(n)
                if device.type == "cuda":
                    per[kind] = (torch.cuda.max_memory_allocated(device) - base) / n
        res.info = {"t4_batch_sizes": sizes}
        if per:
            planned = {k: gpu_memory.PER_ITEM_BYTES[k] * s.size**2 / 512**2 * torch.finfo(dtype).bits / 16 for k in per}
            res.info.update(bytes_per_item=per, planned_bytes_per_item=planned)
            res.note = "per item: " + ", ".join(
                f"{k} {per[k] / 2**20:.0f} MiB (planned {planned[k] / 2**20:.0f})" for k in per)
            over = [k for k in per if per[k] > planned[k]]
            if over:  # a warning, not a failure: the stage peaks below are what must fit
                res.note += f"; WARNING: {over} above gpu_memory.PER_ITEM_BYTES, raise it"

    r.stage("probe", probe, batch=f"unet {sizes['unet']}, encode {sizes['encode']}, decode {sizes['decode']}")

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(s.n_prompts)]

    def estimate(res: StageResult) -> None:
        est = gpu_memory.estimate_run(pipe, len(prompts), steps=s.steps, batch_size=sizes["generate"], verbose=verbose)
        expect(np.isfinite(est["seconds"]) and est["seconds"] > 0, f"estimate {est}")
        res.info = est
        state["estimate"] = est["seconds"]
        res.note = f"predicts {est['seconds']:.1f} s for the generate stage"

    r.stage("estimate", estimate, batch=f"{sizes['generate']} prompts")

    def generate(res: StageResult) -> None:
        g = api_generate(pipe, prompts, steps=s.steps, guidance=s.guidance, seed=seed, batch_size=sizes["generate"])
        expect(tuple(g.images.shape) == (len(prompts), 3, s.size, s.size), f"images of shape {tuple(g.images.shape)}")
        expect_finite(g.images, "generated images")
        expect_finite(g.wen_first, "Wen et al.'s first-step score")
        expect_finite(g.wen_mean, "Wen et al.'s all-steps score")
        state["images"] = g.images
        res.info = {"seconds_per_sample": g.seconds_per_sample}
        res.note = f"{len(prompts)} prompts x {s.steps} steps, {g.seconds_per_sample:.2f} s per image"
        if "estimate" in state:
            res.note += f" (estimate: {state['estimate']:.1f} s in all)"

    r.stage("generate", generate, batch=f"{sizes['generate']} prompts (U-Net {2 * sizes['generate']})")
    images = state.get("images")
    if images is None:  # later stages still run, on stand-in images
        images = torch.rand(len(prompts), 3, s.size, s.size) * 2 - 1

    def pipeline_call(res: StageResult) -> None:
        folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="sd_gpu_check_"))
        calls: list[int] = []
        gen = sd_hub.pipeline_batch_generator(pipe, steps=s.pipeline_steps, guidance=s.guidance)

        def counted(ps: list[str], seeds: list[int]) -> np.ndarray:
            calls.append(len(ps))
            return gen(ps, seeds)

        n = min(len(prompts), sizes["generate"] + 1)  # one full batch and a remainder
        a = sd_hub.generate_cached_batches(counted, prompts[:n], folder, tag="check", seed=seed,
                                           batch_size=sizes["generate"], progress=False)
        expect(a.shape == (n, 3, s.size, s.size), f"cached images of shape {a.shape}")
        expect_finite(a, "pipeline images")
        first = sum(calls)
        b = sd_hub.generate_cached_batches(counted, prompts[:n], folder, tag="check", seed=seed,
                                           batch_size=sizes["generate"], progress=False)
        expect(first == n and sum(calls) == n, f"generated {calls} images for {n} prompts (the rerun must resume)")
        expect(np.array_equal(a, b), "the resumed run read back other images")
        res.note = f"{n} images in batches {calls}, rerun generated none"

    r.stage("pipeline", pipeline_call, batch=f"{sizes['generate']} prompts")

    def detector(res: StageResult) -> None:
        sc, sec = api_detect(pipe, images, batch_size=sizes["detect"])
        expect_scores(sc, len(images), "detector scores")
        res.info = {"scores": np.asarray(sc).tolist(), "seconds_per_image": sec}
        res.note = f"Std {np.min(sc):.3g}..{np.max(sc):.3g}, {sec:.3f} s per image"

    r.stage("detector", detector, batch=f"{sizes['detect']} images")

    def wen(res: StageResult) -> None:
        sc, sec = api_wen(pipe, prompts, steps=s.steps, batch_size=sizes["wen"])
        expect_scores(sc, len(prompts), "Wen et al.'s scores")
        res.info = {"scores": np.asarray(sc).tolist(), "seconds_per_prompt": sec}
        res.note = f"{sec:.3f} s per prompt"

    r.stage("wen", wen, batch=f"{sizes['wen']} prompts (U-Net {2 * sizes['wen']})")

    def concept(res: StageResult) -> None:
        reps = (s.n_refs + len(images) - 1) // len(images)
        refs = torch.cat([images, images.flip(-1)] * reps)[:s.n_refs]
        v = api_concept_vectors(pipe, refs, CONCEPT_PROMPT, batch_size=min(sizes["encode"], sizes["unet"]))
        for site in steering.STEERING_SITES:
            expect(site in v and v[site].ndim == 1, f"no (C,) vector at {site}")
            expect_finite(v[site], f"the vector at {site}")
        state["vectors"] = v
        res.note = f"{s.n_refs} references; |v| " + ", ".join(f"{float(x.norm()):.3g}" for x in v.values())

    r.stage("concept", concept, batch=f"{min(sizes['encode'], sizes['unet'])} images")

    def steer(res: StageResult) -> None:
        v = state.get("vectors")
        expect(v is not None, "no steering vectors (the concept stage failed)")
        outs = []
        b = sizes["generate"]
        for a in s.strengths:
            parts = []
            # one steering context per batch: steer() counts U-Net calls from its start, so a second batch in the
            # same context would fall outside the step window
            for i in range(0, len(STEER_PROMPTS), b):
                with api_steer(pipe.unet, v, a, start=s.steer_window[0], stop=s.steer_window[1]) as st:
                    g = api_generate(pipe, STEER_PROMPTS[i:i + b], steps=s.steer_steps, guidance=s.steer_guidance,
                                     seed=seed + 2025 + i, batch_size=b)
                expect(st["calls"] == s.steer_steps, f"{st['calls']} U-Net calls counted for {s.steer_steps} steps")
                parts.append(g.images)
            outs.append(torch.cat(parts))
            expect_finite(outs[-1], f"images steered with a = {a}")
        change = steering.pixel_change(outs)  # (K, P) RMS change from a = 0
        expect(bool((change[1:] > 0).all()), f"steering changed nothing: RMS change {change.tolist()}")
        res.info = {"rms_change": change.tolist()}
        res.note = f"a = {list(s.strengths)}; RMS change at the largest a {change[-1].round(3).tolist()}"

    r.stage("steering", steer, batch=f"{len(STEER_PROMPTS)} prompts x {len(s.strengths)} strengths")
    return r.results


def _environment(device: torch.device) -> dict[str, Any]:
    import diffusers
    import transformers

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
           "transformers": transformers.__version__, "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 2))
    return env


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m repdiff.sd.gpu_check [--cpu-small] [--json FILE]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m repdiff.sd.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-small", action="store_true", help="64×64, tiny widths, 2 steps, on the CPU (< 1 min)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--budget-gib", type=float, default=gpu_memory.T4_BYTES / 2**30,
                    help="fail if a stage's peak GPU memory exceeds this (default: a T4's 14 GiB = 15.0 GB)")
    ap.add_argument("--keep-flash", action="store_true",
                    help="keep flash attention (default: off, so attention runs the kernel a T4 uses)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.cpu_small:
        settings, device = CPU_SMALL, torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU is visible (use --cpu-small to check the wiring on a CPU)", file=sys.stderr)
            return 2
        settings, device = GPU, torch.device("cuda")
        if not args.keep_flash:  # a T4 (sm75) has neither flash nor cuDNN attention: use the kernel it runs
            for switch in ("enable_flash_sdp", "enable_cudnn_sdp"):
                if hasattr(torch.backends.cuda, switch):
                    getattr(torch.backends.cuda, switch)(False)
    torch.manual_seed(args.seed)
    env = _environment(device)
    print("environment:", json.dumps(env), flush=True)
    print("settings:", json.dumps(asdict(settings)), flush=True)
    t0 = time.perf_counter()
    results = run_checks(settings, device, seed=args.seed)
    total = time.perf_counter() - t0
    budget = args.budget_gib * 2**30
    over = over_budget(results, budget) if device.type == "cuda" else []
    failed = [r.name for r in results if not r.ok]
    expected = ["build", "load", "probe", "estimate", "generate", "pipeline", "detector", "wen", "concept", "steering"]
    missing = [n for n in expected if n not in {r.name for r in results}]
    print("\n" + table(results))
    print(f"total {total:.1f} s; budget {args.budget_gib:.2f} GiB per stage"
          + (" (not measured on a CPU)" if device.type != "cuda" else ""))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "settings": asdict(settings), "total_seconds": total,
                                         "budget_bytes": budget, "over_budget": over, "failed": failed,
                                         "missing": missing, "stages": [asdict(r) for r in results]},
                                        indent=1, default=float))
    problems = ([f"stage failed: {n}" for n in failed] + [f"over the {args.budget_gib:.2f} GiB budget: {n}"
                                                          for n in over] + [f"did not run: {n}" for n in missing])
    if problems:
        print("GPU CHECK FAILED: " + "; ".join(problems))
        return 1
    print("GPU CHECK PASSED" + (" (cpu-small: wiring only, no memory figures)" if device.type != "cuda" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
