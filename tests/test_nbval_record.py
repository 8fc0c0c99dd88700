"""tools/nbval_record.py: the website gets exactly what nbval executed, and never a failed or stale notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import nbval_record  # noqa: E402

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _notebook(path: Path, sources: list[str]) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# A notebook")] + [new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = KERNELSPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Run nbval with the recorder on a passing and a failing notebook; a stale copy of the failing one waits."""
    tmp = tmp_path_factory.mktemp("nbrec")
    _notebook(tmp / "nbs" / "ok.ipynb", [
        "print('hi')",
        "import repdiff\nrepdiff.glue('x', 0.5)",
        "1 + 1;",  # a trailing ';' shows nothing, as in Jupyter and the book build
        "import os\nos.environ.get('REPDIFF_BOOK_BUILD')",
    ])
    _notebook(tmp / "nbs" / "bad.ipynb", ["print('before')", "1 / 0", "print('after')"])
    out = tmp / "executed"
    stale = out / "nbs" / "bad.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("outputs of an older run")
    (tmp / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tools"), str(ROOT / "src")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("REPDIFF_BOOK_BUILD", None)
    times = tmp / "times.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval_record", "--nbval-record", str(out), "--notebook-times",
         str(times), "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-c", str(tmp / "pytest.ini"),
         "--rootdir", str(tmp), "nbs/ok.ipynb", "nbs/bad.ipynb"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    return tmp, out, times, result


def test_a_failing_cell_fails_the_run_with_its_traceback(recorded):
    _, _, _, result = recorded
    assert result.returncode != 0
    assert "ZeroDivisionError" in result.stdout


def test_a_failing_notebook_leaves_no_executed_copy_not_even_a_stale_one(recorded):
    _, out, _, _ = recorded
    assert not (out / "nbs" / "bad.ipynb").exists()


def test_the_executed_copy_holds_the_outputs_the_book_build_would(recorded):
    _, out, _, _ = recorded
    nb = nbformat.read(out / "nbs" / "ok.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[0].outputs[0]["text"] == "hi\n"
    glued = [o for o in code[1].outputs if o.get("metadata", {}).get("scrapbook", {}).get("name") == "x"]
    assert glued and "application/papermill.record/text/plain" in glued[0]["data"], code[1].outputs
    assert code[2].outputs == []
    assert code[3].outputs[0]["data"]["text/plain"] == "'1'"  # kernels run in book mode
    assert nb.metadata[nbval_record.RECORD_KEY]["executed_by"].startswith("nbval")


def test_times_are_reported_for_every_notebook(recorded):
    _, _, times, result = recorded
    data = json.loads(times.read_text())
    assert data["nbs/ok.ipynb"]["outcome"] == "passed" and data["nbs/bad.ipynb"]["outcome"] == "failed"
    assert {"seconds", "env", "python"} <= set(data["nbs/ok.ipynb"])
    assert "notebook run times" in result.stdout


def test_seed_cache_takes_only_current_complete_copies(recorded):
    """A source edited after nbval ran, or a notebook without a copy, is left for the build to execute."""
    tmp, out, _, _ = recorded
    edited = tmp / "nbs" / "ok_edited.ipynb"
    nb = nbformat.read(tmp / "nbs" / "ok.ipynb", as_version=4)
    nbformat.write(nb, edited)
    (out / "nbs" / "ok_edited.ipynb").write_bytes((out / "nbs" / "ok.ipynb").read_bytes())
    nb.cells[1].source = "print('changed')"
    nbformat.write(nb, edited)
    seeded, left = nbval_record.seed_cache(out, tmp / "cache", tmp,
                                           [tmp / "nbs" / "ok.ipynb", tmp / "nbs" / "bad.ipynb", edited])
    assert seeded == ["nbs/ok.ipynb"]
    assert any(s.startswith("nbs/bad.ipynb") for s in left)
    assert any(s.startswith("nbs/ok_edited.ipynb") and "changed" in s for s in left)
