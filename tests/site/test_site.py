"""The built website, opened in headless Chromium: every page exists, math renders offline, no tracebacks,
and no page loads anything from another host (issue 24: the site works offline). The layout checks (nothing
scrolls sideways at 1280 px, screenshots of the key pages) are in ``test_layout.py``.

The offline check is done twice: statically (every page's scripts, stylesheets, images, frames, media and
CSS ``url()``/``@import`` must be local; plain ``<a href>`` links may point anywhere) and in the browser
(every page is loaded in headless Chromium with a network log, and every request a page made must go to the
local server). Each detector is first shown to catch a planted external script (negative controls).

Run after ``scripts/build_book.sh``. Without a built site (or without Chromium) these tests are skipped,
unless ``REPDIFF_REQUIRE_SITE=1`` (set by ``scripts/test.sh``), which turns a missing site or browser into a
failure.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


def _serve(directory: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    server, url = _serve(SITE)
    yield url
    server.shutdown()


def toc_pages() -> list[str]:
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"(?:file|root):\s*([^\s#]+)", text)


def render(url: str, *, screenshot: Path | None = None, height: int = 1600, budget_ms: int = 15000) -> str:
    """The DOM of ``url`` after its scripts ran (MathJax included), from headless Chromium; or, with
    ``screenshot``, a picture of its top ``height`` pixels at 1280 px wide."""
    if CHROMIUM is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            cmd += [f"--window-size=1280,{height}", "--hide-scrollbars", f"--screenshot={screenshot}"]
        else:
            cmd += ["--dump-dom"]
        result = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=900)  # a hang, not a slow page
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


# ---------------------------------------------------------------------------------------------------------
# Nothing from another host (issue 24)
# ---------------------------------------------------------------------------------------------------------

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
# <link rel=...> values that are navigation, not something the browser loads
NAVIGATION_RELS = {"alternate", "author", "canonical", "first", "help", "index", "last", "license", "next",
                   "prev", "search", "top", "up", "copyright", "me", "bookmark", "external", "nofollow",
                   "noopener", "noreferrer"}
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def _external(url: str) -> bool:
    """True for an address on another host (http(s), ws(s) or protocol-relative ``//host``)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ws", "wss"):
        return (parts.hostname or "") not in LOCAL_HOSTS
    return url.startswith("//") and (parts.hostname or "") not in LOCAL_HOSTS


class _ResourceFinder(html.parser.HTMLParser):
    """Every address an HTML page makes the browser load (not the links a reader may follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link":
            rels = set((a.get("rel") or "").lower().split())
            if a.get("href") and not (rels and rels <= NAVIGATION_RELS):
                self.loads.append(a["href"])
        for attr in ("src", "data", "poster", "background"):
            if a.get(attr) and tag != "a":
                self.loads.append(a[attr])
        for attr in ("srcset", "imagesrcset"):
            if a.get(attr):
                self.loads += [c.strip().split()[0] for c in a[attr].split(",") if c.strip()]
        if a.get("style"):
            self.loads += CSS_URL.findall(a["style"])
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            target = re.search(r"url\s*=\s*['\"]?([^'\";]+)", a.get("content") or "", re.IGNORECASE)
            if target:
                self.loads.append(target.group(1))  # a redirect loads its target
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.loads += CSS_URL.findall(data)


def external_loads(site: Path) -> dict[str, list[str]]:
    """page or stylesheet (relative path) -> the external addresses it loads."""
    found: dict[str, list[str]] = {}
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.relative_to(site).parts:
            continue  # theme templates and macros, not pages
        finder = _ResourceFinder()
        finder.feed(page.read_text(errors="replace"))
        bad = [u for u in finder.loads if _external(u)]
        if bad:
            found[str(page.relative_to(site))] = bad
    for css in sorted(site.rglob("*.css")):
        bad = [u for u in CSS_URL.findall(css.read_text(errors="replace")) if _external(u)]
        if bad:
            found[str(css.relative_to(site))] = bad
    return found


def site_pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if "_static" not in p.relative_to(site).parts)


def browser_requests(base_url: str, pages: list[str]) -> list[str]:
    """Every URL that the pages (not Chromium's own background services) requested, loaded in headless Chromium.

    One browser loads a harness page on the local server that frames every page, with a network log
    (``--log-net-log``). A request counts as the pages' when its initiator is the local origin (every
    subresource, frame, fetch or navigation a page starts) or it is the top-level load itself; Chromium's
    own update, sign-in, autofill and time checks have no page as initiator.
    """
    if CHROMIUM is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    origin = base_url.rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "netlog.json"
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp}/profile", f"--log-net-log={netlog}",
               "--virtual-time-budget=30000", "--dump-dom", f"{origin}/{pages[0]}"]
        if len(pages) > 1:
            cmd[-1] = f"{origin}/_netcheck_harness.html"
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)  # a hang, not a slow page
        assert result.returncode == 0, result.stderr[-2000:]
        log = _read_netlog(netlog)
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if types.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        initiator = params.get("initiator", "")
        if initiator == origin or params.get("request_type") == "main frame":
            urls.append(params["url"])
    return urls


def _read_netlog(path: Path) -> dict:
    """Chromium's net log; a log cut short (browser killed) lacks its closing brackets."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.rstrip().rstrip(",") + "]}")


def _serve_with_page(site: Path, name: str, page: str):
    """Serve ``site`` read-only with one extra page ``name`` (HTML text ``page``) next to it; the extra page lives
    in a temporary folder of its own, every other request is answered from ``site``.
    Returns ``(server, base URL, temporary folder)``: shut the server down and clean the folder up after use."""
    tmp = tempfile.TemporaryDirectory()
    (Path(tmp.name) / name).write_text(page)

    class Handler(_QuietHandler):
        def translate_path(self, path):
            if path.split("?")[0].lstrip("/") == name:
                return str(Path(tmp.name) / name)
            return super().translate_path(path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", tmp


def _serve_with_harness(site: Path, pages: list[str]):
    """:func:`_serve_with_page` with the network-check harness: one frame per page of ``pages``."""
    frames = "\n".join(f'<iframe src="/{p}" width="800" height="600"></iframe>' for p in pages)
    return _serve_with_page(site, "_netcheck_harness.html", f"<!doctype html><html><body>{frames}</body></html>")


def _planted_site(tmp_path: Path) -> Path:
    """A small site: a clean page, a local redirect, and a page loading a script, a stylesheet and an image
    from other hosts."""
    site = tmp_path / "planted"
    site.mkdir()
    (site / "ok.html").write_text('<html><head><link rel="stylesheet" href="local.css"></head>'
                                  '<body><a href="https://example.org/">a plain link is fine</a></body></html>')
    (site / "local.css").write_text("body { color: black; }")
    (site / "bad.html").write_text('<html><head><script src="https://cdn.example.invalid/widget.js"></script>'
                                   '<link rel="stylesheet" href="//cdn.example.invalid/x.css"></head>'
                                   '<body><img src="http://203.0.113.7/badge.svg"></body></html>')
    (site / "redirect.html").write_text('<html><head><meta http-equiv="refresh" content="0; url=ok.html">'
                                        '</head></html>')
    return site


def test_static_scan_catches_a_planted_external_script(tmp_path):
    """Negative control: the static scan flags a page loading a CDN script, stylesheet and image."""
    found = external_loads(_planted_site(tmp_path))
    assert set(found) == {"bad.html"}
    assert len(found["bad.html"]) == 3


def test_browser_check_catches_a_planted_external_script(tmp_path):
    """Negative control: the network log of the pages shows the planted external requests."""
    site = _planted_site(tmp_path)
    server, url, tmp = _serve_with_harness(site, ["ok.html", "redirect.html", "bad.html"])
    try:
        external = [u for u in browser_requests(url, ["ok.html", "redirect.html", "bad.html"]) if _external(u)]
    finally:
        server.shutdown()
        tmp.cleanup()
    assert any("cdn.example.invalid/widget.js" in u for u in external), external
    assert any("203.0.113.7" in u for u in external), external


def test_no_page_loads_anything_from_another_host_static():
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    found = external_loads(SITE)
    assert not found, f"the site must work offline; these load from other hosts: {found}"


def test_no_page_requests_anything_from_another_host_in_the_browser():
    if not (SITE / "index.html").is_file():
        _missing("no built site: run scripts/build_book.sh first")
    pages = site_pages(SITE)
    server, url, tmp = _serve_with_harness(SITE, pages)
    try:
        requests = browser_requests(url, pages)
    finally:
        server.shutdown()
        tmp.cleanup()
    loaded = {urlsplit(u).path.lstrip("/") for u in requests}
    missing = [p for p in pages if p not in loaded]
    assert not missing, f"the browser did not load these pages: {missing}"
    external = sorted({u for u in requests if _external(u)})
    assert not external, f"pages requested other hosts (the site must work offline): {external}"

