"""Shared test configuration and helpers.

No test here judges wall-clock time. Notebook run times are reported (a table, and
``_build/notebook_times.json``) by the pytest plugin ``tools/nbval_record.py``, which ``scripts/test.sh``
loads with ``-p nbval_record``.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    """Under pytest-xdist, give each worker (and the notebook kernels it starts) one BLAS/OpenMP thread.

    Two workers each running torch with all cores oversubscribe a 2-core machine and can stall the kernels;
    ``scripts/test.sh`` sets the variables itself, this covers a hand-typed ``pytest -n 2``. An explicit
    setting is kept.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


@pytest.fixture(scope="module")
def ch1_prior():
    """Chapter 1's Gaussian-mixture prior, five query points and sigma = 0.5 (its negative controls)."""
    import numpy as np
    import torch

    from repdiff.data.synthetic import GaussianMixture

    prior = GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]],
        covs=[np.diag([0.30, 0.05]), [[0.10, 0.06], [0.06, 0.10]], np.diag([0.05, 0.40])],
    )
    queries = torch.tensor([[-1.0, 0.5], [0.0, 0.0], [1.2, 0.2], [0.8, -1.0], [2.5, 2.0]], dtype=torch.float64)
    return prior, queries, 0.5


def tiny_random_sd_pipeline():
    """A ``StableDiffusionPipeline`` with the tiny SD's layout at smaller widths and random weights (seed 0).

    Shared by the detection and steering tests; nothing is loaded from disk or the hub.
    """
    import copy

    import torch
    from diffusers import StableDiffusionPipeline

    from repdiff.data import captioned
    from repdiff.sd import tiny_sd

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


@pytest.fixture(scope="module")
def pipe():
    """:func:`tiny_random_sd_pipeline`, one per test module (the detection, steering, cache and hub tests)."""
    return tiny_random_sd_pipeline()
