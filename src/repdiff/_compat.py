"""Differences between the library versions the course supports (Colab's and requirements.txt's).

Colab (late 2026) ships diffusers 0.39, which takes ``torch_dtype=`` in ``from_pretrained`` and silently ignores
``dtype=``; diffusers 0.42 (requirements.txt) takes ``dtype=`` and deprecates ``torch_dtype=``. Used by
:func:`repdiff.tiny_sd.load_pipeline` (Chapters 12-14) and :func:`repdiff.sd_hub.load_sd14` (Chapter 13).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import torch

__all__ = ["diffusers_dtype_kwargs", "check_pipeline_dtype"]


def _major_minor(dist: str) -> tuple[int, int]:
    parts = version(dist).split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def diffusers_dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``{"dtype": dtype}`` for diffusers ≥ 0.42, ``{"torch_dtype": dtype}`` for older ones (0.39 on Colab)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    return {"dtype": dtype} if _major_minor("diffusers") >= (0, 42) else {"torch_dtype": dtype}


def check_pipeline_dtype(pipe: Any, dtype: torch.dtype) -> Any:
    """Return ``pipe`` if its U-Net, VAE and text encoder hold ``dtype`` weights; RuntimeError naming them if not."""
    wrong = [f"{name} is {mod.dtype}" for name in ("unet", "vae", "text_encoder")
             if (mod := getattr(pipe, name, None)) is not None and mod.dtype != dtype]
    if wrong:
        raise RuntimeError(f"the pipeline was asked for {dtype} but loaded with " + ", ".join(wrong)
                           + f" (diffusers {version('diffusers')}: see repdiff._compat)")
    return pipe
