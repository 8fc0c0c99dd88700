"""The real Stable Diffusion v1.4 path of Chapters 12-14 (Colab with a GPU; needs the Hugging Face hub).

- :func:`require_gpu_and_hub` says clearly, before anything large is fetched, when a GPU or the hub is
  missing (offline, every chapter runs the course's tiny model instead).
- :func:`load_sd14` loads ``CompVis/stable-diffusion-v1-4`` in fp16 from its ``fp16`` weight variant (about
  2.1 GB without the safety checker, instead of twice that in fp32), with a DDIM scheduler and no safety
  checker (as the paper's code does). It passes the dtype under the keyword the installed diffusers
  understands (``torch_dtype`` before 0.42, ``dtype`` from 0.42 on) and checks the loaded U-Net's dtype.
- :func:`batch_limit`, :func:`t4_batch_sizes` and :func:`chunked` bound every U-Net and VAE batch by the free GPU
  memory, or by a free Colab T4's 15 GB (:data:`T4_BYTES`); :func:`estimate_run` times one U-Net pass and one
  VAE decode and prints the time and memory a run will take before it starts.
- :func:`memorized_prompts` downloads the public list of 500 memorized SD v1 prompts
  (``sdv1_500_memorized.jsonl``, Webster 2023 as redistributed by Wen et al.) at run time;
  :func:`non_memorized_prompts` the first prompts of ``Gustavosta/Stable-Diffusion-Prompts`` (what the
  authors' demo uses as the non-memorized side).
- :func:`generate_cached` / :func:`generate_cached_batches` write every generation to disk as a PNG named by set,
  index and seed, and :func:`cached_array` stores scores, so a disconnected Colab session resumes where it stopped.
- :func:`sd14_unet_config`, :func:`sd14_vae_config`, :func:`sd14_text_config` and :func:`sd14_scheduler_config`
  hold SD v1.4's configurations, and :func:`random_sd14_pipeline` builds the full architecture with random weights
  (no download): the representation code is tested offline on it, and ``scripts/gpu_check.sh`` measures its
  memory and time on a GPU (:mod:`repdiff.sd.gpu_check`).

A Colab cell of Chapters 13-14 (every batch bounded for a T4, the cost printed first, a disconnect resumes)::

    sd = sd_hub.load_sd14()                         # fp16 variant, dtype checked, DDIM, no safety checker
    bs = sd_hub.t4_batch_sizes(sd)                  # {"generate": ..., "detect": ..., "wen": ..., "encode": ...}
    cache = "/content/drive/MyDrive/repdiff_sd14"   # or ~/repdiff_sd14_cache
    sd_hub.estimate_run(sd, len(prompts), steps=50, batch_size=bs["generate"])   # "about N min, M GiB"
    gen = sd_hub.pipeline_batch_generator(sd, steps=50, guidance=7.5)
    X = torch.from_numpy(sd_hub.generate_cached_batches(gen, prompts, cache, tag="mem", seed=0,
                                                        batch_size=bs["generate"]))        # [-1, 1]
    S = sd_hub.cached_array(f"{cache}/std_mem.npy", lambda: detection.detector_scores(
        sd, X, batch_size=bs["detect"], value_range=(-1, 1))[0])
"""

from __future__ import annotations

import json
import math
import os
import time
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
    "T4_BYTES",
    "PER_ITEM_BYTES",
    "HubUnavailable",
    "hub_reachable",
    "require_gpu_and_hub",
    "diffusers_version",
    "dtype_keyword",
    "load_sd14",
    "model_bytes",
    "free_gpu_bytes",
    "batch_limit",
    "t4_batch_sizes",
    "chunked",
    "estimate_run",
    "memorized_prompts",
    "non_memorized_prompts",
    "generate_cached",
    "generate_cached_batches",
    "pipeline_batch_generator",
    "cached_array",
    "sd14_unet_config",
    "sd14_vae_config",
    "sd14_text_config",
    "sd14_scheduler_config",
    "random_sd14_pipeline",
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
    batches of :func:`t4_batch_sizes`).

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


#: parameters of SD v1.4's parts, as built from :func:`sd14_unet_config`, :func:`sd14_vae_config` and
#: :func:`sd14_text_config` (the test counts them again)
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


