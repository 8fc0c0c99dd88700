"""What every chapter's first cells need: device choice, seeding, checks and glue (COURSE.md §3).

Used by every chapter notebook::

    import repdiff
    device = repdiff.setup_notebook(seed=0)
    ...
    repdiff.check("f_emp vs Tweedie", actual, expected, tol=1e-10)
    repdiff.glue("err", err)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import random
import time
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckFailed",
    "check",
    "check_range",
    "checks",
    "fast_mode",
    "get_device",
    "glue",
    "glue_run_time",
    "in_colab",
    "seed_everything",
    "setup_notebook",
]


def in_colab() -> bool:
    """True when running inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def fast_mode() -> bool:
    """True when ``REPDIFF_FAST=1``: chapters may shrink optional extra work (never the checks)."""
    return os.environ.get("REPDIFF_FAST", "0") == "1"


def get_device(prefer: str = "auto", *, verbose: bool = True) -> torch.device:
    """Pick the compute device and say in one line what was chosen.

    Args:
        prefer: ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"``.
        verbose: print the one-line notice.

    Raises:
        RuntimeError: ``prefer="cuda"`` on a machine without a CUDA GPU.
    """
    if prefer not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"prefer must be 'auto', 'cpu' or 'cuda', got {prefer!r}")
    has_cuda = torch.cuda.is_available()
    if prefer == "cuda" and not has_cuda:
        raise RuntimeError(
            "No CUDA GPU is visible. In Colab choose Runtime > Change runtime type > GPU; "
            "locally, run with prefer='cpu' (every chapter also runs on a CPU)."
        )
    device = torch.device("cuda" if (has_cuda and prefer != "cpu") else "cpu")
    if verbose:
        if device.type == "cuda":
            print(f"Device: CUDA GPU ({torch.cuda.get_device_name(device)}).")
        else:
            print(f"Device: CPU ({torch.get_num_threads()} threads) - no GPU needed for this chapter's defaults.")
    return device


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch (CPU and CUDA); return a fresh numpy ``Generator`` with that seed."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - legacy global state, seeded for code that still uses it
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def default_threads() -> int:
    """The course's one thread policy for CPU work: a single thread on machines with at most two cores (the
    course's small matrices and convolutions gain little from threads, and a busy second core makes two threads
    slower), else up to four. ``OMP_NUM_THREADS``, when set, wins."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if cores <= 2 else min(4, cores)


_STARTED: float | None = None  # when setup_notebook ran: the start of the chapter's run time


def setup_notebook(seed: int = 0, prefer: str = "auto", threads: int | None = None) -> torch.device:
    """The setup every chapter runs: figure style, seeds, CPU threads, device (with a one-line notice).

    Args:
        seed: seeds Python, numpy and torch (:func:`seed_everything`).
        prefer: ``"auto"``, ``"cpu"`` or ``"cuda"`` (:func:`get_device`).
        threads: torch's CPU threads; ``None`` applies :func:`default_threads`.

    Returns the chosen ``torch.device``. The call also starts the clock of :func:`glue_run_time`.
    """
    from repdiff.plotting import use_course_style

    global _STARTED
    _STARTED = time.perf_counter()
    use_course_style()
    seed_everything(seed)
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(n)
    return get_device(prefer)


class CheckFailed(AssertionError):
    """Raised by :func:`check` when a numerical check misses its tolerance."""


class CheckResult(float):
    """The number a check measured: a plain ``float`` that Jupyter does not echo at the end of a cell.

    The check already printed its line; echoing the bare number again would only add noise to the page.
    """

    def _ipython_display_(self) -> None:  # noqa: D401 - IPython hook
        return None


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def check(what: str, actual: Any, expected: Any, tol: float, *, relative: bool = True) -> CheckResult:
    """Compare ``actual`` with ``expected``, print the outcome, raise :class:`CheckFailed` if it misses.

    The error is ``‖actual − expected‖ / ‖expected‖`` (Frobenius/Euclidean norms) when ``relative``,
    else the largest absolute difference. The printed line names what was compared, the error and the
    tolerance, so a reader (and a failing CI log) sees exactly what happened.

    Returns:
        the error (a ``float`` that Jupyter does not echo), for gluing into the prose.
    """
    a, e = _as_array(actual), _as_array(expected)
    if a.shape != e.shape:
        raise CheckFailed(f"{what}: shapes differ, {a.shape} vs {e.shape}")
    if not (np.isfinite(a).all() and np.isfinite(e).all()):
        raise CheckFailed(f"{what}: NaN or infinity among the values compared")
    if relative:
        denom = float(np.linalg.norm(e))
        err = float(np.linalg.norm(a - e)) / (denom if denom > 0 else 1.0)
        kind = "relative error"
    else:
        err = float(np.max(np.abs(a - e))) if a.size else 0.0
        kind = "max abs error"
    ok = err <= tol
    print(f"[{'PASS' if ok else 'FAIL'}] {what}: {kind} {err:.3g} (tolerance {tol:.3g})")
    if not ok:
        raise CheckFailed(f"{what}: {kind} {err:.3g} exceeds the tolerance {tol:.3g}")
    return CheckResult(err)


def check_range(what: str, value: float, *, low: float | None = None, high: float | None = None) -> CheckResult:
    """Check that a scalar lies in ``[low, high]`` (either end optional); print and raise like :func:`check`."""
    v = float(value)
    ok = np.isfinite(v) and (low is None or v >= low) and (high is None or v <= high)
    bounds = f"[{'-inf' if low is None else f'{low:.4g}'}, {'inf' if high is None else f'{high:.4g}'}]"
    print(f"[{'PASS' if ok else 'FAIL'}] {what}: {v:.4g} (required range {bounds})")
    if not ok:
        raise CheckFailed(f"{what}: {v:.4g} is outside the required range {bounds}")
    return CheckResult(v)


class checks(contextlib.AbstractContextManager):  # noqa: N801 - used like a function: ``with checks(...)``
    """Run a section's checks and show them as one collapsed block: "✓ N checks passed: <title>".

    Inside the ``with`` block, :func:`check` and :func:`check_range` print as usual; the lines are collected
    and shown at the end as one ``<details>`` block (the book) or one summary line plus the lines (plain
    text). A failing check shows every line collected so far, in full, and its :class:`CheckFailed` propagates,
    so the build still stops at it::

        with repdiff.checks("Tweedie's formula"):
            repdiff.check("f_emp vs Tweedie", actual, expected, tol=1e-10)
            repdiff.check_range("share of copies", share, low=0.8)
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)

    def __enter__(self) -> checks:
        self._redirect.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._redirect.__exit__(exc_type, exc, tb)
        lines = [ln for ln in self._buffer.getvalue().splitlines() if ln.strip()]
        if exc_type is not None:
            print("\n".join(lines))
            return False
        n = sum(ln.startswith("[PASS]") for ln in lines)
        summary = f"✓ {n} check{'s' if n != 1 else ''} passed: {self.title}"
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # plain Python
            print(summary + "".join("\n  " + ln for ln in lines))
            return False
        if get_ipython() is None:
            print(summary + "".join("\n  " + ln for ln in lines))
            return False
        import html

        body = "\n".join(html.escape(ln) for ln in lines)
        display({"text/html": f"<details class='repdiff-checks'><summary>{html.escape(summary)}</summary>"
                              f"<pre>{body}</pre></details>",
                 "text/plain": summary + "".join("\n  " + ln for ln in lines)}, raw=True)
        return False


