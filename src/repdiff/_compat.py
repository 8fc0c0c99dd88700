"""Differences between the library versions the course supports (Colab's and requirements.txt's).

Colab (late 2026) ships diffusers 0.39, which takes ``torch_dtype=`` in ``from_pretrained`` and silently ignores
``dtype=``; diffusers 0.42 (requirements.txt) takes ``dtype=`` and deprecates ``torch_dtype=``. Used by
:func:`repdiff.sd.tiny_sd.load_pipeline` (Chapters 12-14) and :func:`repdiff.sd.hub.load_sd14` (Chapter 13).
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

import torch

__all__ = ["DTYPE_KEYWORD_SINCE", "diffusers_version", "dtype_keyword", "diffusers_dtype_kwargs",
           "check_pipeline_dtype"]


#: the first diffusers release whose ``from_pretrained`` takes ``dtype=`` (huggingface/diffusers#14205); older
#: releases take ``torch_dtype=`` and ignore ``dtype=`` with only a log line (diffusers 0.39.0 then loads the
#: U-Net and the VAE in fp32: tried on a saved tiny pipeline)
DTYPE_KEYWORD_SINCE = (0, 42)


def _parse_version(text: str) -> tuple[int, ...]:
    """``"0.42.1"`` → ``(0, 42, 1)``; pre-release and local tags are dropped (``"0.43.0.dev0"`` → ``(0, 43, 0)``)."""
    parts = []
    for piece in text.split("+")[0].split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
        if m.end() < len(piece):  # "0rc1": the release number ends here
            break
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def diffusers_version() -> tuple[int, ...]:
    """The installed diffusers' version as a tuple, e.g. ``(0, 39, 0)`` in Colab today."""
    return _parse_version(version("diffusers"))


def dtype_keyword(v: tuple[int, ...] | None = None) -> str:
    """``"dtype"`` for diffusers ≥ 0.42, ``"torch_dtype"`` before (0.42 still accepts it, with a deprecation)."""
    return "dtype" if (diffusers_version() if v is None else tuple(v)) >= DTYPE_KEYWORD_SINCE else "torch_dtype"


def diffusers_dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``{"dtype": dtype}`` for diffusers ≥ 0.42, ``{"torch_dtype": dtype}`` for older ones (0.39 on Colab)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    return {dtype_keyword(): dtype}


def check_pipeline_dtype(pipe: Any, dtype: torch.dtype) -> Any:
    """Return ``pipe`` if its U-Net, VAE and text encoder hold ``dtype`` weights; RuntimeError naming them if not."""
    wrong = [f"{name} is {mod.dtype}" for name in ("unet", "vae", "text_encoder")
             if (mod := getattr(pipe, name, None)) is not None and mod.dtype != dtype]
    if wrong:
        raise RuntimeError(f"the pipeline was asked for {dtype} but loaded with " + ", ".join(wrong)
                           + f" (diffusers {version('diffusers')}: see repdiff._compat)")
    return pipe
