"""Sphinx extension: the website loads nothing from another host (with ``offline_mathjax``; issue 24).

Images: the chapters' "Open in Colab" badge (``colab-badge.svg`` on colab.research.google.com, written into
each notebook by ``tools/stamp_notebooks.py``) is shown from a copy in ``_ext/static``; the link still goes
to Colab. Any other image with a remote address is a build warning (an error under ``-W``): ship the file.

Widgets: a widget needs a live kernel; on a static page it is a dead control, and myst-nb would load require.js and
the widget manager from public CDNs to draw it. The course's explorers (``repdiff.widgets.explorer``) draw a
static figure instead when the book is built; as a safety net, any widget output that still reaches a page
is dropped:

- a cell output that carries ``application/vnd.jupyter.widget-view+json`` is removed whole (its
  ``text/plain`` fallback, e.g. ``VBox(children=...)``, is no use to a reader either), before myst-nb picks
  the mime type to show;
- the widget state myst-nb stores for a page (when the book build itself executed the chapter) is not
  written, and ``nb_ipywidgets_js`` is empty (``_config.yml``), so no widget script is ever requested.

In Jupyter and Colab the notebooks are unchanged: the explorers work there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LOCAL_COPIES = {"https://colab.research.google.com/assets/colab-badge.svg": "colab-badge.svg"}
STATIC = Path(__file__).resolve().parent / "static"
logger = logging.getLogger(__name__)


class LocalImages(SphinxTransform):
    """Point known remote images at the site's own copy; warn about any other remote image.

    Runs while a page is read, before Sphinx collects its images, so the copy is shipped in ``_images``.
    """

    default_priority = 100

    def apply(self, **kwargs: Any) -> None:
        for image in self.document.findall(nodes.image):
            uri = image.get("uri", "")
            if not uri.startswith(("http://", "https://", "//")):
                continue
            if uri in LOCAL_COPIES:
                local = STATIC / LOCAL_COPIES[uri]
                image["uri"] = "/" + local.relative_to(Path(self.env.srcdir).resolve()).as_posix()
                if "candidates" in image:
                    del image["candidates"]
            else:
                logger.warning(f"remote image {uri}: the site must work offline; ship the file instead",
                               location=image)


class RemoveWidgetOutputs(SphinxPostTransform):
    """Remove mime bundles that hold a widget view (runs before myst-nb's ``SelectMimeType``, priority 4)."""

    default_priority = 3

    def run(self, **kwargs: Any) -> None:
        if self.app.builder.format != "html":
            return
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            if any(child.get("mime_type") == WIDGET_VIEW for child in bundle.children):
                parent = bundle.parent
                parent.remove(bundle)
                if isinstance(parent, nodes.container) and not parent.children:
                    parent.parent.remove(parent)  # the empty output area of a widget-only cell


def _drop_widget_state(app: Sphinx, env: Any) -> None:
    for data in getattr(env, "nb_metadata", {}).values():
        js_files = data.get("js_files", {})
        for key in [k for k in js_files if k.startswith("ipywidgets")]:
            del js_files[key]


def setup(app: Sphinx) -> dict:
    app.add_transform(LocalImages)
    app.add_post_transform(RemoveWidgetOutputs)
    app.connect("env-updated", _drop_widget_state)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
