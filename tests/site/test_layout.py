"""The built website's layout, in headless Chromium (issue 25): nothing scrolls sideways in a 1280 px window
(code, outputs, display math, tables, the page itself), and screenshots of the landing page and Chapters 3,
5 and 14 land in ``_build/screenshots/`` for a person to look at.

Run after ``scripts/build_book.sh``; skipped without a built site or Chromium unless ``REPDIFF_REQUIRE_SITE=1``
(``test_site.py``).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from test_site import CHROMIUM, ROOT, SITE, _missing, _serve, _serve_with_page, render, toc_pages

SCREENSHOT_PAGES = ["intro", "chapters/part1/03_memorization", "chapters/part1/05_hybrid_phase",
                    "chapters/part4/14_steering"]
WIDTH = 1280
# what a reader could have to scroll sideways: code and outputs, display math, and the page itself
_MEASURE = """
function sideways(doc) {
  const out = [];
  const root = doc.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) out.push('the page: ' + root.scrollWidth + ' px wide');
  doc.querySelectorAll('pre, div.math, mjx-container[display="true"], div.cell_output, table').forEach(e => {
    if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) {
      const text = (e.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, 70);
      out.push(e.tagName.toLowerCase() + '.' + (e.className || '').toString().split(' ')[0] + ' (+'
               + (e.scrollWidth - e.clientWidth) + ' px): ' + text);
    }
  });
  return out;
}
window.addEventListener('load', () => setTimeout(() => {
  const result = {};
  document.querySelectorAll('iframe').forEach(f => { result[f.dataset.page] = sideways(f.contentDocument); });
  const pre = document.createElement('pre');
  pre.id = 'sideways';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
}, 8000));
"""


def sideways_scroll(site: Path, pages: list[str]) -> dict[str, list[str]]:
    """page -> what scrolls sideways on it in a 1280 px wide window (headless Chromium, after MathJax ran).

    A harness page on the same local server frames every page at 1280 px and, once they have loaded,
    measures each code block, output, display equation and table whose content is wider than its box.
    """
    if CHROMIUM is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    frames = "\n".join(f'<iframe data-page="{p}" src="/{p}" width="{WIDTH}" height="900"></iframe>' for p in pages)
    harness = f"<!doctype html><html><body>{frames}<script>{_MEASURE}</script></body></html>"
    server, url, tmp = _serve_with_page(site, "_layout_harness.html", harness)
    try:
        dom = render(f"{url}/_layout_harness.html", budget_ms=60000)
    finally:
        server.shutdown()
        tmp.cleanup()
    found = re.search(r'<pre id="sideways">(.*?)</pre>', dom, re.S)
    assert found, "the layout harness did not report (pages did not finish loading)"
    return json.loads(html.unescape(found.group(1)))


def test_layout_check_catches_a_planted_wide_line(tmp_path):
    """Negative control: a code line wider than its box is reported; a short one is not."""
    site = tmp_path / "wide"
    site.mkdir()
    (site / "ok.html").write_text("<html><body><pre>short line</pre></body></html>")
    (site / "wide.html").write_text('<html><body><div style="width:600px"><pre style="overflow-x:auto">'
                                    + "x = 1  # " + "a long comment " * 60 + "</pre></div></body></html>")
    found = sideways_scroll(site, ["ok.html", "wide.html"])
    assert found["ok.html"] == []
    assert len(found["wide.html"]) == 1 and found["wide.html"][0].startswith("pre."), found


@pytest.mark.parametrize("page", toc_pages())
def test_nothing_scrolls_sideways_at_1280px(page, _layout):
    assert not _layout[page + ".html"], (f"{page}: content wider than its column at {WIDTH} px (break long code "
                                         f"lines, wrap long equations with aligned): {_layout[page + '.html']}")


@pytest.fixture(scope="module")
def _layout():
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    return sideways_scroll(SITE, [p + ".html" for p in toc_pages()])


def test_screenshots_of_the_key_pages():
    """Pictures for a person to look at (issue 25): the landing page and Chapters 3, 5 and 14."""
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    folder = ROOT / "_build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    server, url = _serve(SITE)
    try:
        for page in SCREENSHOT_PAGES:
            shot = folder / (page.replace("/", "_") + ".png")
            render(f"{url}/{page}.html", screenshot=shot, height=4000)
            assert shot.is_file() and shot.stat().st_size > 20_000, f"{page}: no screenshot"
    finally:
        server.shutdown()
