"""Negative controls for Chapters 7-11: each runs the check function its chapter runs on a named wrong
answer and expects :class:`repdiff.CheckFailed` (a check that passes for the wrong answer carries no claim).
Most also run the check once on the right answer first, so a check that always raises cannot pass here;
the plain positive runs are in tests/test_jacobians.py and tests/test_unet.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import repdiff
from repdiff import sampling
from repdiff.dae import jacobians as jac
from repdiff.dae import toy_measures as tm
from repdiff.paths import data_path
from repdiff.representations import check_extreme_row, check_separation

pytestmark = pytest.mark.negative_control

SWEEP = data_path("unet_sweep")


# ---------------------------------------------------------------------------------------------- Chapter 7
def _steps(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(512, 64, generator=g, dtype=dtype)
    f = torch.randn(512, 64, generator=g, dtype=dtype)
    return x, f, 1.3, 0.9


def test_ch07_printed_update_check_rejects_the_one_slip_step():
    x, f, s_hi, s_lo = _steps()
    right = sampling.ddim_step(x, f, s_hi, s_lo)
    repdiff.check("printed update vs DDIM", sampling.printed_paper_step(x, f, s_hi, s_lo), right, tol=1e-12)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("one slip fixed vs DDIM", sampling.printed_paper_step(x, f, s_hi, s_lo, fix_score_sign_only=True),
                      right, tol=1e-12)


@pytest.mark.parametrize("wrong", ["euler_maruyama", "no_noise"])
def test_ch07_ancestral_variance_check_rejects_other_steps(wrong):
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(20000, 8, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    s_hi, s_lo = 1.3, 0.9
    x_hi = x0 + s_hi * eps
    ok = sampling.ancestral_step(x_hi, x0, s_hi, s_lo, z)
    repdiff.check("ancestral step variance", (ok - x0).var().item(), s_lo**2, tol=0.01)
    if wrong == "euler_maruyama":
        bad = sampling.euler_maruyama_step(x_hi, x0, s_hi, s_lo, z)
    else:
        bad = sampling.ancestral_step(x_hi, x0, s_hi, s_lo, torch.zeros_like(z))
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check(f"{wrong} step variance", (bad - x0).var().item(), s_lo**2, tol=0.01)


@pytest.mark.parametrize("wrong", ["swapped", "same_model"])
def test_ch07_participation_ratio_check_rejects_swapped_or_equal_models(wrong):
    rng = np.random.default_rng(0)
    pr_mem, pr_gen = 3.0 + rng.random(256), 2.0 + rng.random(256)
    tm.check_median_larger("PR mem vs gen", pr_mem, pr_gen)
    a, b = (pr_gen, pr_mem) if wrong == "swapped" else (pr_gen, pr_gen)
    with pytest.raises(repdiff.CheckFailed):
        tm.check_median_larger(f"PR, {wrong}", a, b)


# ---------------------------------------------------------------------------------------------- Chapter 8
S_U2 = torch.tensor([0.505, 0.505, 0.505, 0.505], dtype=torch.float64)  # second eigenvalue of each MoG cluster


@pytest.mark.parametrize("wrong", ["sigma typo", "projector"])
def test_ch08_gain_check_rejects_the_sigma_typo_and_the_projector(wrong):
    learned = jac.gain_candidates(S_U2, 1.5)[wrong]
    with pytest.raises(repdiff.CheckFailed):
        jac.check_gain_prediction(f"{wrong} as learned", learned, S_U2, 1.5, tol=0.1)


def test_ch08_gain_check_refuses_to_pass_where_candidates_agree():
    """At σ = 0.1 with ‖u‖² = 16 (the memorized digits) even the exact Wiener gain cannot pass: the check
    cannot tell it from the typo or a projector there."""
    s = torch.full((7,), 16.0, dtype=torch.float64)
    w = jac.gain_candidates(s, 0.1)["wiener"]
    with pytest.raises(repdiff.CheckFailed, match="cannot discriminate"):
        jac.check_gain_prediction("Wiener at sigma = 0.1", w, s, 0.1, tol=0.05)


def test_ch08_gain_shortfall_check_rejects_the_wiener_gain_itself():
    s = torch.full((7,), 16.0, dtype=torch.float64)
    w = jac.gain_candidates(s, 2.0)["wiener"]
    jac.check_gain_shortfall("a smaller gain", 0.7 * w, w, at_least=0.1)
    with pytest.raises(repdiff.CheckFailed):
        jac.check_gain_shortfall("Wiener as learned", w, w, at_least=0.1)


def test_ch08_kl_above_bound_check_rejects_the_empirical_sampler():
    """Chapter 8's check 'smoothed KL at τ = 0.01 exceeds the printed bound' on f_emp, which copies."""
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    X3 = torch.stack([ang.cos(), ang.sin()], 1)
    sched = sampling.sigma_schedule(40, 3.0, 0.02)
    start = 3.0 * torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bound = math.pi / 2
    mem = sampling.sample(sampling.memorizing_relu_denoiser_fn(X3), start, sched, stochastic=True,
                          generator=torch.Generator().manual_seed(2), progress=False)
    repdiff.check_range("Cor. 3.2 sampler: KL - bound", sampling.smoothed_kl(mem, X3, 0.01, n_mc=1000) - bound, low=0.0)
    emp = sampling.sample(sampling.empirical_denoiser_fn(X3), start, sched, stochastic=True,
                          generator=torch.Generator().manual_seed(2), progress=False)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("f_emp sampler: KL - bound", sampling.smoothed_kl(emp, X3, 0.01, n_mc=1000) - bound,
                            low=0.0)


