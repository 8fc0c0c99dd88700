"""The helpers every chapter uses: checks, glue, device, seeds, data paths, the figure style."""

import contextlib
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import tomllib
import torch
from packaging.requirements import Requirement

import repdiff
from repdiff.notebook import CheckFailed, check, check_range, get_device, glue, seed_everything


def test_check_passes_prints_and_returns_error(capsys):
    err = check("two vectors", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), tol=1e-6)
    assert err < 1e-6 and isinstance(err, float)
    assert hasattr(err, "_ipython_display_")  # not echoed again at the end of a notebook cell
    out = capsys.readouterr().out
    assert "[PASS] two vectors" in out and "relative error" in out and "tolerance" in out


def test_check_raises_with_the_numbers(capsys):
    with pytest.raises(CheckFailed, match="exceeds the tolerance"):
        check("off by ten percent", [1.1], [1.0], tol=0.01)
    assert "[FAIL]" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="shapes differ"):
        check("shapes", np.zeros(3), np.zeros(4), tol=1.0)
    with pytest.raises(CheckFailed, match="NaN"):
        check("nan", [np.nan], [1.0], tol=1.0)
    assert check("absolute", torch.tensor([1.0, 2.0]), [1.0, 2.5], tol=0.6, relative=False) == 0.5


def test_check_range():
    assert check_range("in range", 0.5, low=0.0, high=1.0) == 0.5
    with pytest.raises(CheckFailed, match="outside"):
        check_range("too high", 2.0, high=1.0)
    with pytest.raises(CheckFailed):
        check_range("nan", float("nan"), low=0.0)


def test_glue_outside_the_book_prints_plain_numbers(capsys, monkeypatch):
    monkeypatch.delenv("REPDIFF_BOOK_BUILD", raising=False)
    assert glue("x", np.float64(0.25)) is None
    glue("t", torch.tensor(3))
    out = capsys.readouterr().out
    assert "x = 0.25" in out and "t = 3" in out and "np.float64" not in out
    fig = plt.figure()
    glue("fig", fig)  # figures are left to the inline backend, not printed
    assert "fig =" not in capsys.readouterr().out
    plt.close(fig)


