"""Write the repository URL from _config.yml into every chapter notebook, and check the chapter shape.

The URL lives in exactly one place, ``_config.yml`` (``repository.url`` and ``repository.branch``). Each
notebook carries two copies that this tool keeps in step with it:

- the Colab badge in the header cell: ``{colab}/github/{org}/{repo}/blob/{branch}/{path}``;
- ``REPO_URL = "..."`` in the setup cell (Colab clones the course code from there).

The assignments' notebooks (``assignments/{source,student}/<name>/<name>.ipynb``) start their setup cell with
the same head, which this tool stamps too (their badges are written by ``python -m repdiff.assignments``).

Usage::

    python tools/stamp_notebooks.py          # rewrite the notebooks in place
    python tools/stamp_notebooks.py --check  # exit 1 if any notebook is out of step (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

# The start of every setup cell, up to and including `import repdiff`. A chapter's setup cell is only this
# (hidden on the website, it only prepares Colab): the chapter's first visible cell imports what it uses and
# calls `repdiff.setup_notebook`, so every name a reader sees is defined where they can see it. An assignment
# keeps what it writes after that line (otter's grader, the working directory in Colab).
SETUP_HEAD = """\
# Setup: in Colab, fetch the course code once (torch is already installed there and is never reinstalled).
import importlib.util
import os
import subprocess
import sys

REPO_URL = "{repo}"  # written from _config.yml by tools/stamp_notebooks.py
if importlib.util.find_spec("repdiff") is None:
    if importlib.util.find_spec("google.colab") is None:
        raise ImportError("repdiff is not installed: run `bash scripts/setup.sh` in the repository root (README)")
    if not os.path.isdir("/content/course"):
        git = subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, "/content/course"],
                             capture_output=True, text=True)
        if git.returncode:
            raise RuntimeError(f"git could not clone the course code from {{REPO_URL}}: {{git.stderr.strip()}}\\n"
                               "The URL is set in _config.yml (repository.url); after changing it, run "
                               "`python tools/stamp_notebooks.py` to write it into the notebooks.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course[diffusers]"], check=True)
    sys.path.insert(0, "/content/course/src")
import repdiff
"""


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_notebooks() -> list[Path]:
    """The .ipynb files named in _toc.yml, in book order."""
    text = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"(?:file|root):\s*([^\s#]+)", text)
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


def assignment_notebooks() -> list[Path]:
    """The assignments' master and student notebooks, whose setup cells start with the same head."""
    return sorted(p for p in (ROOT / "assignments").glob("*/*/*.ipynb") if p.stem == p.parent.name)


def expected_links(nb_path: Path) -> tuple[str, str]:
    cfg = book_config()
    repo = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    org_repo = repo.split("github.com/")[1]
    rel = nb_path.relative_to(ROOT).as_posix()
    return repo, f"{colab}/github/{org_repo}/blob/{branch}/{rel}"


def stamp(nb_path: Path, chapter: bool = True) -> tuple[dict, list[str]]:
    """Return the stamped notebook and a list of problems that stamping cannot fix.

    ``chapter=False`` (an assignment's notebook) stamps only the setup cell's head.
    """
    nb = json.loads(nb_path.read_text())
    repo, colab_link = expected_links(nb_path)
    problems = []
    cells = nb["cells"]
    if not chapter:
        _stamp_setup(cells, repo, problems)
        return nb, problems
    header = "".join(cells[0]["source"]) if cells and cells[0]["cell_type"] == "markdown" else ""
    if BADGE not in header:
        problems.append("first cell must be the markdown header with the Colab badge")
    else:
        new = re.sub(r"\]\(https://colab\.research\.google\.com/github/[^)]*\)", f"]({colab_link})", header)
        cells[0]["source"] = new.splitlines(keepends=True)
    _stamp_setup(cells, repo, problems, chapter=True)
    # every chapter runs on the plain "python3" kernel (the one nbval, myst-nb and Colab start)
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb["metadata"].pop("jupytext", None)
    return nb, problems


def _stamp_setup(cells: list[dict], repo: str, problems: list[str], chapter: bool = False) -> None:
    """Replace the first setup cell's head (up to ``import repdiff``) with :data:`SETUP_HEAD`, in place; a
    chapter's setup cell must hold nothing else."""
    setup = [c for c in cells if c["cell_type"] == "code" and "REPO_URL" in "".join(c["source"])]
    if not setup:
        problems.append("no setup cell with REPO_URL")
    for c in setup[:1]:
        src = "".join(c["source"])
        tail = src.split("\nimport repdiff\n", 1)
        if len(tail) != 2:
            problems.append("the setup cell must contain the line `import repdiff`")
            continue
        if chapter and tail[1].strip():
            problems.append("a chapter's setup cell only prepares Colab: move what follows `import repdiff` "
                            "into the first visible cell")
        c["source"] = (SETUP_HEAD.format(repo=repo) + tail[1]).splitlines(keepends=True)
        tags = c.setdefault("metadata", {}).setdefault("tags", [])
        if "remove-cell" not in tags:
            tags.append("remove-cell")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report notebooks out of step; change nothing")
    args = parser.parse_args()
    bad = 0
    chapters = toc_notebooks()
    for path in chapters + assignment_notebooks():
        nb, problems = stamp(path, chapter=path in chapters)
        stamped = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        rel = path.relative_to(ROOT)
        if problems:
            bad += 1
            print(f"{rel}: " + "; ".join(problems))
        elif json.loads(stamped) != json.loads(path.read_text()):
            if args.check:
                bad += 1
                print(f"{rel}: setup head, Colab link or REPO_URL out of step (run tools/stamp_notebooks.py)")
            else:
                path.write_text(stamped)
                print(f"stamped {rel}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
