"""pytest plugin: keep what nbval executed, so the website is built from the same run (issue 24).

CI executes every chapter once. nbval runs each notebook cell as a test; this plugin listens to the kernel
messages nbval reads and turns them into cell outputs with the same code the book build uses
(``nbclient.NotebookClient.process_message``: streams, rich outputs, ``clear_output``, display updates and
Output widgets are handled exactly as when ``jupyter-book`` executes a notebook). Load it with
``PYTHONPATH=tools python -m pytest -p nbval_record --nbval-lax ...``.

- ``--nbval-record DIR``: the kernels start in book mode (``REPDIFF_BOOK_BUILD=1``, so ``repdiff.glue``
  stores its values for the ``{glue}`` roles), and a notebook whose every code cell passed is written with its
  outputs to ``DIR/<its path>``. Its old copy is deleted before its first cell runs, and nothing is written if
  a cell fails, is skipped or never runs: an executed copy always comes from one complete, passing run.
  ``scripts/build_book.sh --executed DIR`` then puts these copies into the book's execution cache
  (``python tools/nbval_record.py seed-cache DIR CACHE``) and executes only what is missing.
- Always: a table of each notebook's run time at the end of the session, also written (merged with what is
  there) to ``--notebook-times`` (default ``_build/notebook_times.json``) with the Python environment that ran
  it. Times are reported, never judged: no test fails on wall-clock time.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import nbformat
import pytest

BOOK_ENV = {"REPDIFF_BOOK_BUILD": "1"}
# nbval waits this long for each output message once a cell has replied (its own default is 5 s): generous,
# so a loaded machine never turns a passing cell into a failure.
OUTPUT_TIMEOUT_S = 120.0
RECORD_KEY = "repdiff_nbval_record"  # notebook metadata written with each executed copy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nbval_record", "record nbval's outputs for the website (tools/nbval_record.py)")
    group.addoption("--nbval-record", metavar="DIR", default=None,
                    help="write each notebook whose every cell passed, with the outputs nbval got, under DIR "
                         "(kernels start with REPDIFF_BOOK_BUILD=1)")
    group.addoption("--notebook-times", metavar="FILE", default=None,
                    help="JSON file of notebook run times, merged with its content (default "
                         "_build/notebook_times.json under the rootdir)")


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


def _env_name(root: Path) -> str:
    """The Python environment running this session: its path relative to the repository when inside it."""
    prefix = Path(sys.prefix).resolve()
    with contextlib.suppress(ValueError):
        return str(prefix.relative_to(root.resolve()))
    return str(prefix)


class _NoKernelClient:
    """Stands in for the kernel client of nbclient's Output-widget mimic: its state syncs are not sent.

    nbclient tells the kernel what an Output widget now holds; nothing a chapter shows depends on that, and
    nbval's kernel client is not ours to write to.
    """

    class session:  # noqa: N801 - mimics an attribute
        @staticmethod
        def msg(*args: Any, **kwargs: Any) -> dict:
            return {}

    class shell_channel:  # noqa: N801 - mimics an attribute
        @staticmethod
        def send(msg: dict) -> None:
            return None


class _NotebookRecord:
    """The outputs of one notebook as nbval runs it, cell by cell (one per notebook file, in its worker)."""

    def __init__(self, parent: Any, target: Path) -> None:
        from nbclient import NotebookClient

        self.target = target
        self.nb = copy.deepcopy(parent.nb)
        self.code_cells = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
        for i in self.code_cells:
            self.nb.cells[i].outputs = []
            self.nb.cells[i].execution_count = None
        self.client = NotebookClient(self.nb, record_timing=False)
        self.client.reset_execution_trackers()
        self.client.kc = _NoKernelClient()
        self.passed: set[int] = set()
        self.failed = False
        self.start = time.time()

    def cell_index(self, item: pytest.Item) -> int:
        return next(i for i, c in enumerate(item.parent.nb.cells) if c is item.cell)

    @contextlib.contextmanager
    def listening(self, item: pytest.Item):
        """While nbval runs ``item``, feed every message of its execution to nbclient's output handling."""
        from nbclient.exceptions import CellExecutionComplete

        index = self.cell_index(item)
        cell = self.nb.cells[index]
        cell.outputs = []
        self.client.clear_before_next_output = False
        parent, kernel = item.parent, item.parent.kernel
        sent: list[str] = []
        get_message = parent.get_kernel_message

        def execute_cell_input(cell_input: str, allow_stdin: bool | None = None) -> str:
            # as nbval's own call, but with the history kept, as in Jupyter and the book build: IPython then
            # numbers the cells and reads a trailing ";" (no echo) from this cell, not from the previous one
            msg_id = kernel.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin,
                                       stop_on_error=False)
            sent.append(msg_id)
            return msg_id

        def get_kernel_message(*args: Any, **kwargs: Any) -> dict:
            msg = get_message(*args, **kwargs)
            if sent and msg.get("parent_header", {}).get("msg_id") == sent[-1]:
                with contextlib.suppress(CellExecutionComplete):
                    self.client.process_message(msg, cell, index)
            return msg

        kernel.execute_cell_input = execute_cell_input
        parent.get_kernel_message = get_kernel_message
        try:
            yield
        finally:
            del kernel.execute_cell_input
            del parent.get_kernel_message

    def write(self, env: str) -> bool:
        """Write the executed notebook if every code cell passed; otherwise make sure no copy exists."""
        complete = not self.failed and self.passed == set(self.code_cells)
        if not complete:
            self.target.unlink(missing_ok=True)
            return False
        self.nb.metadata[RECORD_KEY] = {
            "executed_by": "nbval (tools/nbval_record.py)",
            "env": env,
            "python": platform.python_version(),
            "seconds": round(time.time() - self.start, 1),
        }
        self.target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.target.with_suffix(".ipynb.tmp")
        nbformat.write(self.nb, tmp)
        tmp.replace(self.target)
        return True


