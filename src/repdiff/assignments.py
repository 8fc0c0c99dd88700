"""The autograded assignments of Part V: building them with otter-grader, and helpers their tests use.

Two kinds of code live here.

**Helpers for the assignments' tests** (imported inside the otter test cells of the master notebooks in
``assignments/source/``, so that every test gives the same kind of message):

- :func:`answer` calls a student's function and turns an empty stub or a crash into a message that says
  what to do;
- :func:`assert_close` compares an answer with the course's reference and, when they differ, names the
  likely slip (σ for σ², λ for nλ, the sample standard deviation for the population one, a flipped sign)
  by checking which mistaken formula the answer matches.

**Building** (instructors and CI): :func:`build` runs ``otter assign`` on one master notebook (which
re-runs every test against the solutions), :func:`sync_students` rebuilds every master and writes, or
with ``check=True`` compares, the student notebooks and public tests committed under
``assignments/student/`` (those are what the book's Colab badges open). From the repository root::

    python -m repdiff.assignments            # rebuild every assignment, refresh assignments/student/
    python -m repdiff.assignments --check    # exit 1 if assignments/student/ is out of date
    python -m repdiff.assignments --dist DIR # also keep the full otter output (autograder zips) in DIR
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .paths import repo_root

__all__ = [
    "SLIP_TOLERANCE",
    "answer",
    "assert_close",
    "assert_raises_value_error",
    "master_notebooks",
    "repository",
    "build",
    "sync_students",
]

#: relative error below which an answer is taken to match a (right or mistaken) formula
SLIP_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------------------------------------
# Helpers for the tests inside the assignments
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Building the assignments with otter-grader
# ---------------------------------------------------------------------------------------------------------


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


def _assignments_dir() -> Path:
    return repo_root() / "assignments"


def master_notebooks() -> list[Path]:
    """The master notebooks ``assignments/source/<name>/<name>.ipynb``, in name order."""
    src = _assignments_dir() / "source"
    return sorted(p for p in src.glob("*/*.ipynb") if p.stem == p.parent.name)


def repository() -> dict[str, str]:
    """The repository URL and branch from ``_config.yml`` (the one place the course writes them).

    Returns:
        dict with ``url`` (no trailing slash), ``branch``, ``colab`` (the Colab prefix of a notebook link,
        ending in ``/blob/<branch>/``) and ``pip`` (a pip requirement that installs the course package).
    """
    import yaml

    cfg = yaml.safe_load((repo_root() / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    org_repo = url.split("github.com/")[1]
    return {
        "url": url,
        "branch": branch,
        "colab": f"{colab}/github/{org_repo}/blob/{branch}/",
        "pip": f"repdiff @ git+{url}@{branch}",
    }


def build(master: Path, out_dir: Path, *, run_tests: bool = True, timeout: float = 600) -> dict[str, Path]:
    """Run ``otter assign --no-pdfs`` on one master notebook, from a scratch copy of its folder.

    The copy gets a ``requirements.txt`` naming the course package (from :func:`repository`), which otter
    puts into the autograder zip (the grading image installs it). With ``run_tests`` otter executes the
    solutions and fails if any test, public or hidden, fails on them.

    Args:
        master: ``assignments/source/<name>/<name>.ipynb``. out_dir: where otter writes ``student/`` and
            ``autograder/`` (created). run_tests: let otter check the solutions. timeout: seconds.

    Returns:
        dict with ``student`` (the student notebook), ``tests`` (its public tests folder), ``autograder``
        (the autograder folder) and ``zip`` (the autograder zip).

    Raises:
        FileNotFoundError: no such master. RuntimeError: otter failed (its output is in the message).
    """
    master = Path(master).resolve()
    if not master.is_file():
        raise FileNotFoundError(f"no master notebook at {master}")
    out_dir = Path(out_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="otter-src-") as tmp:
        work = Path(tmp) / master.parent.name
        shutil.copytree(master.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        (work / "requirements.txt").write_text(repository()["pip"] + "\n")
        cmd = [sys.executable, "-m", "otter", "assign", "--no-pdfs"]
        if not run_tests:
            cmd.append("--no-run-tests")
        cmd += [str(work / master.name), str(out_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=work)
    if result.returncode != 0:
        raise RuntimeError(
            f"otter assign failed on {master.name} (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    zips = sorted((out_dir / "autograder").glob("*-autograder_*.zip"))
    student = out_dir / "student" / master.name
    if not student.is_file() or not zips:
        raise RuntimeError(f"otter assign produced no student notebook or autograder zip in {out_dir}")
    return {"student": student, "tests": out_dir / "student" / "tests", "autograder": out_dir / "autograder",
            "zip": zips[-1]}


def _normalised_notebook(path: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """What matters in a student notebook: each cell's type, source and tags (cell ids are random)."""
    nb = json.loads(path.read_text())
    return [
        (c["cell_type"], "".join(c["source"]), tuple(c.get("metadata", {}).get("tags", []))) for c in nb["cells"]
    ]