# ----------------------------------------------------------------------------------------------- GPU memory
#: the GPU memory a run may use to fit a free Colab T4 (15 GB = 14 GiB; the card has 14.7 GiB, of which the CUDA
#: context takes a few hundred MB)
T4_BYTES = 14 * 2**30

#: upper bounds on the GPU memory one item adds to a batch, in fp16 at 512×512 (64×64 latents), with PyTorch's
#: scaled-dot-product attention. ``"unet"``: one U-Net input (a guided prompt is two); ``"vae_encode"`` /
#: ``"vae_decode"``: one image. Scaled by the number of pixels and the bytes per value. On a CPU in fp32, SD v1.4's
#: parts added at most about 270 (U-Net), 660 (encode) and 1000 MiB (decode) of peak memory per item (batches of 1 and
#: 2): half of that in fp16, so these bounds leave about 2x room. ``scripts/gpu_check.sh`` measures the GPU figures
#: and says if one is exceeded.
PER_ITEM_BYTES = {"unet": 512 * 2**20, "vae_encode": 768 * 2**20, "vae_decode": 1024 * 2**20}


def model_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of the pipeline's U-Net, VAE and text encoder."""
    total = 0
    for name in ("unet", "vae", "text_encoder"):
        m = getattr(pipe, name, None)
        if m is not None:
            total += sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])
    return total


def free_gpu_bytes(device: int | str | torch.device | None = None) -> int | None:
    """Bytes a new batch can use on the current CUDA device (free memory + what PyTorch holds unused); ``None``
    without a GPU."""
    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def batch_limit(kind: str, height: int = 512, width: int = 512, *, free_bytes: int | None = None,
                dtype: torch.dtype = torch.float16, cap: int = 64, safety: float = 0.8) -> int:
    """How many items of ``kind`` one batch may hold in ``free_bytes`` of GPU memory (at least 1, at most ``cap``).

    Args:
        kind: ``"unet"`` (one U-Net input; classifier-free guidance doubles a prompt), ``"vae_encode"`` or
            ``"vae_decode"`` (one image).
        height, width: the images' size in pixels (the U-Net's latents are 8× smaller).
        free_bytes: memory available for activations; default: :func:`free_gpu_bytes` (``cap`` without a GPU).
            For a T4's budget pass ``T4_BYTES - model_bytes(pipe)`` (:func:`t4_batch_sizes` does).
        safety: the share of ``free_bytes`` that is planned for.
    """
    if kind not in PER_ITEM_BYTES:
        raise ValueError(f"kind must be one of {sorted(PER_ITEM_BYTES)}, got {kind!r}")
    if height < 1 or width < 1 or cap < 1:
        raise ValueError(f"need positive height, width and cap, got {height}, {width}, {cap}")
    if free_bytes is None:
        free_bytes = free_gpu_bytes()
        if free_bytes is None:
            return cap
    per_item = PER_ITEM_BYTES[kind] * (height * width) / 512**2 * torch.finfo(dtype).bits / 16
    return int(max(1, min(cap, math.floor(free_bytes * safety / per_item))))


