"""Negative controls for the checks added to Chapters 7-11 after the prose audit: each runs the check its
chapter runs on the named wrong answer and expects :class:`repdiff.CheckFailed`; most also run it once on
the right answer first, so a check that always raises cannot pass here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import repdiff
from repdiff import sampling
from repdiff.dae import jacobians as jac
from repdiff.metrics import detection_metrics, tpr_at_percentile

pytestmark = pytest.mark.negative_control


# ---------------------------------------------------------------------------------------------- Chapter 7
def _one_slip_ratios(step):
    g = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(512, 64, generator=g, dtype=torch.float64)
    f = torch.randn(512, 64, generator=g, dtype=torch.float64)
    s_hi, s_lo = 1.3, 0.9
    ratio = (step(x, f, s_hi, s_lo) - f).norm(dim=1) / (x - f).norm(dim=1)
    return ratio, 1 + (s_hi - s_lo) / s_hi


def _identity_check(ratio, exact):
    repdiff.check("identity, one slip fixed: distance to f grows by exactly 1 + (s - s')/s",
                  ratio, torch.full_like(ratio, exact), tol=1e-12, relative=False)


def test_ch07_one_slip_identity_rejects_the_correct_ddim_step():
    """The identity holds for the one-slip step; the correct DDIM step (factor σ'/σ, towards f) fails it."""
    ratio, exact = _one_slip_ratios(
        lambda x, f, s, s2: sampling.printed_paper_step(x, f, s, s2, fix_score_sign_only=True))
    _identity_check(ratio, exact)
    ratio_ddim, _ = _one_slip_ratios(sampling.ddim_step)
    with pytest.raises(repdiff.CheckFailed):
        _identity_check(ratio_ddim, exact)


def test_ch07_one_slip_identity_rejects_the_printed_pair():
    """The printed pair (both slips) is the DDIM step and does not grow the distance: the identity fails."""
    ratio, exact = _one_slip_ratios(sampling.printed_paper_step)
    with pytest.raises(repdiff.CheckFailed):
        _identity_check(ratio, exact)


# ---------------------------------------------------------------------------------------------- Chapter 8
S_U2 = torch.full((4,), 0.505, dtype=torch.float64)  # second eigenvalue of each MoG cluster


@pytest.mark.parametrize("wrong", ["sigma typo", "projector"])
def test_ch08_gain_check_at_sigma_3_rejects_the_typo_and_the_projector(wrong):
    """Chapter 8's gain check at σ = 3 (tol 0.15) passes a gain 11% above Wiener (the measured 0.059 vs
    0.053) and rejects the σ-typo gain and a projector."""
    w = jac.gain_candidates(S_U2, 3.0)["wiener"]
    jac.check_gain_prediction("11% above Wiener", 1.11 * w, S_U2, 3.0, tol=0.15)
    with pytest.raises(repdiff.CheckFailed):
        jac.check_gain_prediction(f"{wrong} as learned", jac.gain_candidates(S_U2, 3.0)[wrong], S_U2, 3.0,
                                  tol=0.15)


# ---------------------------------------------------------------------------------------------- Chapter 9
def test_ch09_fractional_step_check_rejects_nearest_step_rounding():
    """At the log-midpoint of σ_500 and σ_501 the interpolated step is 500.5; rounding to the nearest
    training step (500 or 501) fails the check."""
    pytest.importorskip("diffusers")
    from repdiff.unets.model import UNetDenoiser, build_scheduler, ve_sigmas

    scheduler = build_scheduler({"data": {"name": "procedural", "n": 4}})
    den = UNetDenoiser(torch.nn.Identity(), scheduler.alphas_cumprod)
    sig = ve_sigmas(scheduler.alphas_cumprod.double())
    mid = math.sqrt(float(sig[500] * sig[501]))
    t = den.timestep(mid)
    repdiff.check("fractional step at the log-midpoint", t, 500.5, tol=1e-6, relative=False)
    for rounded in (math.floor(t), math.ceil(t), round(t)):
        with pytest.raises(repdiff.CheckFailed):
            repdiff.check("nearest-step rounding", float(rounded), 500.5, tol=1e-6, relative=False)


def _nn_distance_checks(d_mem, d_gen):
    repdiff.check_range("median distance to the nearest training image, N = 4", d_mem, high=1.0)
    repdiff.check_range("median distance to the nearest training image, N = 8,192", d_gen, low=1.5)


def test_ch09_nearest_distance_checks_reject_the_swapped_medians():
    """The measured medians (0.12 for N = 4, 3.08 for N = 8,192) pass; the two swapped fail."""
    _nn_distance_checks(0.12, 3.08)
    with pytest.raises(repdiff.CheckFailed):
        _nn_distance_checks(3.08, 0.12)


# --------------------------------------------------------------------------------------------- Chapter 10
GAP_1024 = np.array([3.23, 8.61, 4.76, 1.87])  # test/train error ratios of the N = 1,024 model
GAP_8192 = np.array([0.94, 1.00, 1.11, 1.11])
SIGMAS = [0.05, 0.2, 0.5, 1.0]


def _no_gap_across_sigma(row):
    for sigma, v in zip(SIGMAS, row, strict=True):
        repdiff.check_range(f"test/train error ratio at N = 8192, sigma = {sigma}", v, low=0.5, high=1.5)


def test_ch10_no_gap_check_rejects_the_n1024_model():
    """"Ratio near 1 at every σ" holds for N = 8,192 and fails for N = 1,024 (drawn as generalizing)."""
    _no_gap_across_sigma(GAP_8192)
    with pytest.raises(repdiff.CheckFailed):
        _no_gap_across_sigma(GAP_1024)


def test_ch10_gap_remains_check_rejects_no_gap():
    """"A gap remains at N = 1,024" (ratio ≥ 2 at σ = 0.2) fails for a model that treats both alike."""
    what = "test/train error ratio at N = 1024, sigma = 0.2 (a gap remains)"
    repdiff.check_range(what, GAP_1024[1], low=2)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range(what, GAP_8192[1], low=2)


# --------------------------------------------------------------------------------------------- Chapter 11
@pytest.mark.parametrize("row", [[0.51, 0.53, 0.55, 0.56], [0.45, 0.19, 0.05, 0.01]],
                         ids=["encoder_8x8_row", "last_decoder_row"])
def test_ch11_low_resolution_check_rejects_other_layers(row):
    """"4×4 layers, t ≤ 300: smallest AUROC ≥ 0.8" fails when a row of another resolution is included."""
    low4 = np.array([[0.99, 0.98, 0.94, 0.86]] * 5)
    repdiff.check_range("4x4 layers, t <= 300: smallest AUROC", low4.min(), low=0.8)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("4x4 layers, t <= 300: smallest AUROC", np.vstack([low4, row]).min(), low=0.8)


def test_ch11_percentile_rule_is_the_official_one_not_the_max_fpr_rule():
    """With 87 negatives the 99th percentile (linear interpolation) lies between the two largest negatives,
    so three positives just below the largest count; the max-FPR rule allows no false positive and counts
    none. The wrong rules (a percentile of the positives, the 1st percentile) give other values."""
    neg = np.arange(87.0)
    pos = np.array([85.5, 85.6, 85.7, 1.0])
    threshold = np.percentile(neg, 99)
    assert 85 < threshold < 86
    assert tpr_at_percentile(pos, neg, fpr=0.01) == pytest.approx(0.75)
    assert detection_metrics(pos, neg)["tpr_at_1pct_fpr"] == 0.0
    assert np.mean(pos >= np.percentile(pos, 99)) != pytest.approx(0.75)
    assert np.mean(pos >= np.percentile(neg, 1)) != pytest.approx(0.75)
    with pytest.raises(ValueError):
        tpr_at_percentile(pos, neg, fpr=1.0)
