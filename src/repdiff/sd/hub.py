"""The real Stable Diffusion v1.4 path of Chapters 12-14 (Colab with a GPU; needs the Hugging Face hub).

- :func:`require_gpu_and_hub` says clearly, before anything large is fetched, when a GPU or the hub is
  missing (offline, every chapter runs the course's tiny model instead).
- :func:`load_sd14` loads ``CompVis/stable-diffusion-v1-4`` in fp16 from its ``fp16`` weight variant (about
  2.1 GB without the safety checker, instead of twice that in fp32), with a DDIM scheduler and no safety
  checker (as the paper's code does). It passes the dtype under the keyword the installed diffusers
  understands (``torch_dtype`` before 0.42, ``dtype`` from 0.42 on) and checks the loaded U-Net's dtype.
- :mod:`repdiff.sd.gpu_memory` bounds every U-Net and VAE batch by the free GPU memory, or by a free Colab
  T4's 15 GB, and prints the time and memory a run will take before it starts.
- :func:`memorized_prompts` downloads the public list of 500 memorized SD v1 prompts
  (``sdv1_500_memorized.jsonl``, Webster 2023 as redistributed by Wen et al.) at run time;
  :func:`non_memorized_prompts` the first prompts of ``Gustavosta/Stable-Diffusion-Prompts`` (what the
  authors' demo uses as the non-memorized side).
- :func:`generate_cached` / :func:`generate_cached_batches` write every generation to disk as a PNG named by set,
  index and seed, and :func:`cached_array` stores scores, so a disconnected Colab session resumes where it stopped.
- :mod:`repdiff.sd.random_sd14` holds SD v1.4's configurations and builds the architecture with random
  weights (no download), for the tests and ``scripts/gpu_check.sh``.

A Colab cell of Chapters 13-14 (every batch bounded for a T4, the cost printed first, a disconnect resumes)::

    sd = sd_hub.load_sd14()                         # fp16 variant, dtype checked, DDIM, no safety checker
    bs = gpu_memory.t4_batch_sizes(sd)              # {"generate": ..., "detect": ..., "wen": ..., "encode": ...}
    cache = "/content/drive/MyDrive/repdiff_sd14"   # or ~/repdiff_sd14_cache
    gpu_memory.estimate_run(sd, len(prompts), steps=50, batch_size=bs["generate"])   # "about N min, M GiB"
    gen = sd_hub.pipeline_batch_generator(sd, steps=50, guidance=7.5)
    X = torch.from_numpy(sd_hub.generate_cached_batches(gen, prompts, cache, tag="mem", seed=0,
                                                        batch_size=bs["generate"]))        # [-1, 1]
    S = sd_hub.cached_array(f"{cache}/std_mem.npy", lambda: detection.detector_scores(
        sd, X, batch_size=bs["detect"], value_range=(-1, 1))[0])
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repdiff._compat import DTYPE_KEYWORD_SINCE, _parse_version, diffusers_version, dtype_keyword  # noqa: F401

__all__ = [
    "SD14_ID",
    "MEMORIZED_URL",
    "NON_MEMORIZED_DATASET",
    "SD14_PARAMETERS",
    "HubUnavailable",
    "hub_reachable",
    "require_gpu_and_hub",
    "diffusers_version",
    "dtype_keyword",
    "load_sd14",
    "memorized_prompts",
    "non_memorized_prompts",
    "generate_cached",
    "generate_cached_batches",
    "pipeline_batch_generator",
    "cached_array",
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
            f"The Stable Diffusion v1.4 path needs a GPU and the Hugging Face hub (about "
            f"{_sd14_download_gb(torch.float16, 'fp16'):.1f} GB of fp16 weights and the public prompt lists are "
            "downloaded at run time): " + "; ".join(problems) + ". "
            "Everything in this chapter also runs offline on the course's tiny model (repdiff.sd.tiny_sd)."
        )


def load_sd14(device: str = "cuda", dtype: torch.dtype = torch.float16, *, model_id: str | Path = SD14_ID,
              variant: str | None = "auto", scheduler: str = "ddim", verbose: bool = True):
    """``CompVis/stable-diffusion-v1-4`` in fp16 with a DDIM scheduler and the safety checker off.

    Works with the diffusers of Colab today (0.39, ``torch_dtype=``) and with the course's pin (0.42,
    ``dtype=``): the keyword is chosen by :func:`dtype_keyword`, and the loaded U-Net, VAE and text encoder are
    checked to hold ``dtype`` (a RuntimeError otherwise: an fp32 SD v1.4 does not leave room on a T4 for the
    batches of :func:`repdiff.sd.gpu_memory.t4_batch_sizes`).

    Args:
        device: ``"cuda"`` (Colab's T4) or ``"cpu"`` (only useful with a local ``model_id``).
        dtype: the weights' dtype.
        model_id: a hub id, or a local folder in the same layout (``save_pretrained``); a local folder needs no hub.
        variant: ``"auto"``: the ``fp16`` weight files when ``dtype`` is fp16 (half the download), else the
            full-precision ones; or an explicit variant name, or ``None``.
        scheduler: ``"ddim"`` (the paper's sampler) or ``"default"`` (the repository's own).
    """
    local = Path(model_id).is_dir()
    if local:
        if device != "cpu" and not torch.cuda.is_available():
            raise HubUnavailable("no CUDA GPU is visible (in Colab: Runtime > Change runtime type > T4 GPU)")
    else:
        require_gpu_and_hub(need_gpu=(device != "cpu"))
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    if variant == "auto":
        variant = "fp16" if dtype == torch.float16 else None
    kwargs: dict[str, Any] = {dtype_keyword(diffusers_version()): dtype}
    if variant is not None:
        kwargs["variant"] = variant
    if verbose:
        print(f"loading {model_id} ({dtype}, variant={variant}): about {_sd14_download_gb(dtype, variant):.1f} GB "
              "the first time, then from the local cache")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(str(model_id), safety_checker=None,
                                                       requires_safety_checker=False, **kwargs)
    except Exception as e:
        if local or not _is_network_error(e):
            raise
        raise HubUnavailable(f"could not download {model_id} from the Hugging Face hub ({type(e).__name__}: {e}); "
                             "run the cell again to resume the download") from e
    wrong = {name: getattr(pipe, name).dtype for name in ("unet", "vae", "text_encoder")
             if getattr(pipe, name).dtype != dtype}
    if wrong:
        raise RuntimeError(f"asked for {dtype} but loaded {wrong} (diffusers {'.'.join(map(str, diffusers_version()))}"
                           f" was given {next(iter(kwargs))}=...): the dtype keyword was not understood")
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif scheduler != "default":
        raise ValueError(f"scheduler must be 'ddim' or 'default', got {scheduler!r}")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


#: parameters of SD v1.4's parts, as built from :mod:`repdiff.sd.random_sd14`'s configurations (the test counts
#: them again)
SD14_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def _is_network_error(e: BaseException) -> bool:
    """True for the errors a lost connection raises while downloading (OS-level, ``requests``, ``httpx``, hub)."""
    if isinstance(e, (OSError, ConnectionError, TimeoutError)):
        return True
    return any(type(x).__module__.split(".")[0] in ("requests", "httpx", "urllib3", "huggingface_hub")
               for x in type(e).__mro__)


def _sd14_download_gb(dtype: torch.dtype, variant: str | None) -> float:
    """Approximate size of SD v1.4's U-Net, VAE and text encoder weights (GB): parameters × bytes per value."""
    n_params = sum(SD14_PARAMETERS.values())
    return n_params * (2 if variant == "fp16" or dtype in (torch.float16, torch.bfloat16) else 4) / 1e9


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
    return generate_cached_batches(lambda ps, ss: [generate_one(ps[0], ss[0])], prompts, folder, tag=tag, seed=seed,
                                   batch_size=1, progress=progress)


def _cache_file(folder: Path, tag: str, i: int, seed: int) -> Path:
    return folder / f"{tag}_{i:04d}_s{seed}.png"


def generate_cached_batches(generate_batch: Callable[[list[str], list[int]], Any], prompts: Sequence[str],
                            folder: str | Path, *, tag: str, seed: int = 0, batch_size: int = 8,
                            progress: bool = True) -> np.ndarray:
    """:func:`generate_cached` in batches: only prompts without a cached PNG are generated, ``batch_size`` at a time.

    Each finished image is written at once (atomically: a half-written file never looks finished), so an
    interrupted run loses at most one batch. The file of prompt ``i`` is ``<folder>/<tag>_<i:04d>_s<seed+i>.png``
    whatever the batch size, so a run may resume with another one.

    Args:
        generate_batch: ``(prompts, seeds) -> (B, H, W, 3)`` uint8 or float in [0, 1] images (an array, or a list
            of arrays or PIL images), one per prompt, prompt ``k`` from seed ``seeds[k]``
            (:func:`pipeline_batch_generator` makes one from a pipeline).
    Returns:
        ``(N, 3, H, W)`` float32 in [-1, 1], in the order of ``prompts``.
    """
    from PIL import Image

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [_cache_file(folder, tag, i, seed + i) for i in range(len(prompts))]
    todo = [i for i, f in enumerate(files) if not f.exists()]
    if progress and todo:
        print(f"{tag}: {len(prompts) - len(todo)} of {len(prompts)} images cached in {folder}, "
              f"{len(todo)} to generate")
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    if progress and batches:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"generating {tag} ({batch_size} per batch)")
    for idx in batches:
        imgs = generate_batch([prompts[i] for i in idx], [seed + i for i in idx])
        if len(imgs) != len(idx):
            raise ValueError(f"generate_batch returned {len(imgs)} images for {len(idx)} prompts")
        for i, img in zip(idx, imgs, strict=True):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[-1] != 3:
                raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
            if img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            tmp = files[i].with_suffix(".tmp.png")
            Image.fromarray(img).save(tmp)
            tmp.replace(files[i])
    out = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1 for f in files]
    return np.stack(out) if out else np.zeros((0, 3, 0, 0), dtype=np.float32)


def pipeline_batch_generator(pipe, *, steps: int = 50, guidance: float = 7.5,
                             **call_kwargs: Any) -> Callable[[list[str], list[int]], np.ndarray]:
    """A ``generate_batch`` for :func:`generate_cached_batches` from a ``StableDiffusionPipeline``.

    Each prompt gets its own ``torch.Generator`` seeded with its seed, so an image does not depend on which batch
    it falls in. Returns ``(B, H, W, 3)`` float in [0, 1] (diffusers' ``output_type="np"``).
    """
    def generate_batch(prompts: list[str], seeds: list[int]) -> np.ndarray:
        gens = [torch.Generator(pipe.device).manual_seed(int(s)) for s in seeds]
        return pipe(list(prompts), num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                    output_type="np", **call_kwargs).images

    return generate_batch


def cached_array(path: str | Path, compute: Callable[[], Any]) -> np.ndarray:
    """``compute()`` saved as ``path`` (``.npy``) the first time, read from there afterwards (scores of a Colab run)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"path must end in .npy, got {path.name!r}")
    if path.exists():
        return np.load(path)
    value = np.asarray(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, value)
    tmp.replace(path)
    return value