def test_device_and_seeds():
    assert get_device("cpu", verbose=False).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="No CUDA GPU"):
            get_device("cuda")
    with pytest.raises(ValueError):
        get_device("tpu")
    a = (seed_everything(7).normal(), torch.randn(3))
    b = (seed_everything(7).normal(), torch.randn(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_setup_notebook_sets_the_white_style():
    repdiff.setup_notebook(seed=0, prefer="cpu")
    assert plt.rcParams["figure.facecolor"] == "white" and plt.rcParams["savefig.facecolor"] == "white"


def test_data_path_missing_file_says_what_to_do():
    with pytest.raises(FileNotFoundError, match="data/ folder"):
        repdiff.paths.data_path("no_such_checkpoint.safetensors")
    assert repdiff.paths.data_path("x", must_exist=False).name == "x"


def test_image_grid_accepts_flat_and_nchw():
    fig = repdiff.plotting.image_grid(np.zeros((3, 64)), shape=(8, 8))
    plt.close(fig)
    fig = repdiff.plotting.image_grid(torch.zeros(2, 3, 4, 4), ncols=2)
    plt.close(fig)
    with pytest.raises(ValueError, match="expected images"):
        repdiff.plotting.image_grid(np.zeros((3, 64)))


def test_plot_steering_sweep():
    a = [0.0, 0.1]
    attr = {"gen": np.zeros((2, 4)), "mem": np.ones((2, 4))}
    ims = {g: [torch.zeros(4, 3, 8, 8)] * 2 for g in ("gen", "mem")}
    fig = repdiff.plotting.plot_steering_sweep(a, attr, attr, [2, 1], ims, attribute_label="x", n_examples=2)
    assert len(fig.axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="one entry per strength"):
        repdiff.plotting.plot_steering_sweep(a, attr, attr, [2], ims, attribute_label="x")


def test_setup_cell_in_colab_names_the_url_when_the_clone_fails(tmp_path):
    """In (faked) Colab without repdiff, a clone that fails stops with the URL it tried and where to set it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import stamp_notebooks

    bogus = (tmp_path / "no-such-repo").as_uri()  # a local URL: fails offline, at once
    head = stamp_notebooks.SETUP_HEAD.format(repo=bogus).replace("/content/course", str(tmp_path / "course"))
    assert head.count(str(tmp_path / "course")) >= 2  # the clone target and the install path were both moved
    script = tmp_path / "setup_cell.py"
    script.write_text(
        "import importlib.util, sys, types\n"
        "_real = importlib.util.find_spec\n"  # repdiff missing, google.colab present: the Colab path
        "importlib.util.find_spec = lambda name, *a: (None if name == 'repdiff' else "
        "types.SimpleNamespace(name=name) if name == 'google.colab' else _real(name, *a))\n"
        + head.replace("import repdiff\n", "")
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "RuntimeError: git could not clone the course code from " + bogus in result.stderr, result.stderr
    assert "_config.yml (repository.url)" in result.stderr and "python tools/stamp_notebooks.py" in result.stderr
    assert "CalledProcessError" not in result.stderr
    assert not (tmp_path / "course").exists()  # nothing was installed from a half-made clone


def test_colab_versions_satisfy_every_requirement_of_the_course():
    """The setup cell's `pip install -e .[diffusers]` must change no Colab package (scripts/colab_env.sh checks the
    real install, slowly); here, fast: each of Colab's versions meets pyproject.toml's bound on that package."""
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    colab = {}
    for line in (root / "scripts" / "colab-versions.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            name, ver = line.split("#")[0].strip().split("==")
            colab[name.lower()] = ver
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["diffusers"]]
    bad = [f"{r} excludes Colab's {r.name} {colab[r.name.lower()]}" for r in reqs
           if r.name.lower() in colab and not r.specifier.contains(colab[r.name.lower()], prereleases=True)]
    assert not bad, "; ".join(bad)
    assert {"ipywidgets", "numpy", "diffusers", "transformers", "torch"} <= {r.name.lower() for r in reqs} & set(colab)
    ipyw = next(r for r in reqs if r.name == "ipywidgets")
    assert ipyw.specifier.contains("7.7.1") and ipyw.specifier.contains("8.1.9")  # the explorers work on both

def test_glue_all_glues_every_scalar_field(capsys):
    import dataclasses

    @dataclasses.dataclass
    class R:
        auroc: float
        n: int
        name: str
        scores: np.ndarray

    repdiff.glue_all("x", R(0.5, 3, "a", np.zeros(3)))
    out = capsys.readouterr().out.strip()
    assert out == "x: auroc=0.5, n=3, name=a"
    repdiff.glue_all("y", {"v": np.float64(1.25), "t": torch.tensor(2.0)})
    assert capsys.readouterr().out.strip() == "y: v=1.25, t=2"
    with pytest.raises(TypeError):
        repdiff.glue_all("z", [1, 2])


# ---------------------------------------------------------------------------------------------------------
# repdiff.checks: passes collapse into one block; a failure shows every line and stops the cell
# ---------------------------------------------------------------------------------------------------------

class _FakeShell:
    """Stands in for IPython's shell, so ``checks`` takes its notebook path (a collapsed HTML block)."""


def _run_checks(monkeypatch, capsys, factory, *, fail: bool) -> dict:
    """Run two checks (the second failing when ``fail``) inside ``factory("title")`` as a notebook would."""
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeShell())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    raised = None
    try:
        with factory("Tweedie's formula"):
            check("first", [1.0], [1.0], tol=1e-9)
            check("second", [1.0 + (0.5 if fail else 0.0)], [1.0], tol=1e-9)
    except CheckFailed as err:
        raised = err
    return {"shown": shown, "out": capsys.readouterr().out, "raised": raised}


def _problems_with_passes(run: dict) -> list[str]:
    problems = []
    if run["raised"] is not None:
        problems.append("passing checks raised")
    if len(run["shown"]) != 1:
        problems.append(f"expected one displayed block, got {len(run['shown'])}")
    else:
        html_out = run["shown"][0].get("text/html", "")
        if "<details class='repdiff-checks'>" not in html_out or "✓ 2 checks passed: Tweedie" not in html_out:
            problems.append("the block is not a collapsed 'repdiff-checks' details with the count")
        if html_out.count("[PASS]") != 2:
            problems.append("the block does not keep both check lines")
    if "[PASS]" in run["out"]:
        problems.append("pass lines were printed outside the collapsed block")
    return problems


