"""Where the course's shipped files live (``data/`` at the repository root).

Chapters that load checkpoints or prompt lists call :func:`data_path`; it fails with a message that says
how to get the file instead of a bare ``FileNotFoundError`` deep inside a loader.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_path"]


def repo_root() -> Path:
    """The repository root: the folder holding ``src/repdiff`` (editable install or a clone)."""
    return Path(__file__).resolve().parents[2]


def _data_root() -> Path:
    """``data/`` of the clone; for an installed wheel (an autograder): ``$REPDIFF_DATA``, else ``./data``."""
    if os.environ.get("REPDIFF_DATA"):
        return Path(os.environ["REPDIFF_DATA"])
    root = repo_root()
    if (root / "src" / "repdiff").is_dir() or not (Path.cwd() / "data").is_dir():
        return root / "data"
    return Path.cwd() / "data"  # the autograder copies the data its tests need next to the submission


def data_path(*parts: str, must_exist: bool = True) -> Path:
    """Path of a file or folder under ``data/`` (of the clone; see :func:`_data_root` for an installed wheel).

    Raises:
        FileNotFoundError: ``must_exist`` and the path is missing; the message names the path and how to
            get it (a fresh clone of the repository ships everything in ``data/``).
    """
    path = _data_root().joinpath(*parts)
    if must_exist and not path.exists():
        raise FileNotFoundError(
            f"{path} is missing. The course ships it in the repository's data/ folder: work from a clone of "
            f"the repository (pip install -e .), or re-create it with the recipe named in the chapter."
        )
    return path