class NbvalRecorder:
    """The plugin's state for one pytest process (the controller, or one xdist worker)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.root = Path(config.rootpath)
        out = config.getoption("nbval_record")
        self.out_dir = (Path(out) if Path(out).is_absolute() else Path.cwd() / out) if out else None
        times = config.getoption("notebook_times")
        self.times_file = Path(times) if times else self.root / "_build" / "notebook_times.json"
        self.records: dict[str, _NotebookRecord] = {}
        self.seconds: dict[str, float] = defaultdict(float)
        self.outcome: dict[str, str] = {}

    # -- recording (runs where the notebook runs: the worker under xdist) --

    def _record_for(self, item: pytest.Item) -> _NotebookRecord | None:
        if self.out_dir is None or not _is_nbval_cell(item):
            return None
        key = item.nodeid.split("::")[0]
        if key not in self.records:
            target = self.out_dir / key
            target.unlink(missing_ok=True)  # never leave an older run's outputs behind
            self.records[key] = _NotebookRecord(item.parent, target)
        return self.records[key]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        if not _is_nbval_cell(item):
            yield
            return
        item.output_timeout = max(getattr(item, "output_timeout", 0), OUTPUT_TIMEOUT_S)
        rec = self._record_for(item)
        if rec is None:
            yield
            return
        saved = {k: os.environ.get(k) for k in BOOK_ENV}
        os.environ.update(BOOK_ENV)  # the kernel starts in the first cell's setup
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        rec = self._record_for(item)
        if rec is None or getattr(item.parent, "kernel", None) is None:
            yield
            return
        with rec.listening(item):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        rec = self._record_for(item)
        if rec is None:
            return
        report = outcome.get_result()
        if report.failed or (report.when == "call" and report.skipped) or (report.when == "setup" and report.skipped):
            rec.failed = True
        elif report.when == "call" and report.passed:
            rec.passed.add(rec.cell_index(item))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        yield
        rec = self._record_for(item)
        if rec is None:
            return
        if nextitem is None or nextitem.nodeid.split("::")[0] != item.nodeid.split("::")[0]:
            rec.write(_env_name(self.root))
            del self.records[item.nodeid.split("::")[0]]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for rec in self.records.values():  # notebooks whose last cell never ran: incomplete, not written
            rec.target.unlink(missing_ok=True)
        self.records.clear()
        if not hasattr(self.config, "workerinput"):
            self._write_times()

    # -- run times (where reports arrive: the controller under xdist) --

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::")[0]
        if not path.endswith(".ipynb"):
            return
        self.seconds[path] += report.duration
        if report.failed:
            self.outcome[path] = "failed"
        else:
            self.outcome.setdefault(path, "passed")

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if not self.seconds:
            return
        env = _env_name(self.root)
        python = platform.python_version()
        terminalreporter.section(f"notebook run times ({env}, Python {python}; reported, not tested)")
        for path, secs in sorted(self.seconds.items()):
            flag = "" if self.outcome.get(path) == "passed" else "  (failed)"
            terminalreporter.write_line(f"{secs:7.1f} s  {path}{flag}")
        terminalreporter.write_line(f"{sum(self.seconds.values()):7.1f} s  in all; written to {self.times_file}")

    def _write_times(self) -> None:
        """Merge this session's times into the JSON file (two sessions may run at once: scripts/test.sh)."""
        if not self.seconds:
            return
        self.times_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.times_file.with_suffix(".lock"), "w") as lock:
            with contextlib.suppress(ImportError, OSError):
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            data: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.times_file.read_text())
            env, python = _env_name(self.root), platform.python_version()
            for path, secs in self.seconds.items():
                data[path] = {"seconds": round(secs, 1), "env": env, "python": python,
                              "outcome": self.outcome.get(path, "passed")}
            self.times_file.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(NbvalRecorder(config), "nbval_record_state")