# ---------------------------------------------------------------------------------------------- Chapter 9
@pytest.fixture(scope="module")
def pipe4():
    pytest.importorskip("diffusers")
    from repdiff.unets.model import load_pipeline

    return load_pipeline(SWEEP / "n00004")


def test_ch09_ddim_vp_ve_check_rejects_the_vp_noise_std(pipe4):
    from repdiff.unets.model import ddim_vp_and_ve

    noise = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    x, x_ve = ddim_vp_and_ve(pipe4, noise, 20)
    repdiff.check("DDIM VP vs VE", x_ve, x, tol=1e-3)
    _, x_wrong = ddim_vp_and_ve(pipe4, noise, 20, sigma_kind="vp")
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("DDIM VP vs VE with sqrt(1 - abar) as sigma", x_wrong, x, tol=1e-3)


def test_ch09_ve_scaling_check_rejects_dividing_by_abar():
    from repdiff.noise import add_noise
    from repdiff.unets.model import build_scheduler, ve_sigmas

    abar = build_scheduler({}).alphas_cumprod.double()
    sig = ve_sigmas(abar)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64)
    t = 500
    x_vp = add_noise(x0, eps, abar[t])
    repdiff.check("VP / sqrt(abar)", x_vp / abar[t].sqrt(), x0 + sig[t] * eps, tol=1e-12)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("VP / abar", x_vp / abar[t], x0 + sig[t] * eps, tol=1e-12)


def test_ch09_denoiser_formula_check_rejects_sigma_squared(pipe4):
    from repdiff.unets.model import UNetDenoiser, ve_sigmas

    sched = pipe4.scheduler
    sig = ve_sigmas(sched.alphas_cumprod)
    den = UNetDenoiser(pipe4.unet, sched.alphas_cumprod)
    t, s = 500, float(sig[500])
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eps_hat = pipe4.unet(x / math.sqrt(1 + s**2), torch.full((2,), t)).sample
        repdiff.check("x - sigma eps_hat", den(x, s), x - s * eps_hat, tol=1e-5)
        with pytest.raises(repdiff.CheckFailed):
            repdiff.check("x - sigma^2 eps_hat", den(x, s), x - s**2 * eps_hat, tol=1e-5)


# ---------------------------------------------------------------------------------------------- Chapter 10
def _recorded_fractions() -> dict[int, float]:
    rows = json.loads((SWEEP / "bench" / "transition_50steps.json").read_text())["rows"]
    return {r["n_train"]: r["mem_fraction"] for r in rows}


@pytest.mark.parametrize("wrong", ["shuffled_sizes", "untrained_flat", "reversed", "switch_moved_earlier"])
def test_ch10_sweep_check_rejects_wrong_curves(wrong):
    from repdiff.unets.model import check_memorization_sweep

    fr = _recorded_fractions()
    Ns = sorted(fr)
    if wrong == "shuffled_sizes":
        vals = [fr[n] for n in Ns]
        perm = np.random.default_rng(3).permutation(len(vals))
        bad = {n: vals[p] for n, p in zip(Ns, perm, strict=True)}
        if bad == fr:  # pragma: no cover - the seed gives a real permutation
            pytest.skip("identity permutation")
    elif wrong == "untrained_flat":
        bad = dict.fromkeys(Ns, 0.5)
    elif wrong == "reversed":
        bad = {n: fr[m] for n, m in zip(Ns, Ns[::-1], strict=True)}
    else:
        bad = {**fr, 256: 0.05}
    with pytest.raises(repdiff.CheckFailed):
        check_memorization_sweep(bad, copies_up_to=64, most_at=256, none_from=1024)


# ---------------------------------------------------------------------------------------------- Chapter 11
def _scores(seed: int = 0):
    rng = np.random.default_rng(seed)
    std_mem, std_gen = torch.tensor(rng.normal(1.8, 0.3, 41)), torch.tensor(rng.normal(0.5, 0.2, 87))
    return std_mem, std_gen


def test_ch11_separation_check_rejects_shuffled_labels():
    std_mem, std_gen = _scores()
    check_separation("Std", std_mem, std_gen, low=0.9)
    allv = torch.cat([std_mem, std_gen])
    perm = torch.randperm(len(allv), generator=torch.Generator().manual_seed(0))
    with pytest.raises(repdiff.CheckFailed):
        check_separation("Std, shuffled labels", allv[perm[:41]], allv[perm[41:]], low=0.9)


def test_ch11_barely_separates_check_rejects_a_separating_score():
    std_mem, std_gen = _scores()
    rng = np.random.default_rng(1)
    check_separation("PR-like", torch.tensor(rng.normal(0, 1, 41)), torch.tensor(rng.normal(0, 1, 87)), high=0.75)
    with pytest.raises(repdiff.CheckFailed):
        check_separation("the Std as if it barely separated", std_mem, std_gen, high=0.75)


@pytest.mark.parametrize("claimed", ["up_blocks.0.resnets.1.nonlinearity", "mid_block"])
def test_ch11_worst_layer_check_rejects_another_layer(claimed):
    layers = ["down_blocks.1.resnets.0", "mid_block", "up_blocks.0.resnets.1.nonlinearity", "up_blocks.2.resnets.1"]
    table = np.array([[0.5, 0.55, 0.6], [0.99, 0.98, 0.9], [0.98, 0.97, 0.92], [0.1, 0.02, 0.2]])
    check_extreme_row("worst layer", table, layers, "up_blocks.2.resnets.1", margin=0.1)
    with pytest.raises(repdiff.CheckFailed):
        check_extreme_row("worst layer", table, layers, claimed, margin=0.1)
