"""Helpers the autograded assignments' tests use (Part V): one kind of message for every test.

The otter test cells of the master notebooks in ``assignments/source/`` import them at grading time
(``from repdiff.grading import answer, assert_close``), so this module ships in the course wheel that every
autograder zip carries:

- :func:`answer` calls a student's function and turns an empty stub or a crash into a message that says
  what to do;
- :func:`assert_close` compares an answer with the course's reference and, when they differ, names the
  likely slip (σ for σ², λ for nλ, the sample standard deviation for the population one, a flipped sign)
  by checking which mistaken formula the answer matches;
- :func:`assert_raises_value_error` checks that bad input raises ``ValueError``.

Building the assignments (otter assign, the student notebooks, the autograder zips) is not part of the
package: see ``tools/build_assignments.py`` and ``scripts/build_assignments.sh``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "SLIP_TOLERANCE",
    "answer",
    "assert_close",
    "assert_raises_value_error",
]

#: relative error below which an answer is taken to match a (right or mistaken) formula
SLIP_TOLERANCE = 1e-6


def _as_float_array(x: Any) -> np.ndarray | None:
    """``x`` as a float64 numpy array, or None if it is not numeric (a stub's ``...``, a string, ...)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def answer(func: Any, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Call a student's function; fail with a readable message if it is missing, empty or crashes.

    Used by the tests of every assignment. ``func`` is what the notebook defined (``None`` when the cell
    defining it was never run). A stub left as ``...`` returns ``None`` (or ``Ellipsis``); both are reported
    as "not written yet" instead of an error further down.

    Raises:
        AssertionError: with a message naming the function and what to do.
    """
    label = name or getattr(func, "__name__", "your function")
    if func is None:
        raise AssertionError(f"{label} is not defined: run the cell that defines it (and the cells above it) first")
    if not callable(func):
        raise AssertionError(f"{label} should be a function, but it is a {type(func).__name__}")
    try:
        out = func(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"{label} is not written yet: replace the `...` in its cell with your code") from None
    except Exception as exc:  # the student's own code failed: say where, not a traceback from the test file
        raise AssertionError(f"calling {label} raised {type(exc).__name__}: {exc}") from None
    if out is None or out is Ellipsis:
        raise AssertionError(
            f"{label} returned {out!r}: it is not written yet (replace the `...` in its cell with your code "
            "and `return` the result)"
        )
    return out


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / (denom if denom > 0 else 1.0)


def assert_close(
    what: str,
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-6,
    slips: Mapping[str, Any] | None = None,
    hint: str = "",
) -> None:
    """Assert that ``actual`` matches ``expected`` (relative Frobenius error ≤ ``rtol``); explain a miss.

    When they differ, each entry of ``slips`` (a description → the value a mistaken formula gives) is
    compared with ``actual``; the first one that matches is named in the message, e.g. "your values match
    the formula with σ in place of σ²". Otherwise the message gives the error and ``hint``.

    Args:
        what: what is compared, as the student would say it ("r_i for the data set X").
        actual: the student's value (numpy, torch, list or number). expected: the reference.
        rtol: tolerance on ‖actual − expected‖ / ‖expected‖.
        slips: optional mapping from a slip's description to the value that slip produces.
        hint: one sentence appended to the message when no slip matches.

    Raises:
        AssertionError: shape mismatch, NaN/inf, or a value outside the tolerance.
    """
    a, e = _as_float_array(actual), _as_float_array(expected)
    if e is None:
        raise TypeError(f"expected value for {what!r} is not numeric")
    if a is None:
        raise AssertionError(f"{what}: expected numbers, got a {type(actual).__name__}")
    if a.shape != e.shape:
        raise AssertionError(f"{what}: expected shape {e.shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise AssertionError(f"{what}: your answer contains NaN or infinity")
    err = _rel_err(a, e)
    if err <= rtol:
        return
    for description, value in (slips or {}).items():
        v = _as_float_array(value)
        if v is not None and v.shape == a.shape and _rel_err(a, v) <= max(rtol, SLIP_TOLERANCE):
            raise AssertionError(f"{what}: your answer matches {description}. {hint}".strip())
    raise AssertionError(f"{what}: relative error {err:.3g} (allowed {rtol:.1g}). {hint}".strip())


def assert_raises_value_error(func: Any, cases: list[tuple[tuple, str]], name: str | None = None) -> None:
    """Assert that ``func(*args)`` raises ``ValueError`` for every ``(args, why)`` in ``cases``; explain a miss.

    Used by the assignments' bad-input tests (A1 q4, A3 q1 and q6): a function that returns (an empty stub
    included) or raises another exception fails with "<name> should raise ValueError for <why>".
    """
    name = name or getattr(func, "__name__", "the function")
    for args, why in cases:
        try:
            func(*args)
        except ValueError:
            continue
        except Exception as exc:
            raise AssertionError(f"{name} should raise ValueError for {why}, it raised "
                                 f"{type(exc).__name__}: {exc}") from None
        raise AssertionError(f"{name} should raise ValueError for {why}")
