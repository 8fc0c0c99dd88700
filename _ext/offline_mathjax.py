"""Sphinx extension: serve MathJax from the site itself, so math renders with no network.

MathJax 3 comes from the registry package ``django-static-mathjax`` (pinned in requirements.txt). At the
end of an HTML build its ``es5`` folder is copied to ``_static/mathjax`` and Sphinx's ``mathjax_path``
points there (a relative ``mathjax_path`` is resolved against ``_static``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx

MATHJAX_ENTRY = "tex-chtml.js"


def _mathjax_source() -> Path:
    try:
        import mathjax  # provided by django-static-mathjax
    except ImportError as err:  # pragma: no cover - exercised only on a broken install
        raise RuntimeError(
            "MathJax is missing: pip install django-static-mathjax (see requirements.txt)"
        ) from err
    src = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (src / MATHJAX_ENTRY).is_file():
        raise RuntimeError(f"MathJax files not found under {src}")
    return src


def _set_path(app: Sphinx, config) -> None:
    _mathjax_source()  # fail early, with a clear message, if the package is missing
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"


def _copy(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    if not (dest / MATHJAX_ENTRY).is_file():
        shutil.copytree(_mathjax_source(), dest, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _set_path)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
