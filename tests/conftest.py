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


def pytest_configure(config):
    """Under pytest-xdist, give each worker (and the notebook kernels it starts) one BLAS/OpenMP thread.

    Two workers each running torch with all cores oversubscribe a 2-core machine and can stall the kernels;
    ``scripts/test.sh`` sets the variables itself, this covers a hand-typed ``pytest -n 2``. An explicit
    setting is kept.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


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


def tiny_random_sd_pipeline():
    """A ``StableDiffusionPipeline`` with the tiny SD's layout at smaller widths and random weights (seed 0).

    Shared by the detection and steering tests; nothing is loaded from disk or the hub.
    """
    import copy

    import torch
    from diffusers import StableDiffusionPipeline

    from repdiff import captioned, tiny_sd

    recipe = copy.deepcopy(tiny_sd.DEFAULT_RECIPE)
    recipe["vae"]["block_out_channels"] = [16, 16, 16]
    recipe["unet"]["block_out_channels"] = [16, 32, 32, 32]
    recipe["unet"]["norm_num_groups"] = 8
    torch.manual_seed(0)
    tok = tiny_sd.build_tokenizer(captioned.vocabulary())
    c = tiny_sd.build_components(recipe, tok)
    pipe = StableDiffusionPipeline(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=tok, unet=c["unet"],
                                   scheduler=c["scheduler"], safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
