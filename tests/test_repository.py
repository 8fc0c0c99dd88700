"""The repository's own rules: clean notebooks, a consistent table of contents, the chapter shape, lint."""

import json
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
    return sorted(p for p in ROOT.rglob("*.ipynb") if not {"_build", ".venv", ".ipynb_checkpoints"} & set(p.parts))


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
    setup = next(c for c in cells if c["cell_type"] == "code")
    assert "REPO_URL" in "".join(setup["source"]) and "setup_notebook" in "".join(setup["source"])
    assert "remove-cell" in setup.get("metadata", {}).get("tags", []), "the setup cell is hidden on the site"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"\bcheck(_\w+)?\(", code), "a visible numerical check (a check* of repdiff)"
    assert "{glue:text}" in text or "{glue}" in text, "numbers in prose come from the run"
    assert text.count("{exercise}") >= 2 and "{solution}" in text and ":class: dropdown" in text
    assert "## Summary" in text


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
    dynamic = [re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(m)) for m in re.findall(r'glue\(\s*f"([^"]+)"', code)]
    # repdiff.glue_all("prefix", result) glues prefix_<field> for every field of the result
    prefixes = re.findall(r'glue_all\(\s*"([A-Za-z_]\w*)"', code)
    dynamic += [re.escape(m) + r"_\w+" for m in prefixes]
    dynamic += [re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(m)) + r"_\w+"
                for m in re.findall(r'glue_all\(\s*f"([^"]+)"', code)]
    missing = sorted(u for u in used if u not in static and not any(re.fullmatch(d, u) for d in dynamic))
    assert not missing, f"{nb_path.name}: the prose uses glue names that no code cell glues: {missing}"
