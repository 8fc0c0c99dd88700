"""Small helpers that let every public function take numpy arrays *or* torch tensors.

The course's convention (COURSE.md §5): a function given numpy arrays returns numpy arrays, a function
given tensors returns tensors. Internally the work is done in torch; numpy inputs are computed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def to_tensor(x: Any, name: str, *, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``; numpy input becomes a float64 tensor.

    Raises a ``TypeError`` naming ``name`` for anything that is not an array, a tensor, a list or a number.
    """
    if isinstance(x, torch.Tensor):
        t = x if dtype is None else x.to(dtype)
        if not t.is_floating_point():
            t = t.double()
        return t, False
    if isinstance(x, np.ndarray | list | tuple | float | int):
        arr = np.asarray(x, dtype=np.float64)
        t = torch.from_numpy(arr)
        return (t if dtype is None else t.to(dtype)), True
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def like_input(t: torch.Tensor, was_numpy: bool) -> ArrayLike:
    """Give back the kind the caller passed in (numpy array or tensor)."""
    return t.detach().cpu().numpy() if was_numpy else t


def require_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or infinity (never let a NaN travel silently)."""
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def require_positive(value: float, name: str) -> float:
    """Return ``float(value)`` if it is a finite number > 0, else raise ``ValueError``."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v
