"""The built website, opened in headless Chromium: every page exists, math renders offline, no tracebacks.

Run after ``scripts/build_book.sh``. Without a built site (or without Chromium) these tests are skipped,
unless ``REPDIFF_REQUIRE_SITE=1`` (set by ``scripts/test.sh``), which turns a missing site or browser into a
failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
REQUIRE = os.environ.get("REPDIFF_REQUIRE_SITE") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _missing(reason: str):
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def toc_pages() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"(?:file|root):\s*([^\s#]+)", text)


def render(url: str, *, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after its scripts ran (MathJax included), from headless Chromium."""
    if CHROMIUM is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
        if screenshot is not None:
            cmd += ["--window-size=1280,1600", f"--screenshot={screenshot}"]
        else:
            cmd += ["--dump-dom"]
        result = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("page", toc_pages())
def test_every_toc_entry_has_a_page_without_tracebacks(page):
    html_file = SITE / f"{page}.html"
    if not html_file.is_file():
        if not (SITE / "index.html").is_file():
            _missing("no built site: run scripts/build_book.sh first")
        pytest.fail(f"{page}.html was not built")
    html = html_file.read_text()
    for marker in ("Traceback (most recent call last)", "output traceback", "highlight-ipythontb", "output stderr"):
        assert marker not in html, f"{page}: the page shows an error output ({marker})"
    assert "cdn.jsdelivr.net/npm/mathjax" not in html, "MathJax must come from the site, not a CDN"
    if 'class="math' in html:
        assert "_static/mathjax/tex-chtml.js" in html, "a page with math loads the site's own MathJax"


def test_chapter_page_renders_math_offline(site_url, tmp_path):
    chapter = next(p for p in toc_pages() if p.startswith("chapters/"))
    dom = render(f"{site_url}/{chapter}.html")
    rendered = dom.count("<mjx-container")
    assert rendered >= 10, f"expected MathJax-rendered formulas on {chapter}, found {rendered}"
    assert "Traceback" not in dom
    # a picture of the page, for a person to look at (kept under _build/)
    shot = ROOT / "_build" / "screenshot_chapter.png"
    render(f"{site_url}/{chapter}.html", screenshot=shot)
    assert shot.is_file() and shot.stat().st_size > 10_000