def t4_batch_sizes(pipe, height: int = 512, width: int = 512, *, free_bytes: int | None = None,
                   cap: int = 8) -> dict[str, int]:
    """Batch sizes for Chapters 12-14's calls that fit a free 15 GB T4 (or ``free_bytes``, if given).

    Returns:
        ``"generate"``: prompts per batch of :func:`repdiff.sd.detection.generate` (guided: two U-Net inputs per
        prompt; each batch is decoded at once), ``"wen"``: prompts per :func:`repdiff.sd.detection.wen_scores` batch,
        ``"detect"``: images per :func:`repdiff.sd.detection.detector_scores` batch (one VAE encode and one U-Net pass),
        ``"encode"`` / ``"decode"``: images per VAE batch, ``"unet"``: U-Net inputs per batch. ``cap`` bounds
        prompts and images per batch (larger batches buy little on a T4).
    """
    if free_bytes is None:
        free_bytes = T4_BYTES - model_bytes(pipe)
    if free_bytes <= 0:
        raise ValueError(f"the model alone ({model_bytes(pipe) / 2**30:.1f} GiB) does not leave memory for a batch")
    dtype = pipe.unet.dtype

    def lim(kind: str) -> int:
        return batch_limit(kind, height, width, free_bytes=free_bytes, dtype=dtype, cap=2 * cap)

    unet, enc, dec = lim("unet"), lim("vae_encode"), lim("vae_decode")
    return {
        "unet": unet,
        "encode": min(cap, enc),
        "decode": min(cap, dec),
        "generate": max(1, min(cap, unet // 2, dec)),
        "wen": max(1, min(cap, unet // 2)),
        "detect": max(1, min(cap, enc, unet)),
    }


def chunked(fn: Callable[[Any], Any], items: Any, batch_size: int) -> Any:
    """Apply ``fn`` to consecutive chunks of at most ``batch_size`` items and join the results along axis 0.

    ``items`` is a tensor, an array or a sequence; ``fn`` returns a tensor, an array, a list, or a tuple of
    these (joined element-wise). Used to keep every VAE and U-Net batch within :func:`batch_limit`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(items)
    if n == 0:
        raise ValueError("nothing to process: items is empty")
    parts = [fn(items[i:i + batch_size]) for i in range(0, n, batch_size)]
    return _join(parts)


def _join(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, tuple):
        return tuple(_join([p[k] for p in parts]) for k in range(len(first)))
    if isinstance(first, list):
        return [x for p in parts for x in p]
    raise TypeError(f"cannot join results of type {type(first).__name__}")


@torch.no_grad()
def estimate_run(pipe, n_prompts: int, *, steps: int, batch_size: int, guidance: bool = True,
                 height: int | None = None, width: int | None = None, verbose: bool = True) -> dict[str, float]:
    """Time one U-Net pass and one VAE decode at ``batch_size`` and extrapolate a whole generation run.

    Printed before a long run (Chapters 12-13 in Colab), so that the user sees "about 9 minutes, 6.1 GB" before
    committing a session to it. Returns ``{"seconds": ..., "peak_bytes": ... (GPU only, else nan),
    "seconds_per_unet_pass": ..., "seconds_per_decode": ...}``.
    """
    if n_prompts < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"need n_prompts, steps, batch_size >= 1, got {n_prompts}, {steps}, {batch_size}")
    unet, vae = pipe.unet, pipe.vae
    dev, dtype = unet.device, unet.dtype
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h = (height or unet.config.sample_size * scale) // scale
    w = (width or unet.config.sample_size * scale) // scale
    b = min(batch_size, n_prompts)
    n_in = 2 * b if guidance else b
    z = torch.randn(n_in, unet.config.in_channels, h, w, device=dev, dtype=dtype)
    ctx = torch.zeros(n_in, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim, device=dev, dtype=dtype)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    unet(z, 500, encoder_hidden_states=ctx)  # warm-up (kernel selection)
    timings = []
    for fn in (lambda: unet(z, 500, encoder_hidden_states=ctx),
               lambda: vae.decode(z[:b] / vae.config.scaling_factor)):
        if cuda:
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(dev)
        timings.append(time.perf_counter() - t0)
    n_batches = math.ceil(n_prompts / b)
    seconds = n_batches * (steps * timings[0] + timings[1])
    peak = float(torch.cuda.max_memory_allocated(dev)) if cuda else float("nan")
    if verbose:
        mem = f", peak GPU memory about {peak / 2**30:.1f} GiB" if cuda else ""
        print(f"{n_prompts} prompts x {steps} steps in {n_batches} batches of {b}: about {seconds / 60:.1f} min"
              f" ({timings[0]:.3f} s per U-Net pass, {timings[1]:.3f} s per decode){mem}")
    return {"seconds": seconds, "peak_bytes": peak, "seconds_per_unet_pass": timings[0],
            "seconds_per_decode": timings[1]}


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


def sd14_vae_config() -> dict:
    """The ``AutoencoderKL`` configuration of SD v1.4 (values of its ``vae/config.json``): 512² images, 64² latents."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def sd14_text_config() -> dict:
    """The ``CLIPTextConfig`` of SD v1.4's text encoder (CLIP ViT-L/14's text tower: 12 layers, width 768)."""
    return {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def sd14_scheduler_config() -> dict:
    """SD v1.4's noise schedule (its ``scheduler/scheduler_config.json``, as a DDIM scheduler)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    }


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