def _problems_with_failure(run: dict) -> list[str]:
    problems = []
    if not isinstance(run["raised"], CheckFailed):
        problems.append("a failing check did not raise CheckFailed")
    if run["shown"]:
        problems.append("a failure was collapsed into a block")
    if "[PASS] first" not in run["out"] or "[FAIL] second" not in run["out"]:
        problems.append("a failure does not show every line in full")
    return problems


def test_checks_collapses_passes_into_one_block(monkeypatch, capsys):
    assert _problems_with_passes(_run_checks(monkeypatch, capsys, repdiff.checks, fail=False)) == []


def test_checks_failure_shows_every_line_and_raises(monkeypatch, capsys):
    assert _problems_with_failure(_run_checks(monkeypatch, capsys, repdiff.checks, fail=True)) == []


def test_checks_tests_catch_broken_implementations(monkeypatch, capsys):
    """Negative controls: a checks block that swallows a failure, or collapses it, is caught."""

    class Swallows(repdiff.checks):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            return True  # the failure no longer stops the cell

    class CollapsesFailures(repdiff.checks):
        def __exit__(self, exc_type, exc, tb):
            return super().__exit__(None, None, None)  # shows the block as if all passed, then raises

    class PrintsPasses(repdiff.checks):
        def __init__(self, title):
            super().__init__(title)
            self._redirect = contextlib.nullcontext()  # pass lines go to the page one by one

    assert _problems_with_failure(_run_checks(monkeypatch, capsys, Swallows, fail=True))
    assert _problems_with_failure(_run_checks(monkeypatch, capsys, CollapsesFailures, fail=True))
    assert _problems_with_passes(_run_checks(monkeypatch, capsys, PrintsPasses, fail=False))


def test_checks_in_plain_python_prints_a_summary(capsys):
    with repdiff.checks("plain"):
        check_range("in range", 0.5, low=0.0)
    out = capsys.readouterr().out
    assert out.startswith("✓ 1 check passed: plain") and "[PASS] in range" in out


# ---------------------------------------------------------------------------------------------------------
# repdiff.widgets: a static figure in the book build, live controls elsewhere
# ---------------------------------------------------------------------------------------------------------

def test_explorer_draws_once_at_the_defaults_in_the_book_build(monkeypatch, capsys):
    from repdiff.widgets import explorer

    monkeypatch.setenv("REPDIFF_BOOK_BUILD", "1")
    calls = []

    def draw(sigma: float = 0.3, steps: int = 7, kind: str = "b") -> None:
        calls.append((sigma, steps, kind))

    explorer(draw, labels={"sigma": "σ"}, sigma=(0.0, 1.0, 0.05), steps=(0, 10), kind=[("A", "a"), ("B", "b")])
    assert calls == [(0.3, 7, "b")]
    assert capsys.readouterr().out.strip() == ("Drawn at σ = 0.3, steps = 7, kind = B. In Jupyter or Colab this "
                                               "figure has live controls.")
    with pytest.raises(TypeError, match="no argument"):
        explorer(draw, nosuch=(0, 1))


def test_static_value_follows_interact():
    from repdiff.widgets import static_value

    assert static_value((0, 10)) == 5 and static_value((0, 10, 3)) == 3 and static_value((0.0, 1.0)) == 0.5
    assert static_value([("x", 1), ("y", 2)]) == 1 and static_value(["p", "q"]) == "p"
    assert static_value((0.0, 1.0), 0.25) == 0.25 and static_value(4.0) == 4.0
    ipywidgets = pytest.importorskip("ipywidgets")
    assert static_value(ipywidgets.IntSlider(value=3, min=0, max=9)) == 3


