"""Run named stages, time them, record their peak GPU memory and what went wrong (``scripts/gpu_check.sh``).

:class:`StageRunner` runs each stage of :mod:`repdiff.sd.gpu_check` once, records a :class:`StageResult`
(failures are recorded, not raised), and :func:`table` prints them; the ``expect*`` helpers turn a wrong
result (shape, NaN, no effect) into a :class:`CheckError`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["StageResult", "CheckError", "StageRunner", "expect", "expect_finite", "expect_scores", "over_budget",
           "table"]


@dataclass
class StageResult:
    """One stage: wall time, peak GPU memory (bytes; NaN on a CPU), the batch sizes used, and what went wrong."""

    name: str
    seconds: float = float("nan")
    peak_allocated: float = float("nan")
    peak_reserved: float = float("nan")
    batch: str = ""
    note: str = ""
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error


class CheckError(RuntimeError):
    """A stage ran but its result is wrong (shape, NaN, no effect)."""


def expect(cond: bool, message: str) -> None:
    """Raise :class:`CheckError` with ``message`` unless ``cond``."""
    if not cond:
        raise CheckError(message)


def expect_finite(x: Any, what: str) -> None:
    """Raise :class:`CheckError` if the tensor or array ``x`` holds NaN or infinity."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    expect(bool(torch.isfinite(t.float()).all()), f"{what} contains NaN or infinity")


def expect_scores(scores: Any, n: int, what: str) -> None:
    """Raise :class:`CheckError` unless ``scores`` are ``n`` finite values, shape ``(n,)``."""
    expect(np.shape(scores) == (n,), f"{what} of shape {np.shape(scores)}, not ({n},)")
    expect_finite(scores, what)


class StageRunner:
    """Runs stages on ``device``, one :class:`StageResult` each in ``results`` (printed as they end if ``verbose``)."""

    def __init__(self, device: torch.device, verbose: bool = True):
        self.device, self.verbose, self.results = device, verbose, []

    def stage(self, name: str, fn: Callable[[StageResult], Any], batch: str = "") -> Any:
        """Run ``fn(result)`` as stage ``name``: returns what it returns, or ``None`` if it raised."""
        res = StageResult(name=name, batch=batch)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.verbose:
            print(f"== {name} {('(' + batch + ')') if batch else ''}", flush=True)
        t0 = time.perf_counter()
        out = None
        try:
            out = fn(res)
            if cuda:
                torch.cuda.synchronize(self.device)
        except Exception as e:  # noqa: BLE001 - every failure is reported and fails the run
            res.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        res.seconds = time.perf_counter() - t0
        if cuda:
            res.peak_allocated = float(torch.cuda.max_memory_allocated(self.device))
            res.peak_reserved = float(torch.cuda.max_memory_reserved(self.device))
        if self.verbose:
            mem = (f", peak {res.peak_allocated / 2**30:.2f} GiB allocated / {res.peak_reserved / 2**30:.2f} GiB "
                   f"reserved" if cuda else "")
            status = "ok" if res.ok else "FAILED: " + res.error
            print(f"   {res.seconds:.1f} s{mem}; {res.note + '; ' if res.note else ''}{status}", flush=True)
        self.results.append(res)
        return out


def over_budget(results: list[StageResult], budget_bytes: float) -> list[str]:
    """Names of the stages whose peak reserved (or allocated) GPU memory exceeds ``budget_bytes``."""
    return [r.name for r in results
            if np.isfinite(r.peak_reserved) and max(r.peak_reserved, r.peak_allocated) > budget_bytes]


def table(results: list[StageResult]) -> str:
    """The results as a text table: seconds, peak GPU memory, batch and status of each stage."""
    rows = [f"{'stage':<10} {'seconds':>8} {'peak alloc GiB':>15} {'peak reserved GiB':>18}  {'batch':<36} status"]
    for r in results:
        gib = (lambda x: f"{x / 2**30:.2f}" if np.isfinite(x) else "-")
        rows.append(f"{r.name:<10} {r.seconds:8.1f} {gib(r.peak_allocated):>15} {gib(r.peak_reserved):>18}  "
                    f"{r.batch:<36} {'ok' if r.ok else 'FAILED'}")
    return "\n".join(rows)
