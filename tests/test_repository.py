"""The repository's own rules: clean notebooks, a consistent table of contents, the chapter shape, lint."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import stamp_notebooks  # noqa: E402

TOC_NOTEBOOKS = stamp_notebooks.toc_notebooks()


def all_notebooks() -> list[Path]:
    """The repository's notebooks. Hidden folders (``.venv``, ``.venv-colab``, ``.git``) and ``_build`` are not
    entered: CI collects these tests while ``.venv-colab`` is still being installed, and a folder that pip
    removes mid-walk would fail the collection."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders if d != "_build" and not d.startswith("."))
        found += [Path(folder) / f for f in files if f.endswith(".ipynb")]
    return sorted(found)


def test_toc_entries_exist_and_every_chapter_is_listed():
    entries = re.findall(r"(?:file|root):\s*([^\s#]+)", (ROOT / "_toc.yml").read_text())
    missing = [e for e in entries if not any((ROOT / f"{e}{ext}").is_file() for ext in (".ipynb", ".md"))]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"
    chapters = {p for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    unlisted = sorted(str(p.relative_to(ROOT)) for p in chapters - set(TOC_NOTEBOOKS))
    assert not unlisted, f"chapter notebooks missing from _toc.yml (so never tested or published): {unlisted}"
    assert TOC_NOTEBOOKS, "no chapter is listed in _toc.yml"


@pytest.mark.parametrize("nb_path", all_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(nb_path):
    nb = json.loads(nb_path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{nb_path.name}: cells {dirty} carry outputs; strip them (the build executes notebooks)"
    assert "widgets" not in nb.get("metadata", {}), f"{nb_path.name}: stored widget state; strip it"


def test_notebooks_carry_the_repository_url_from_config():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "stamp_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_shape(nb_path):
    """COURSE.md §3: header with badge and hardware line, hidden setup cell, checks, exercises, solutions."""
    nb = json.loads(nb_path.read_text())
    cells = nb["cells"]
    header = "".join(cells[0]["source"])
    assert header.startswith("# "), "first cell starts with the chapter title"
    assert not re.match(r"# (Chapter )?\d", header), "no hand-made number in the title: the book numbers chapters"
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    headings = re.findall(r"^##+ (.*)$", markdown, re.M)
    assert not [h for h in headings if re.match(r"\d+(\.\d+)*\.? ", h)], "no hand-made section numbers"
    assert "colab-badge.svg" in header and re.search(r"\*[^*]*(CPU|GPU)[^*]*\*", header), "badge and hardware line"
    assert re.search(r"learning goals", header, re.I) and re.search(r"prerequisites", header, re.I)
    code_cells = [c for c in cells if c["cell_type"] == "code"]
    setup, first_visible = code_cells[0], code_cells[1]
    assert "REPO_URL" in "".join(setup["source"]), "the first code cell is the (Colab) setup cell"
    assert "remove-cell" in setup.get("metadata", {}).get("tags", []), "the setup cell is hidden on the site"
    assert not {"remove-cell", "remove-input"} & set(first_visible.get("metadata", {}).get("tags", []))
    assert "setup_notebook(" in "".join(first_visible["source"]), \
        "the first visible code cell imports repdiff and calls setup_notebook (names a reader sees are defined)"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"\bcheck(_\w+)?\(", code), "a visible numerical check (a check* of repdiff)"
    assert "{glue:text}" in text or "{glue}" in text, "numbers in prose come from the run"
    assert text.count("{exercise}") >= 2 and "{solution}" in text and ":class: dropdown" in text
    assert "## Summary" in text


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_explorers_go_through_repdiff_widgets(nb_path):
    """No dead widget on the website: an explorer is ``repdiff.widgets.explorer`` (or ``phase_explorer``), which
    draws a static figure in the book build; ``ipywidgets.interact`` would leave a dead control there."""
    nb = json.loads(nb_path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    direct = direct_widget_calls(code)
    assert not direct, f"{nb_path.name}: use repdiff.widgets.explorer(...) instead of: {direct}"


def direct_widget_calls(code: str) -> list[str]:
    """Lines that build an ipywidgets explorer directly (a dead control on the website)."""
    return re.findall(r"^.*\b(?:interact|interactive|interact_manual)\(.*$", code, re.M)


def test_widget_check_catches_a_direct_interact():
    """Negative control: ``widgets.interact(...)`` is flagged, ``explorer(...)`` is not."""
    assert direct_widget_calls("widgets.interact(draw, s=(0, 1))\n") == ["widgets.interact(draw, s=(0, 1))"]
    assert direct_widget_calls("explorer(draw, s=(0, 1))\n") == []


# a result of the paper, named in a sphinx-proof title: "Corollary 3.2", "Cor. 3.4", "Theorem 3.1", "Eq. 11"
PAPER_RESULT = re.compile(r"\b(?:Theorem|Corollary|Cor\.|Lemma|Definition|Proposition|Algorithm|Eq\.)\s*[A-D]?\d")
PRF = re.compile(r"```\{prf:(?!proof)(\w+)\}([^\n]*)\n((?::[^\n]*\n)*)")


def paper_numbered_results_without_nonumber(markdown: str) -> list[str]:
    """prf directives whose title names a paper's numbered result but that the book would number too."""
    return [f"{kind}: {title.strip()}" for kind, title, options in PRF.findall(markdown)
            if PAPER_RESULT.search(title) and ":nonumber:" not in options]


def test_paper_numbering_check_catches_a_double_number():
    """Negative control: "Corollary 3.1 (Memorization (paper, Corollary 3.2))" is what the check prevents."""
    bad = "```{prf:corollary} Memorization (paper, Corollary 3.2)\n:label: cor-mem\n\nText.\n```\n"
    good = "```{prf:corollary} Memorization; the paper's Corollary 3.2\n:label: cor-mem\n:nonumber:\n\nText.\n```\n"
    own = "```{prf:theorem} Tweedie's formula\n:label: thm-tweedie\n\nText.\n```\n"
    assert paper_numbered_results_without_nonumber(bad) == ["corollary: Memorization (paper, Corollary 3.2)"]
    assert paper_numbered_results_without_nonumber(good + own) == []


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_a_paper_result_carries_only_the_papers_number(nb_path):
    """One numbering scheme (issue 25): the book numbers the course's own results by chapter; a result of the
    paper is titled with the paper's number and marked ``:nonumber:``, so no box reads "Corollary 3.1 (...
    Corollary 3.2)" (CONTRIBUTING.md, item 3)."""
    nb = json.loads(nb_path.read_text())
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    bad = paper_numbered_results_without_nonumber(markdown)
    assert not bad, f"{nb_path.name}: add :nonumber: (the title names the paper's number): {bad}"


def test_landing_page_and_readme():
    """Issue 23/25: README under 7,000 characters with the two commands; the landing page orients, once."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 7000, f"README.md has {len(readme)} characters"
    assert "bash scripts/setup.sh" in readme and "bash scripts/test.sh" in readme
    intro = (ROOT / "intro.md").read_text()
    assert "{tableofcontents}" not in intro and "as they are completed" not in intro
    assert "```{glue:figure} intro_teaser" in intro and "notebook_times.json" in intro
    assert (ROOT / "LICENSE").is_file() and "MIT" in (ROOT / "LICENSE").read_text()
    assert "CC BY 4.0" in (ROOT / "LICENSE-text.md").read_text()


@pytest.mark.skipif(shutil.which("ruff") is None and not (ROOT / ".venv/bin/ruff").exists(), reason="ruff missing")
def test_ruff_clean():
    ruff = shutil.which("ruff") or str(ROOT / ".venv/bin/ruff")
    targets = ["src", "tests", "tools", "_ext", *(str(p.relative_to(ROOT)) for p in TOC_NOTEBOOKS)]
    result = subprocess.run([ruff, "check", *targets], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_setup_cell_outside_colab_without_repdiff_says_how_to_install(tmp_path):
    """The canonical setup cell, run where neither repdiff nor Colab is importable, stops with a clear message."""
    code = stamp_notebooks.SETUP_HEAD.format(repo="https://example.invalid/repo")
    script = tmp_path / "setup_cell.py"
    # hide the installed package and Colab: find_spec must report both missing
    script.write_text(
        "import importlib.util, sys\n"
        "_real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name in ('repdiff', 'google.colab') else _real(name, *a)\n"
        + code.replace("import repdiff\n", "")
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "repdiff is not installed" in result.stderr and "scripts/setup.sh" in result.stderr


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_every_glued_name_in_the_prose_is_glued_by_the_code(nb_path):
    """A ``{glue:text}`name``` with no matching ``glue("name", ...)`` fails the website build; catch it here, fast."""
    nb = json.loads(nb_path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    used = set(re.findall(r"\{glue(?::\w+)?\}`([A-Za-z_]\w*)", markdown))
    used |= set(re.findall(r"```\{glue:figure\}\s+([A-Za-z_]\w*)", markdown))
    static = set(re.findall(r'glue\(\s*"([A-Za-z_]\w*)"', code))
    static |= set(re.findall(r'glue_as="([A-Za-z_]\w*)"', code))  # explorers glue their static figure
    if "glue_run_time()" in code:  # repdiff.glue_run_time() glues run_seconds
        static.add("run_seconds")
    dynamic = [re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(m)) for m in re.findall(r'glue\(\s*f"([^"]+)"', code)]
    # repdiff.glue_all("prefix", result) glues prefix_<field> for every field of the result
    prefixes = re.findall(r'glue_all\(\s*"([A-Za-z_]\w*)"', code)
    dynamic += [re.escape(m) + r"_\w+" for m in prefixes]
    dynamic += [re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(m)) + r"_\w+"
                for m in re.findall(r'glue_all\(\s*f"([^"]+)"', code)]
    missing = sorted(u for u in used if u not in static and not any(re.fullmatch(d, u) for d in dynamic))
    assert not missing, f"{nb_path.name}: the prose uses glue names that no code cell glues: {missing}"


# Names the hidden setup cell defines (stamp_notebooks.SETUP_HEAD): a visible cell may use them only after importing
# or defining them itself, so a reader of the website never meets a name that appears from nowhere (issue 23).
SETUP_NAMES = ("importlib", "os", "subprocess", "sys", "REPO_URL", "git", "repdiff")
MAX_VISIBLE_CELL_LINES = 30
HIDDEN_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell"}


def names_from_the_setup_cell(visible_code: str) -> list[str]:
    """Setup-cell names that ``visible_code`` uses without importing or assigning them."""
    missing = []
    for name in SETUP_NAMES:
        used = re.search(rf"(?<![\w.]){name}\b(?!\s*=[^=])", visible_code)
        defined = re.search(rf"^\s*(?:import [\w., ]*\b{name}\b|from [\w.]+ import [\w, ]*\b{name}\b|"
                            rf"import [\w.]+ as {name}\b|{name}\s*=[^=])", visible_code, re.M)
        if used and not defined:
            missing.append(name)
    return missing


def long_visible_cells(cells: list[dict]) -> list[tuple[int, int]]:
    """``(cell index, lines)`` of visible code cells longer than :data:`MAX_VISIBLE_CELL_LINES`."""
    return [(i, n) for i, c in enumerate(cells) if c["cell_type"] == "code"
            and not HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", []))
            and (n := len("".join(c["source"]).rstrip().splitlines())) > MAX_VISIBLE_CELL_LINES]


def test_lesson_checks_catch_a_name_from_nowhere_and_a_long_cell():
    """Negative controls for the two tests below."""
    assert names_from_the_setup_cell("x = os.path.join('a', 'b')\n") == ["os"]
    assert names_from_the_setup_cell("import os\nx = os.path.join('a', 'b')\n") == []
    assert names_from_the_setup_cell("import repdiff\ndevice = repdiff.setup_notebook(seed=0)\n") == []
    long = {"cell_type": "code", "metadata": {}, "source": ["x = 1\n"] * 31}
    assert long_visible_cells([long]) == [(0, 31)]
    assert long_visible_cells([{**long, "metadata": {"tags": ["hide-input"]}}]) == []


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_read_like_lessons(nb_path):
    """Issue 23: no visible code cell over 30 lines; every name a reader sees is defined in a visible cell."""
    cells = json.loads(nb_path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    visible = "\n".join("".join(c["source"]) for c in code[1:])
    assert not names_from_the_setup_cell(visible), \
        f"{nb_path.name}: visible cells use {names_from_the_setup_cell(visible)} from the hidden setup cell only"
    assert not long_visible_cells(cells), f"{nb_path.name}: visible cells over 30 lines: {long_visible_cells(cells)}"


# The site's code column at 1280 px holds 97 characters of 12 px code (_ext/css/repdiff.css: narrower contents
# sidebar, 0.75rem code, `pre-wrap`); measured in headless Chromium on a built chapter page: a code cell's <pre>
# of 97 characters is one line high, 98 characters wrap to two. A wrapped line reads as a broken one.
MAX_VISIBLE_LINE_CHARS = 97


def long_visible_lines(nb: dict) -> list[tuple[int, int]]:
    """``(cell index, length)`` of each line over :data:`MAX_VISIBLE_LINE_CHARS` in a visible code cell of ``nb``.

    Visible: a code cell with none of :data:`HIDDEN_TAGS` (a hidden or collapsed input is not read on the page).
    """
    return [(i, len(line)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            and not HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", []))
            for line in "".join(c["source"]).splitlines() if len(line) > MAX_VISIBLE_LINE_CHARS]


def test_line_length_check_catches_a_98_character_visible_line():
    """Negative control for the test below: 98 characters in a visible cell is reported; the same line in a
    ``hide-input`` cell or a markdown cell is not, and 97 characters is allowed."""
    line = "x = " + "1" * 94
    assert len(line) == 98
    visible = {"cell_type": "code", "metadata": {}, "source": ["y = 0\n", line]}
    hidden = {**visible, "metadata": {"tags": ["hide-input"]}}
    markdown = {"cell_type": "markdown", "metadata": {}, "source": [line]}
    assert long_visible_lines({"cells": [markdown, hidden, visible]}) == [(2, 98)]
    assert long_visible_lines({"cells": [markdown, hidden]}) == []
    assert long_visible_lines({"cells": [{**visible, "source": [line[:-1]]}]}) == []


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_visible_code_lines_fit_the_site_column(nb_path):
    """Issue 25: no visible code line over 97 characters, the width of the site's code column at 1280 px
    (_ext/css/repdiff.css); a longer line wraps on the page. Re-wrap it (hanging indent inside the brackets, a
    long trailing comment on its own line above) or hide the cell."""
    long = long_visible_lines(json.loads(nb_path.read_text()))
    assert not long, (f"{nb_path.relative_to(ROOT)}: visible code lines over {MAX_VISIBLE_LINE_CHARS} characters "
                      f"(cell index, length): {long}")


MAX_MODULE_LINES = 400


def long_modules(root: Path) -> list[str]:
    """Modules under ``root`` longer than :data:`MAX_MODULE_LINES` lines."""
    return [f"{p.relative_to(root)}: {n}" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]


def test_no_module_over_400_lines(tmp_path):
    """Issue 23: a module does one job and is small enough to read in one sitting. Negative control: a 401-line
    module is reported."""
    (tmp_path / "big.py").write_text("x = 1\n" * 401)
    (tmp_path / "small.py").write_text("x = 1\n" * 400)
    assert long_modules(tmp_path) == ["big.py: 401"]
    assert not long_modules(ROOT / "src" / "repdiff"), long_modules(ROOT / "src" / "repdiff")


BOOKKEEPING_CALL = re.compile(r"\b(?:glue|glue_all|check|check_range|check_\w+)\(")


def bookkeeping_heavy_cells(cells: list[dict]) -> list[tuple[int, int, int]]:
    """``(index, bookkeeping lines, lines)`` of visible code cells in which glue/check calls are more than a third
    of the non-blank, non-comment lines (issue 25: bookkeeping out of the reader's way)."""
    out = []
    for i, c in enumerate(cells):
        if c["cell_type"] != "code" or HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", [])):
            continue
        lines = [ln for ln in "".join(c["source"]).splitlines() if ln.strip() and not ln.strip().startswith("#")]
        n = sum(bool(BOOKKEEPING_CALL.search(ln)) for ln in lines)
        if lines and 3 * n > len(lines):
            out.append((i, n, len(lines)))
    return out


def test_bookkeeping_check_catches_a_wall_of_glue():
    """Negative control: a visible cell of two computations and two glue calls is flagged; hidden, it is not."""
    cell = {"cell_type": "code", "metadata": {}, "source": ["a = 1\n", "b = 2\n", 'glue("a", a)\n', 'glue("b", b)\n']}
    assert bookkeeping_heavy_cells([cell]) == [(0, 2, 4)]
    assert bookkeeping_heavy_cells([{**cell, "metadata": {"tags": ["remove-input"]}}]) == []


@pytest.mark.parametrize("nb_path", TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_visible_cells_are_not_bookkeeping(nb_path):
    cells = json.loads(nb_path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert not bookkeeping_heavy_cells(code[1:]), f"{nb_path.name}: {bookkeeping_heavy_cells(code[1:])}"


def test_stamp_rejects_a_chapter_setup_cell_that_does_more_than_prepare_colab():
    """Negative control for ``stamp_notebooks --check``: a chapter's setup cell that defines ``device`` after
    ``import repdiff`` (a name the reader would never see) is reported; the bare head is not."""
    head = stamp_notebooks.SETUP_HEAD.format(repo="https://example.invalid/repo")

    def problems_of(source: str) -> list[str]:
        cells = [{"cell_type": "code", "metadata": {}, "source": source.splitlines(keepends=True)}]
        found: list[str] = []
        stamp_notebooks._stamp_setup(cells, "https://example.invalid/repo", found, chapter=True)
        return found

    assert problems_of(head) == []
    assert len(problems_of(head + "device = repdiff.setup_notebook(seed=0)\n")) == 1