def test_explorer_is_live_outside_the_book_build(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from repdiff.widgets import explorer

    monkeypatch.delenv("REPDIFF_BOOK_BUILD", raising=False)
    got = {}
    monkeypatch.setattr(ipywidgets, "interact", lambda f, **kw: got.update(kw))

    def draw(sigma: float = 0.3, n: int = 2) -> None:
        raise AssertionError("interact draws, not explorer")

    assert explorer(draw, labels={"sigma": "σ"}, sigma=(0.0, 1.0, 0.05), n=(1, 5)) is None
    assert isinstance(got["sigma"], ipywidgets.FloatSlider) and got["sigma"].description == "σ"
    assert got["sigma"].value == 0.3 and got["n"] == (1, 5)  # unlabelled: left to interact


def test_phase_explorer_static_in_the_book_build(monkeypatch, capsys):
    from repdiff.widgets import phase_explorer

    monkeypatch.setenv("REPDIFF_BOOK_BUILD", "1")
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    ns, ps, sigmas = [2, 4], [2, 4, 8], [0.1, 0.5]
    phase_explorer({"mem": np.arange(12.0), "pr": np.ones(12)}, ns, ps, sigmas, labels={"mem": "memorization"})
    assert len(shown) == 1 and "memorization, σ = 0.1" in shown[0].axes[0].get_title()
    assert "measure = memorization, σ = 0.1" in capsys.readouterr().out
    plt.close("all")
    with pytest.raises(ValueError, match="grid has 12 cells"):
        phase_explorer({"mem": np.arange(5.0)}, ns, ps, sigmas)


def test_plot_representations():
    fig = repdiff.plotting.plot_representations({"a": np.ones(4), "b": np.arange(4)}, {"a": "red", "b": "blue"})
    assert len(fig.axes) == 2 and fig.get_figwidth() <= 7.0
    plt.close(fig)
    with pytest.raises(ValueError, match="same, non-empty"):
        repdiff.plotting.plot_representations({"a": np.ones(4)}, {"b": "blue"})


def test_explorer_glues_its_static_figure_for_a_numbered_caption(monkeypatch, capsys):
    """``glue_as``: the book build's static figure is glued (placed by a ``{glue:figure}`` with a caption), not
    shown with a note. Negative control: a drawing function that never calls ``plt.show()`` is an error."""
    from repdiff import widgets

    monkeypatch.setenv("REPDIFF_BOOK_BUILD", "1")
    glued = {}
    monkeypatch.setattr(widgets, "glue", lambda name, value, display=False: glued.update({name: value}))

    def draw(a: float = 0.5) -> None:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, a])
        plt.show()

    widgets.explorer(draw, glue_as="fig_demo", a=(0.0, 1.0))
    assert list(glued) == ["fig_demo"] and hasattr(glued["fig_demo"], "savefig")
    assert capsys.readouterr().out == ""  # no note line: the caption says it
    with pytest.raises(RuntimeError, match="drew no figure"):
        widgets.explorer(lambda a=0.5: None, glue_as="fig_none", a=(0.0, 1.0))
    plt.close("all")


def test_default_threads_follows_the_course_policy(monkeypatch):
    """One thread on a 2-core machine, up to 4 on larger ones, OMP_NUM_THREADS first. Negative control: a
    policy that always took every core would give 8 on the 8-core machine."""
    from repdiff import notebook

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, want in ((1, 1), (2, 1), (3, 3), (8, 4)):
        monkeypatch.setattr(notebook.os, "sched_getaffinity", lambda _pid, c=cores: set(range(c)), raising=False)
        assert notebook.default_threads() == want, cores
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert notebook.default_threads() == 3


def test_glue_run_time_measures_from_setup_notebook(monkeypatch):
    """The run time glued into a chapter's header starts at setup_notebook. Negative control: before any
    setup_notebook there is no clock, and asking is an error rather than a made-up time."""
    from repdiff import notebook

    monkeypatch.setattr(notebook, "_STARTED", None)
    with pytest.raises(RuntimeError, match="setup_notebook"):
        notebook.glue_run_time()
    glued = {}
    monkeypatch.setattr(notebook, "glue", lambda name, value: glued.update({name: value}))
    monkeypatch.setattr(notebook, "_STARTED", notebook.time.perf_counter() - 5.0)  # "setup ran 5 s ago"
    seconds = notebook.glue_run_time()
    assert set(glued) == {"run_seconds"} and glued["run_seconds"] == seconds and seconds >= 5.0
