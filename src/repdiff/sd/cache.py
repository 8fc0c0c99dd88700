"""Results of the tiny SD kept on disk, so that the chapters and assignments of one build compute each once.

Chapters 12-14 and Assignment 3 read the same screening (:func:`repdiff.sd.screening.screen`), and Assignment
3's solution and student notebooks run the same steering sweep (:func:`repdiff.sd.steering.sweep`).
:func:`cached` stores such a result under ``$REPDIFF_CACHE/sd`` (default ``~/.cache/repdiff/sd``), keyed by
everything it depends on:

- the pipeline (:func:`fingerprint`): its weights, its scheduler and the U-Net's dtype and device;
- the call's arguments (:func:`digest` hashes tensors and arrays by value);
- the course's code (every ``.py`` file of :mod:`repdiff`): an entry written by other code is never read.

An entry is locked while one process computes it (:func:`lock`): a second process asking for it (the CI's two
environments, two notebooks run side by side) waits, then reads it. CI gives each run a fresh
``$REPDIFF_CACHE``, so no result of an earlier run is reused there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["cache_dir", "fingerprint", "digest", "lock", "cached"]

T = TypeVar("T")


def cache_dir() -> Path:
    """``$REPDIFF_CACHE/sd`` (default ``~/.cache/repdiff/sd``)."""
    return Path(os.environ.get("REPDIFF_CACHE", Path.home() / ".cache" / "repdiff")) / "sd"


def _feed(h: Any, x: Any) -> None:
    """Add ``x`` to the hash ``h``, each value tagged with its type (and its length or shape), so that
    ``[[1, 2], [3]]`` and ``[[1], [2, 3]]``, or a float32 and a float64 tensor of equal values, differ."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    if isinstance(x, np.ndarray):
        h.update(f"array:{x.dtype.str}:{x.shape};".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    elif isinstance(x, dict):
        h.update(f"dict:{len(x)};".encode())
        for k in sorted(x, key=repr):
            _feed(h, k)
            _feed(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(f"seq:{len(x)};".encode())
        for v in x:
            _feed(h, v)
    else:
        h.update(f"{type(x).__name__}:{json.dumps(x)};".encode())


def digest(*parts: Any) -> str:
    """A 24-hex-digit sha256 of ``parts``: JSON values, tensors and arrays (dtype, shape and bytes), and lists,
    tuples and dicts of them."""
    h = hashlib.sha256()
    _feed(h, list(parts))
    return h.hexdigest()[:24]


@functools.cache
def _code_digest() -> str:
    """sha256 of every ``.py`` file of the installed :mod:`repdiff` (computed once per process)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint(pipe) -> str:
    """sha256 of what a pipeline's generations depend on besides the prompts and the noise: the weights of its
    U-Net, VAE and text encoder, its scheduler's class and config, and the U-Net's dtype and device type."""
    h = hashlib.sha256()
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        for name, p in sorted(module.state_dict().items()):
            h.update(name.encode())
            _feed(h, p)
    sched = pipe.scheduler
    h.update(json.dumps([type(sched).__name__, dict(sched.config)], sort_keys=True, default=str).encode())
    h.update(f"{pipe.unet.dtype}:{pipe.unet.device.type}".encode())
    return h.hexdigest()


@contextlib.contextmanager
def lock(file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``file``'s cache entry (``<file>.lock``) while computing or reading it: a
    second holder waits until the first one leaves. Without ``fcntl`` (Windows) there is no lock: both
    compute, and the last write wins (the results are the same)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(name: str, key: Sequence[Any], compute: Callable[[], T], *, use: bool = True) -> T:
    """``compute()``, stored at ``cache_dir()/<name>_<digest>.pt`` the first time and read from there after.

    Args:
        name: what the entry holds (``"screening"``, ``"sweep"``), the start of its file name.
        key: everything the result depends on besides the course's code (which is added): a pipeline's
            :func:`fingerprint`, the arguments (tensors included, hashed by value).
        compute: makes the result: tensors, numbers, strings, and lists, tuples and dicts of them (what
            ``torch.load(weights_only=True)`` reads back; numpy arrays are not among them).
        use: ``False`` computes without reading or writing the cache.
    """
    if not use:
        return compute()
    file = cache_dir() / f"{name}_{digest(name, _code_digest(), *key)}.pt"
    with lock(file):
        if file.exists():
            return torch.load(file, weights_only=True)
        out = compute()
        tmp = file.with_suffix(".tmp")
        torch.save(out, tmp)
        tmp.replace(file)
        return out
