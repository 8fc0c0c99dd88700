"""tools/compare_glue.py: the "same numbers" comparison of two builds (issue 23)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import compare_glue  # noqa: E402


def _build(folder: Path, values: dict[str, str]) -> Path:
    """One executed notebook ``chapters/x.ipynb`` under ``folder`` with ``values`` glued as text/plain."""
    outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": k, "mime_prefix": "p/"}},
                "data": {"p/text/plain": v}} for k, v in values.items()]
    nb = {"cells": [{"cell_type": "code", "source": [], "metadata": {}, "outputs": outputs}]}
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "x.ipynb").write_text(json.dumps(nb))
    return folder


def test_same_values_pass_and_a_changed_value_is_reported(tmp_path):
    """Negative controls: a value that moved (σ for σ²), a value dropped from one build, and a changed timing
    that only --ignore-timings may leave out."""
    base = {"err": "0.04", "n": "12", "label": "'spiky'", "run_seconds": "31.2"}
    before = _build(tmp_path / "a", base)
    assert compare_glue.compare(before, _build(tmp_path / "same", base), 1e-9, False) == []
    moved = _build(tmp_path / "b", {**base, "err": "0.2"})
    assert compare_glue.compare(before, moved, 1e-9, False) == ["chapters/x.ipynb: 'err' '0.04' -> '0.2'"]
    dropped = _build(tmp_path / "c", {k: v for k, v in base.items() if k != "n"})
    assert compare_glue.compare(before, dropped, 1e-9, False) == ["chapters/x.ipynb: 'n' only in before"]
    slower = _build(tmp_path / "d", {**base, "run_seconds": "40.0"})
    assert len(compare_glue.compare(before, slower, 1e-9, False)) == 1
    assert compare_glue.compare(before, slower, 1e-9, True) == []
