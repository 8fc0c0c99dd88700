"""The real Stable Diffusion v1.4 path of Chapters 12-14 (Colab with a GPU; needs the Hugging Face hub).

- :func:`require_gpu_and_hub` says clearly, before anything large is fetched, when a GPU or the hub is
  missing (offline, every chapter runs the course's tiny model instead).
- :func:`load_sd14` loads ``CompVis/stable-diffusion-v1-4`` in fp16 with a DDIM scheduler and no safety
  checker (as the paper's code does).
- :func:`memorized_prompts` downloads the public list of 500 memorized SD v1 prompts
  (``sdv1_500_memorized.jsonl``, Webster 2023 as redistributed by Wen et al.) at run time;
  :func:`non_memorized_prompts` the first prompts of ``Gustavosta/Stable-Diffusion-Prompts`` (what the
  authors' demo uses as the non-memorized side).
- :func:`generate_cached` writes every generation to disk as a PNG named by set, index and seed, so an
  interrupted run resumes where it stopped.
- :func:`sd14_unet_config` holds the SD v1.4 U-Net configuration, so the representation code can be tested
  offline on the full architecture with random weights (no download).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ._compat import check_pipeline_dtype, diffusers_dtype_kwargs

__all__ = [
    "SD14_ID",
    "MEMORIZED_URL",
    "NON_MEMORIZED_DATASET",
    "HubUnavailable",
    "hub_reachable",
    "require_gpu_and_hub",
    "load_sd14",
    "memorized_prompts",
    "non_memorized_prompts",
    "generate_cached",
    "sd14_unet_config",
]

SD14_ID = "CompVis/stable-diffusion-v1-4"
MEMORIZED_URL = ("https://raw.githubusercontent.com/YuxinWenRick/diffusion_memorization/main/examples/"
                 "sdv1_500_memorized.jsonl")
NON_MEMORIZED_DATASET = "Gustavosta/Stable-Diffusion-Prompts"


class HubUnavailable(RuntimeError):
    """Raised when the SD v1.4 path cannot run here (no GPU, or no access to the hub)."""


def hub_reachable(timeout: float = 5.0) -> bool:
    """True when huggingface.co answers and the hub is not switched off (``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in (
        "", "0"):
        return False
    try:
        urllib.request.urlopen("https://huggingface.co/api/models/" + SD14_ID, timeout=timeout)  # noqa: S310
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False
    return True


def require_gpu_and_hub(*, need_gpu: bool = True, check_hub: Callable[[], bool] = hub_reachable) -> None:
    """Raise :class:`HubUnavailable` with a clear message unless a CUDA GPU and the hub are available."""
    problems = []
    if need_gpu and not torch.cuda.is_available():
        problems.append("no CUDA GPU is visible (in Colab: Runtime > Change runtime type > T4 GPU)")
    if not check_hub():
        problems.append("the Hugging Face hub cannot be reached (network off, or HF_HUB_OFFLINE is set)")
    if problems:
        raise HubUnavailable(
            "The Stable Diffusion v1.4 path needs a GPU and the Hugging Face hub (about 2.7 GB of fp16 weights "
            "and the public prompt lists are downloaded at run time): " + "; ".join(problems) + ". "
            "Everything in this chapter also runs offline on the course's tiny model (repdiff.tiny_sd)."
        )


def load_sd14(device: str = "cuda", dtype: torch.dtype = torch.float16):
    """``CompVis/stable-diffusion-v1-4`` in fp16 with a DDIM scheduler and the safety checker off."""
    require_gpu_and_hub(need_gpu=(device != "cpu"))
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(SD14_ID, **diffusers_dtype_kwargs(dtype), safety_checker=None,
                                                   requires_safety_checker=False)
    check_pipeline_dtype(pipe, dtype)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _cache_dir(cache_dir: str | Path | None) -> Path:
    d = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "repdiff"
    d.mkdir(parents=True, exist_ok=True)
    return d


def parse_jsonl_captions(text: str) -> list[str]:
    """Captions of a JSONL file with one ``{"caption": ...}`` object per line (blank lines skipped)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        obj = json.loads(line)
        if "caption" not in obj:
            raise ValueError(f"line {i + 1} has no 'caption' field: {line[:80]!r}")
        out.append(str(obj["caption"]))
    return out


def memorized_prompts(n: int = 500, cache_dir: str | Path | None = None, url: str = MEMORIZED_URL) -> list[str]:
    """The first ``n`` of the 500 public memorized SD v1 prompts (downloaded once, then read from the cache)."""
    path = _cache_dir(cache_dir) / "sdv1_500_memorized.jsonl"
    if not path.exists():
        try:
            with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310
                text = r.read().decode("utf-8")
        except Exception as e:  # noqa: BLE001
            raise HubUnavailable(f"could not download the memorized-prompt list from {url}: {e}") from e
        path.write_text(text)
    caps = parse_jsonl_captions(path.read_text())
    return caps[:n]


def non_memorized_prompts(n: int = 500, cache_dir: str | Path | None = None) -> list[str]:
    """The first ``n`` prompts of ``Gustavosta/Stable-Diffusion-Prompts`` (train split), cached as JSONL."""
    path = _cache_dir(cache_dir) / f"gustavosta_first{n}.jsonl"
    if not path.exists():
        try:
            from datasets import load_dataset

            ds = load_dataset(NON_MEMORIZED_DATASET, split=f"train[:{n}]")
        except Exception as e:  # noqa: BLE001
            raise HubUnavailable(f"could not load {NON_MEMORIZED_DATASET} from the hub: {e}") from e
        path.write_text("".join(json.dumps({"caption": p}) + "\n" for p in ds["Prompt"]))
    return parse_jsonl_captions(path.read_text())[:n]


def generate_cached(generate_one: Callable[[str, int], np.ndarray], prompts: Sequence[str], folder: str | Path, *,
                    tag: str, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Generate one image per prompt, caching each as ``<folder>/<tag>_<index>_s<seed>.png``; resumes.

    Args:
        generate_one: ``(prompt, seed) -> (H, W, 3) uint8 or float in [0, 1]`` image.
        prompts: the prompts, in order.
        folder: the cache folder (e.g. on Google Drive, so a disconnected Colab session resumes).
        tag: a name for the prompt set (``"mem"``, ``"gen"``).
        seed: prompt ``i`` is generated with seed ``seed + i``.
    Returns:
        ``(N, 3, H, W)`` float32 in [-1, 1].
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    it = range(len(prompts))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"generating {tag}")
    out = []
    for i in it:
        f = folder / f"{tag}_{i:04d}_s{seed + i}.png"
        if not f.exists():
            img = np.asarray(generate_one(prompts[i], seed + i))
            if img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            tmp = f.with_suffix(".tmp.png")
            Image.fromarray(img).save(tmp)
            tmp.replace(f)  # atomic: a half-written file never looks finished
        arr = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 127.5 - 1
        out.append(arr.transpose(2, 0, 1))
    return np.stack(out)


def sd14_unet_config() -> dict:
    """The ``UNet2DConditionModel`` configuration of SD v1.4 (values of its ``unet/config.json``)."""
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "center_input_sample": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "act_fn": "silu",
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
    }