def glue(name: str, value: Any, *, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's ``{glue}`` roles and directives.

    - During the book build (``REPDIFF_BOOK_BUILD=1``, set by ``scripts/build_book.sh``) this is
      ``myst_nb.glue``; a glued matplotlib figure is then closed, so the page shows it once, where the
      ``{glue:figure}`` directive puts it (with its caption).
    - Anywhere else (Colab, Jupyter, nbval) numbers are printed as ``name = value`` and figures are left to
      the inline backend, so the reader still sees every number and figure the prose refers to.

    numpy and torch scalars become plain Python numbers first (the book shows ``0.123``, not
    ``np.float64(0.123)``). Returns nothing, so a ``glue`` on the last line of a cell adds no output.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        value = float(value)  # e.g. a CheckResult
    is_figure = hasattr(value, "savefig")
    if os.environ.get("REPDIFF_BOOK_BUILD") == "1":
        from myst_nb import glue as _glue

        _glue(name, value, display=display)
        if is_figure:
            import matplotlib.pyplot as plt

            plt.close(value)
    elif not is_figure:
        print(f"{name} = {value}")


def glue_run_time(name: str = "run_seconds") -> float:
    """Glue the seconds since :func:`setup_notebook` ran as ``name``: a chapter's last (hidden) cell calls it,
    and the chapter's header says how long this page took to compute when the book was built
    (``{glue:text}`run_seconds:.0f` s``), a measured time instead of a typed-in promise."""
    if _STARTED is None:
        raise RuntimeError("glue_run_time needs repdiff.setup_notebook() to have run first (it starts the clock)")
    seconds = time.perf_counter() - _STARTED
    glue(name, seconds)
    return CheckResult(seconds)


def glue_all(prefix: str, result: Any) -> None:
    """Glue every scalar field of a result as ``<prefix>_<field>`` (Chapters 12-14): one call per result.

    ``result`` is a dataclass or a dict; numbers, strings and 0-d arrays are glued, anything else (arrays,
    lists) is skipped. Outside the book build one line lists what was glued, instead of one line per value.
    """
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        items = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    elif isinstance(result, dict):
        items = dict(result)
    else:
        raise TypeError(f"glue_all needs a dataclass instance or a dict, got {type(result).__name__}")
    shown = []
    for name, value in items.items():
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
            value = value.item()
        if isinstance(value, (bool, int, float, str, np.generic)):
            with contextlib.redirect_stdout(io.StringIO()):
                glue(f"{prefix}_{name}", value)
            v = value.item() if isinstance(value, np.generic) else value
            shown.append(f"{name}={v:.4g}" if isinstance(v, float) else f"{name}={v}")
    if os.environ.get("REPDIFF_BOOK_BUILD") != "1":
        print(f"{prefix}: " + ", ".join(shown))
