"""Where the course's shipped files live (``data/`` at the repository root).

Chapters that load checkpoints or prompt lists call :func:`data_path`; it fails with a message that says
how to get the file instead of a bare ``FileNotFoundError`` deep inside a loader.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["repo_root", "data_path"]


def repo_root() -> Path:
    """The repository root: the folder holding ``src/repdiff`` (editable install or a clone)."""
    return Path(__file__).resolve().parents[2]


def data_path(*parts: str, must_exist: bool = True) -> Path:
    """Path of a file or folder under ``data/``.

    Raises:
        FileNotFoundError: ``must_exist`` and the path is missing; the message names the path and how to
            get it (a fresh clone of the repository ships everything in ``data/``).
    """
    path = repo_root().joinpath("data", *parts)
    if must_exist and not path.exists():
        raise FileNotFoundError(
            f"{path} is missing. The course ships it in the repository's data/ folder: work from a clone of "
            f"the repository (pip install -e .), or re-create it with the recipe named in the chapter."
        )
    return path
