"""Collect the wall time of each notebook run by nbval and fail the session if one runs over budget.

nbval turns each notebook cell into a test item; this plugin adds the cells' durations up per notebook,
prints a table at the end, and sets a failing exit status if any notebook exceeds
``REPDIFF_NOTEBOOK_BUDGET`` seconds (default 150: the course's target is 90 s on a 2-core CPU, and the
margin absorbs a loaded CI machine).
"""

from __future__ import annotations

import os
from collections import defaultdict

_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _notebook_seconds:
        return
    budget = float(os.environ.get("REPDIFF_NOTEBOOK_BUDGET", "150"))
    terminalreporter.section("notebook run times")
    for path, secs in sorted(_notebook_seconds.items()):
        flag = "  OVER BUDGET" if secs > budget else ""
        terminalreporter.write_line(f"{secs:7.1f} s  {path}{flag}")


def pytest_sessionfinish(session, exitstatus):
    budget = float(os.environ.get("REPDIFF_NOTEBOOK_BUDGET", "150"))
    if any(secs > budget for secs in _notebook_seconds.values()) and session.exitstatus == 0:
        session.exitstatus = 1