# ---------------------------------------------------------------------------------------------------------
# seed-cache: the executed notebooks into the book's execution cache (used by scripts/build_book.sh)
# ---------------------------------------------------------------------------------------------------------

def _code_cells(nb: nbformat.NotebookNode) -> list[tuple[str, dict]]:
    return [(c.source, dict(c.metadata)) for c in nb.cells if c.cell_type == "code"]


def seed_cache(executed: Path, cache_dir: Path, root: Path, notebooks: list[Path]) -> tuple[list[str], list[str]]:
    """Add ``executed/<path>`` of each source notebook to the jupyter-cache at ``cache_dir``.

    A copy is used only when its code cells (sources and metadata) and kernel are the source's: a notebook
    edited since nbval ran is left out, and the book build executes it. Returns (seeded, left out) paths.
    """
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    seeded, left = [], []
    for src in notebooks:
        rel = src.resolve().relative_to(root.resolve())
        copy_path = executed / rel
        if not copy_path.is_file():
            left.append(f"{rel} (no executed copy)")
            continue
        source_nb = nbformat.read(src, as_version=4)
        executed_nb = nbformat.read(copy_path, as_version=4)
        same_kernel = source_nb.metadata.get("kernelspec") == executed_nb.metadata.get("kernelspec")
        recorded = RECORD_KEY in executed_nb.metadata
        if _code_cells(source_nb) != _code_cells(executed_nb) or not same_kernel or not recorded:
            left.append(f"{rel} (the source changed since it was executed)")
            continue
        cache.cache_notebook_file(str(copy_path), uri=str(src.resolve()), check_validity=False, overwrite=True,
                                  data={"execution_seconds": executed_nb.metadata[RECORD_KEY].get("seconds")})
        seeded.append(str(rel))
    return seeded, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("seed-cache", help="put executed notebooks into the book's jupyter-cache")
    p.add_argument("executed", type=Path)
    p.add_argument("cache", type=Path)
    p.add_argument("notebooks", type=Path, nargs="+")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    seeded, left = seed_cache(args.executed, args.cache, root, args.notebooks)
    print(f"== execution cache: {len(seeded)} notebook(s) from the nbval run, {len(left)} to execute")
    for line in left:
        print(f"   executes: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
