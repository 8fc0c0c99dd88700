"""Hand-written statistics and schedules agree with the libraries that implement them (issue 24, item 6).

- ``metrics.mean_interval`` *is* ``scipy.stats.bootstrap`` (percentile method) now; it draws the same resamples
  as the course's earlier hand-written loop, so Chapter 14's intervals did not change.
- ``metrics.detection_metrics`` keeps its own per-class resampling loop (Assignment 3 asks students to write
  exactly that loop and compares with it); its intervals agree with ``scipy.stats.bootstrap`` on the same data
  to Monte Carlo accuracy.
- ``training.train_dae(schedule="cosine")`` (torch's ``CosineAnnealingLR``) follows diffusers' cosine schedule.
- ``repdiff.unets.train`` takes its warm-up and its EMA from diffusers itself (tests/test_train.py runs them).
"""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.optim.optimizer import register_optimizer_step_pre_hook

from repdiff import metrics
from repdiff.dae.models import ReLUDAE
from repdiff.dae.training import train_dae


def test_mean_interval_is_the_hand_written_percentile_bootstrap():
    x = np.random.default_rng(3).standard_normal(12)
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, len(x), (2000, len(x)))].mean(axis=1)  # the loop the course used before scipy
    lo, hi = np.percentile(means, [2.5, 97.5])
    mean, got_lo, got_hi = metrics.mean_interval(x)
    assert mean == pytest.approx(x.mean(), abs=1e-15)
    assert got_lo == pytest.approx(lo, abs=1e-12) and got_hi == pytest.approx(hi, abs=1e-12)


def test_detection_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(5)
    pos, neg = rng.standard_normal(60) + 1.0, rng.standard_normal(70)
    ours = metrics.detection_metrics(pos, neg, n_bootstrap=2000, seed=0)
    ref = stats.bootstrap((pos, neg), lambda p, q: metrics.detection_metrics(p, q)["auroc"], paired=False,
                          vectorized=False, n_resamples=2000, method="percentile", rng=np.random.default_rng(1))
    # Monte Carlo error of a 2.5% percentile of 2000 resamples here: about 0.005
    assert ours["auroc_lo"] == pytest.approx(ref.confidence_interval.low, abs=0.015)
    assert ours["auroc_hi"] == pytest.approx(ref.confidence_interval.high, abs=0.015)
    assert ours["auroc_hi"] - ours["auroc_lo"] > 0.1  # a real interval, not a point


def test_train_dae_cosine_schedule_is_diffusers_cosine():
    optimization = pytest.importorskip("diffusers.optimization")
    steps, lr = 40, 1e-2
    seen = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    try:
        X = np.random.default_rng(0).standard_normal((8, 5))
        train_dae(ReLUDAE(5, 6, seed=0), X, 0.1, 1e-3, steps=steps, lr=lr, schedule="cosine", progress=False)
    finally:
        hook.remove()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = optimization.get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=steps)
    want = []
    for _ in range(steps):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen, want, rtol=1e-9, atol=1e-15)