def _strip_notebook(path: Path) -> None:
    """Clear outputs and execution counts (the repository commits notebooks without outputs)."""
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _differences(built: dict[str, Path], committed: Path) -> list[str]:
    name = built["student"].name
    problems = []
    nb = committed / name
    if not nb.is_file():
        return [f"{nb} is missing"]
    if _normalised_notebook(nb) != _normalised_notebook(built["student"]):
        problems.append(f"{nb} differs from what otter assign builds from its master")
    want = {p.name for p in built["tests"].glob("*.py")}
    have = {p.name for p in (committed / "tests").glob("*.py")}
    if want != have:
        problems.append(f"{committed / 'tests'} holds {sorted(have)}, otter builds {sorted(want)}")
    for f in sorted(want & have):
        if not filecmp.cmp(built["tests"] / f, committed / "tests" / f, shallow=False):
            problems.append(f"{committed / 'tests' / f} differs from the built public test")
    return problems


def sync_students(
    *, check: bool = False, run_tests: bool = True, dist: Path | None = None, log: Callable[[str], None] = print
) -> list[str]:
    """Build every master and refresh (or, with ``check``, compare) ``assignments/student/<name>/``.

    The student folder holds exactly the student notebook (outputs stripped) and its public ``tests/``:
    what a student needs, in Colab or a clone. Hidden tests and solutions never go there.

    Returns:
        the list of problems found (``check=True``); empty when everything is up to date or was written.
    """
    problems: list[str] = []
    student_root = _assignments_dir() / "student"
    for master in master_notebooks():
        with tempfile.TemporaryDirectory(prefix="otter-dist-") as tmp:
            out = Path(dist) / master.stem if dist is not None else Path(tmp)
            if out.exists():
                shutil.rmtree(out)
            built = build(master, out, run_tests=run_tests)
            _strip_notebook(built["student"])
            target = student_root / master.stem
            if check:
                found = _differences(built, target)
                problems += found
                log(f"{master.stem}: {'out of date' if found else 'up to date'}")
            elif target.exists() and not _differences(built, target):
                # otter draws new random cell ids on every build: leave an up-to-date folder untouched
                log(f"{master.stem}: up to date, {target.relative_to(repo_root())} left as it is")
            else:
                if target.exists():
                    shutil.rmtree(target)
                (target / "tests").mkdir(parents=True)
                shutil.copy2(built["student"], target / built["student"].name)
                for f in sorted(built["tests"].glob("*.py")):
                    shutil.copy2(f, target / "tests" / f.name)
                log(f"{master.stem}: wrote {target.relative_to(repo_root())}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare assignments/student/ with a fresh build")
    parser.add_argument("--no-run-tests", action="store_true", help="skip otter's run of the tests on the solutions")
    parser.add_argument("--dist", type=Path, default=None, help="keep otter's full output (autograder zips) here")
    args = parser.parse_args(argv)
    problems = sync_students(check=args.check, run_tests=not args.no_run_tests, dist=args.dist)
    for p in problems:
        print(p)
    if problems:
        print("run `python -m repdiff.assignments` to rebuild assignments/student/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
