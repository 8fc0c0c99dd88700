"""The autograded assignments (Part V): otter builds them, the solutions pass, empty stubs fail helpfully.

For every master notebook in ``assignments/source/``:

1. ``otter assign --no-pdfs`` builds it (and, doing so, runs every public and hidden test on the solutions);
2. the autograder zip and the student notebook exist, and the student notebook carries no solution;
3. the committed ``assignments/student/<name>/`` is what the build produces (the book's Colab badges open it);
4. the student notebook, run with every stub left empty, fails each autograded question's public tests with
   the messages written for students (not with a traceback from inside the tests).

Plus unit tests of the helpers in :mod:`repdiff.assignments`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from repdiff import assignments

ROOT = Path(__file__).resolve().parents[1]
MASTERS = assignments.master_notebooks()

pytest.importorskip("otter", reason="otter-grader is not installed")


def test_there_are_assignments():
    assert len(MASTERS) >= 3, f"expected the course's assignments in assignments/source/, found {MASTERS}"


@pytest.fixture(scope="module", params=MASTERS, ids=lambda p: p.stem)
def built(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param.stem)
    return request.param, assignments.build(request.param, out / "dist")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_build_outputs_and_no_solutions_leak(built):
    master, out = built
    assert out["zip"].is_file() and out["zip"].stat().st_size > 0
    assert sorted(p.name for p in out["tests"].glob("q*.py")), "no public tests for the student"
    student_src = "\n".join("".join(c["source"]) for c in _cells(out["student"]))
    assert "BEGIN SOLUTION" not in student_src and "# SOLUTION" not in student_src
    assert "**Solution.**" not in student_src, "a written answer's solution reached the student notebook"
    assert "grader.check(" in student_src
    for test_file in out["tests"].glob("*.py"):
        assert "hidden=True" not in test_file.read_text(), f"{test_file.name}: hidden test in the student's copy"


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_master_setup_cell_is_canonical(master):
    """The master's setup cell starts with the chapters' canonical text (tools/stamp_notebooks.py), with the
    repository URL of _config.yml, and its Colab badge opens the committed student notebook."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import stamp_notebooks

    cells = _cells(master)
    repo = assignments.repository()
    setup = next(c for c in cells if c["cell_type"] == "code")
    assert "".join(setup["source"]).startswith(stamp_notebooks.SETUP_HEAD.format(repo=repo["url"]))
    badge = f"{repo['colab']}assignments/student/{master.stem}/{master.name}"
    header = next(c for c in cells if c["cell_type"] == "markdown")
    assert badge in "".join(header["source"]), f"the header's Colab badge should link to {badge}"


def test_committed_student_folder_is_up_to_date(built):
    master, out = built
    problems = assignments._differences(out, ROOT / "assignments" / "student" / master.stem)
    assert not problems, "; ".join(problems) + " (run `python -m repdiff.assignments`)"


def test_empty_stubs_fail_with_helpful_messages(built, tmp_path):
    """Run the student notebook as handed out: every autograded question fails its public tests, and says
    that the answer is not written yet (or which value is missing) instead of crashing inside a test."""
    import nbformat
    from nbclient import NotebookClient

    master, out = built
    work = tmp_path / master.stem
    shutil.copytree(out["student"].parent, work)
    nb = nbformat.read(work / master.name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(work)}}).execute()
    checks = {}
    for cell in nb.cells:
        m = re.match(r'grader\.check\("(\w+)"\)', cell.source.strip()) if cell.cell_type == "code" else None
        if m:
            checks[m.group(1)] = "".join(
                o.get("text", "") + json.dumps(o.get("data", {})) + "".join(o.get("traceback", []))
                for o in cell.outputs
            )
    graded = sorted(p.stem for p in out["tests"].glob("q*.py"))
    assert sorted(checks) == graded, f"check cells {sorted(checks)} vs public tests {graded}"
    helpful = re.compile(r"not written yet|not computed yet|is not defined: run the cell|should raise ValueError")
    for q, text in checks.items():
        assert "failed" in text.lower(), f"{q}: the public tests pass on an empty stub:\n{text[:1500]}"
        assert helpful.search(text), f"{q}: the failure does not say what is missing:\n{text[:1500]}"
        assert "Traceback" not in text, f"{q}: the check itself crashed:\n{text[:1500]}"


# --- the helpers used inside the tests ---------------------------------------------------------------------


def test_answer_reports_empty_stubs_and_crashes():
    def stub(x):
        ...

    def crash(x):
        return x.nope

    with pytest.raises(AssertionError, match="not written yet"):
        assignments.answer(stub, 1.0)
    with pytest.raises(AssertionError, match="is not defined"):
        assignments.answer(None, 1.0, name="f")
    with pytest.raises(AssertionError, match="raised AttributeError"):
        assignments.answer(crash, 1.0)
    assert assignments.answer(lambda x: 2 * x, 3.0) == 6.0


def test_assert_close_names_the_slip():
    right, slip = np.array([1.0, 2.0]), np.array([1.5, 2.5])
    assignments.assert_close("v", right + 1e-9, right)
    with pytest.raises(AssertionError, match="matches the formula with sigma"):
        assignments.assert_close("v", slip, right, slips={"the formula with sigma": slip})
    with pytest.raises(AssertionError, match="relative error"):
        assignments.assert_close("v", right * 3, right, slips={"the formula with sigma": slip})
    with pytest.raises(AssertionError, match="shape"):
        assignments.assert_close("v", right[:1], right)
    with pytest.raises(AssertionError, match="NaN"):
        assignments.assert_close("v", [np.nan, 1.0], right)
    with pytest.raises(AssertionError, match="expected numbers"):
        assignments.assert_close("v", "abc", right)


def test_repository_links_come_from_config():
    repo = assignments.repository()
    assert repo["url"].startswith("https://github.com/") and repo["colab"].endswith(f"/blob/{repo['branch']}/")
    assert repo["pip"].endswith(f"git+{repo['url']}@{repo['branch']}")


def test_book_page_links_every_student_notebook():
    page = (ROOT / "chapters" / "part5" / "assignments.md").read_text()
    repo = assignments.repository()
    for master in MASTERS:
        link = f"{repo['colab']}assignments/student/{master.stem}/{master.name}"
        assert link in page, f"chapters/part5/assignments.md has no Colab badge for {master.stem} ({link})"


def test_assert_raises_value_error_explains_a_miss():
    def strict(x):
        if x < 0:
            raise ValueError("negative")
        return x

    assignments.assert_raises_value_error(strict, [((-1,), "a negative x")])
    with pytest.raises(AssertionError, match="strict should raise ValueError for x = 1"):
        assignments.assert_raises_value_error(strict, [((-1,), "a negative x"), ((1,), "x = 1")])
    with pytest.raises(AssertionError, match="it raised TypeError"):
        assignments.assert_raises_value_error(lambda x: x + "s", [((1,), "an int")], name="f")
