"""GPU memory and time of Part IV's SD v1.4 runs: batch sizes that fit a free Colab T4 (Chapters 12-14).

:func:`batch_limit`, :func:`t4_batch_sizes` and :func:`chunked` bound every U-Net and VAE batch by the free GPU
memory, or by a free Colab T4's 15 GB (:data:`T4_BYTES`); :func:`estimate_run` times one U-Net pass and one
VAE decode and prints the time and memory a run will take before it starts. ``scripts/gpu_check.sh``
measures the figures on a GPU (:mod:`repdiff.sd.gpu_check`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["T4_BYTES", "PER_ITEM_BYTES", "model_bytes", "free_gpu_bytes", "batch_limit", "t4_batch_sizes",
           "chunked", "estimate_run"]

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
        ``"generate"``: prompts per batch of :func:`repdiff.sd.pipeline.generate` (guided: two U-Net inputs per
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
