"""Compare the glued values of two builds of the book, chapter by chapter.

    python tools/compare_glue.py BEFORE_DIR AFTER_DIR [--rtol 1e-9] [--ignore-timings] [--partial]

Each directory holds executed notebooks (``_build/executed`` of ``scripts/test.sh``, or
``_build/jupyter_execute`` of a book build), found by their path relative to the directory. For every glued
name (myst-nb ``glue``: an output with ``metadata.scrapbook.name``) it compares the ``text/plain`` value of the
two builds: numbers within ``rtol``, anything else as text. Figures (``image/png``) are reported only as present
or missing, since their bytes depend on the renderer. Names that measure time (``sec``, ``seconds``, ``wall``,
``minutes``, ``time`` in the name) differ from run to run by nature: ``--ignore-timings`` leaves them out.

Exit status 1 if a value differs or a name exists in one build only (issue 23: "same numbers").
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from pathlib import Path

TIMING = re.compile(r"(^|_)(sec|secs|seconds|wall|minutes|time|times|s_per|per_image_s)(_|$)")


def glued(nb_path: Path) -> dict[str, dict[str, str]]:
    """``{name: {mime: value}}`` of every glue output of one executed notebook (the last one wins)."""
    out: dict[str, dict[str, str]] = {}
    for cell in json.loads(nb_path.read_text())["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            prefix = meta.get("mime_prefix", "")
            out[meta["name"]] = {k[len(prefix):]: ("".join(v) if isinstance(v, list) else v)
                                 for k, v in o.get("data", {}).items()}
    return out


def _number(text: str) -> float | None:
    try:
        v = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        m = re.fullmatch(r"\s*(?:np\.)?float(?:32|64)\((.*)\)\s*", text)
        return _number(m.group(1)) if m else None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def same(a: str, b: str, rtol: float) -> bool:
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) and math.isnan(y):
        return True
    return math.isclose(x, y, rel_tol=rtol, abs_tol=rtol)


def compare(before: Path, after: Path, rtol: float, ignore_timings: bool, partial: bool = False) -> list[str]:
    problems: list[str] = []
    after_nbs = {p.relative_to(after) for p in after.rglob("*.ipynb")}
    nbs = sorted(after_nbs if partial else {p.relative_to(before) for p in before.rglob("*.ipynb")} | after_nbs)
    n_values = 0
    for rel in nbs:
        if not (before / rel).exists() or not (after / rel).exists():
            problems.append(f"{rel}: only in {'after' if not (before / rel).exists() else 'before'}")
            continue
        a, b = glued(before / rel), glued(after / rel)
        for name in sorted(set(a) | set(b)):
            if ignore_timings and TIMING.search(name):
                continue
            if name not in a or name not in b:
                problems.append(f"{rel}: {name!r} only in {'before' if name in a else 'after'}")
                continue
            n_values += 1
            if "image/png" in a[name] or "image/png" in b[name]:
                if ("image/png" in a[name]) != ("image/png" in b[name]):
                    problems.append(f"{rel}: {name!r} is a figure in one build only")
                continue
            va, vb = a[name].get("text/plain", ""), b[name].get("text/plain", "")
            if not same(va, vb, rtol):
                problems.append(f"{rel}: {name!r} {va!r} -> {vb!r}")
    print(f"{len(nbs)} notebooks, {n_values} glued values compared, {len(problems)} differences")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-9, help="relative (and absolute) tolerance for numbers")
    ap.add_argument("--ignore-timings", action="store_true", help="leave out names that measure run time")
    ap.add_argument("--partial", action="store_true", help="compare only the notebooks AFTER_DIR holds")
    args = ap.parse_args(argv)
    for d in (args.before, args.after):
        if not d.is_dir():
            ap.error(f"{d} is not a directory of executed notebooks")
    problems = compare(args.before, args.after, args.rtol, args.ignore_timings, args.partial)
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
