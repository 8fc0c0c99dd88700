"""The autograded assignments (Part V): self-contained autograders that grade right in a clean environment.

For every master notebook in ``assignments/source/`` (tools/build_assignments.py):

1. ``otter assign --no-pdfs`` builds it into a student notebook and an autograder zip that carries the
   course wheel, the data its tests load and pinned requirements (no git URL, torch's CPU build);
2. the student notebook carries no solution, and the committed ``assignments/student/<name>/`` is what the
   build produces (the book's Colab badges open it);
3. a fresh venv gets exactly the zip's requirements, installed offline (``--no-index``) from a local
   wheelhouse and the zip's own wheel, and ``otter run`` grades there: the solutions get full marks, the
   student notebook as handed out gets less than half, and every question it fails says what is missing
   (the messages written for students, not a crash inside a test).

Plus unit tests of the helpers in :mod:`repdiff.grading`.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from repdiff import grading

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_assignments  # noqa: E402
import stamp_notebooks  # noqa: E402

MASTERS = build_assignments.master_notebooks()

pytest.importorskip("otter", reason="otter-grader is not installed")


def test_there_are_assignments():
    assert len(MASTERS) >= 3, f"expected the course's assignments in assignments/source/, found {MASTERS}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_assignments.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module", params=MASTERS, ids=lambda p: p.stem)
def built(request, wheel, tmp_path_factory):
    """otter assign, without its own run of the solutions: they are graded in the clean venv below."""
    out = tmp_path_factory.mktemp(request.param.stem)
    return request.param, build_assignments.build(request.param, out / "dist", wheel=wheel, run_tests=False)


@pytest.fixture(scope="module")
def venvs(tmp_path_factory):
    """One clean grading venv per distinct requirement set (A1 and A2 share one; A3 adds diffusers)."""
    made: dict[tuple[str, ...], Path] = {}

    def get(zip_path: Path) -> Path:
        key = tuple(build_assignments.zip_requirements(zip_path))
        if key not in made:
            made[key] = build_assignments.grading_venv(zip_path, tmp_path_factory.mktemp("venv") / "env")
        return made[key]

    return get


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
    code = "\n".join("".join(c["source"]) for c in _cells(out["student"]) if c["cell_type"] == "code")
    checks = sorted(re.findall(r'grader\.check\("(\w+)"\)', code))
    graded = sorted(p.stem for p in out["tests"].glob("q*.py"))
    assert checks == graded, f"check cells {checks} vs public tests {graded}"


def test_autograder_zip_is_self_contained(built, wheel):
    """The zip installs with no git URL: the course wheel and the data are inside, every package is pinned."""
    master, out = built
    with zipfile.ZipFile(out["zip"]) as zf:
        names = set(zf.namelist())
        env = zf.read("environment.yml").decode()
    assert f"files/wheels/{wheel.name}" in names
    for folder in build_assignments.DATA_FOLDERS.get(master.stem, ()):
        have = {n for n in names if n.startswith(f"files/data/{folder}/")}
        want = {f"files/data/{p.relative_to(ROOT / 'data').as_posix()}" for p in (ROOT / "data" / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
        assert want and want <= have, f"{master.stem}: data/{folder} is not (all) in the zip: {sorted(want - have)[:5]}"
    assert "git+" not in env and "python=3.11" in env
    lines = build_assignments.zip_requirements(out["zip"])
    pins = build_assignments.pins_of(lines)
    assert all("==" in p for p in pins), [p for p in pins if "==" not in p]
    assert "torch==2.13.0+cpu" in pins and f"--extra-index-url {build_assignments.TORCH_CPU_INDEX}" in lines
    assert any(p.startswith("otter-grader==7.0.0") for p in pins)
    extras = build_assignments.EXTRAS.get(master.stem, ())
    assert ("diffusers==" in env) == ("diffusers" in extras)


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_master_setup_cell_is_canonical(master):
    """The master's setup cell starts with the chapters' canonical text (tools/stamp_notebooks.py), with the
    repository URL of _config.yml, and its Colab badge opens the committed student notebook."""
    cells = _cells(master)
    repo = build_assignments.repository()
    setup = next(c for c in cells if c["cell_type"] == "code")
    assert "".join(setup["source"]).startswith(stamp_notebooks.SETUP_HEAD.format(repo=repo["url"]))
    badge = f"{repo['colab']}assignments/student/{master.stem}/{master.name}"
    header = next(c for c in cells if c["cell_type"] == "markdown")
    assert badge in "".join(header["source"]), f"the header's Colab badge should link to {badge}"


def test_committed_student_folder_is_up_to_date(built):
    master, out = built
    problems = build_assignments.differences(out, ROOT / "assignments" / "student" / master.stem)
    assert not problems, "; ".join(problems) + " (run `python tools/build_assignments.py`)"


def _scores(results: dict) -> tuple[float, float, dict[str, str]]:
    graded = [t for t in results["tests"] if "max_score" in t]
    return (sum(t["score"] for t in graded), sum(t["max_score"] for t in graded),
            {t["name"]: t["output"] for t in graded if t["score"] < t["max_score"]})


def test_solutions_get_full_marks_in_a_clean_venv(built, venvs, tmp_path):
    master, out = built
    python = venvs(out["zip"])
    results = build_assignments.otter_run(python, out["zip"], out["autograder"] / master.name, tmp_path)
    score, total, failed = _scores(results)
    assert total >= 10 and score == total, f"{master.stem}: the solutions score {score}/{total}: {failed}"


def test_student_notebook_fails_helpfully_in_a_clean_venv(built, venvs, tmp_path):
    """The notebook as handed out scores under half, and each failed question says what is missing (an
    AssertionError from repdiff.grading's helpers, not a crash inside a test)."""
    master, out = built
    python = venvs(out["zip"])
    results = build_assignments.otter_run(python, out["zip"], out["student"], tmp_path)
    score, total, failed = _scores(results)
    assert score < total / 2, f"{master.stem}: the untouched student notebook scores {score}/{total}"
    helpful = re.compile(r"not written yet|not computed yet|is not defined: run the cell|should raise ValueError")
    for q, text in failed.items():
        assert helpful.search(text), f"{q}: the failure does not say what is missing:\n{text[:1500]}"
        errors = set(re.findall(r"^\s*(\w+(?:Error|Exception)):", text, flags=re.M))
        assert errors <= {"AssertionError"}, f"{q}: a test crashed ({errors}):\n{text[:1500]}"


# --- the helpers used inside the tests ---------------------------------------------------------------------


def test_answer_reports_empty_stubs_and_crashes():
    def stub(x):
        ...

    def crash(x):
        return x.nope

    with pytest.raises(AssertionError, match="not written yet"):
        grading.answer(stub, 1.0)
    with pytest.raises(AssertionError, match="is not defined"):
        grading.answer(None, 1.0, name="f")
    with pytest.raises(AssertionError, match="raised AttributeError"):
        grading.answer(crash, 1.0)
    assert grading.answer(lambda x: 2 * x, 3.0) == 6.0


def test_assert_close_names_the_slip():
    right, slip = np.array([1.0, 2.0]), np.array([1.5, 2.5])
    grading.assert_close("v", right + 1e-9, right)
    with pytest.raises(AssertionError, match="matches the formula with sigma"):
        grading.assert_close("v", slip, right, slips={"the formula with sigma": slip})
    with pytest.raises(AssertionError, match="relative error"):
        grading.assert_close("v", right * 3, right, slips={"the formula with sigma": slip})
    with pytest.raises(AssertionError, match="shape"):
        grading.assert_close("v", right[:1], right)
    with pytest.raises(AssertionError, match="NaN"):
        grading.assert_close("v", [np.nan, 1.0], right)
    with pytest.raises(AssertionError, match="expected numbers"):
        grading.assert_close("v", "abc", right)


def test_repository_links_come_from_config():
    repo = build_assignments.repository()
    assert repo["url"].startswith("https://github.com/") and repo["colab"].endswith(f"/blob/{repo['branch']}/")


def test_book_page_links_every_student_notebook():
    page = (ROOT / "chapters" / "part5" / "assignments.md").read_text()
    repo = build_assignments.repository()
    for master in MASTERS:
        link = f"{repo['colab']}assignments/student/{master.stem}/{master.name}"
        assert link in page, f"chapters/part5/assignments.md has no Colab badge for {master.stem} ({link})"


def test_assert_raises_value_error_explains_a_miss():
    def strict(x):
        if x < 0:
            raise ValueError("negative")
        return x

    grading.assert_raises_value_error(strict, [((-1,), "a negative x")])
    with pytest.raises(AssertionError, match="strict should raise ValueError for x = 1"):
        grading.assert_raises_value_error(strict, [((-1,), "a negative x"), ((1,), "x = 1")])
    with pytest.raises(AssertionError, match="it raised TypeError"):
        grading.assert_raises_value_error(lambda x: x + "s", [((1,), "an int")], name="f")
