"""Negative controls of the checks of Chapters 12-14: each check, run on the wrong answer it is there to
reject, raises ``repdiff.CheckFailed`` (or the library refuses the input)."""

import numpy as np
import pytest
import torch
from conftest import tiny_random_sd_pipeline

import repdiff
from repdiff.sd import detection, pipeline, random_sd14, screening, steering

pytestmark = pytest.mark.negative_control


@pytest.fixture(scope="module")
def pipe():
    """A small random-weight (untrained) pipeline with the tiny SD's layout (tests/conftest.py)."""
    return tiny_random_sd_pipeline()


def _separated_scores(n_pos=40, n_neg=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 0.3, n_pos), rng.normal(0.5, 0.3, n_neg)


def test_ch13_detector_auroc_check_rejects_shuffled_labels():
    """Chapter 13's check "AUROC, copies vs held-out >= 0.9" fails when the labels are shuffled."""
    pos, neg = _separated_scores()
    assert screening.compare(pos, neg).auroc > 0.99  # the right answer passes
    scores = np.concatenate([pos, neg])
    perm = np.random.default_rng(1).permutation(len(scores))
    shuffled = screening.compare(scores[perm][:len(pos)], scores[perm][len(pos):])
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("AUROC, copies vs held-out generations", shuffled.auroc, low=0.9)


def test_ch13_detector_check_rejects_untrained_unet(pipe):
    """The same check fails for the detector of an untrained U-Net on two image sets that differ only in
    their (random) content: an untrained network has stored nothing."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(30, 3, 32, 32, generator=g) * 2 - 1
    b = torch.rand(30, 3, 32, 32, generator=g) * 2 - 1
    s_a, _ = detection.detector_scores(pipe, a, seed=0)
    s_b, _ = detection.detector_scores(pipe, b, seed=0)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("AUROC, copies vs held-out generations", screening.compare(s_a, s_b).auroc, low=0.9)


def test_ch13_unit_range_images_declared_minus_one_one_raise(pipe):
    """[0, 1] images passed where [-1, 1] is assumed (diffusers' output_type="pt") are refused, not scored."""
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="look like \\[0, 1\\]"):
        detection.detector_scores(pipe, x)
    with pytest.raises(ValueError, match="outside the declared"):
        detection.detector_scores(pipe, x * 2 - 1, value_range=(0, 1))


def test_ch13_bootstrap_interval_check_rejects_a_point_outside():
    """"The interval contains the estimate" fails for an estimate from other data (e.g. a mislabelled run)."""
    pos, neg = _separated_scores()
    r = screening.compare(pos, neg)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("bootstrap interval contains the estimate", 0.5, low=r.auroc_lo, high=r.auroc_hi)


def test_ch12_copy_share_check_rejects_held_out_labels():
    """Chapter 12's "share of planted-title generations that copy their own poster" check fails on the
    held-out generations' labels (nothing to copy), and the held-out check fails on the planted labels."""
    planted = np.r_[np.ones(76, bool), np.zeros(4, bool)]
    held = np.zeros(80, bool)
    repdiff.check_range("share of planted-title generations that copy their own poster", planted.mean(), low=0.8)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("share of planted-title generations that copy their own poster", held.mean(), low=0.8)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("share of held-out generations that copy a training image", planted.mean(), high=0.02)


def test_ch14_steering_result_rejects_equal_groups():
    """Chapter 14's checks (held-out slope above the copies' interval) fail when the copies move like the
    held-out samples (no resistance): the wrong answer of a model that memorizes nothing."""
    rng = np.random.default_rng(0)
    a = [0.0, 1.0, 2.0, 4.0]
    held = np.outer(a, np.ones(40)) * 0.05 + rng.normal(0, 0.01, (4, 40))
    same = np.outer(a, np.ones(40)) * 0.05 + rng.normal(0, 0.01, (4, 40))
    r = steering.steering_result(a, held, same, np.ones((4, 40), bool))
    assert not r.separated and 0.5 < r.ratio < 2
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("held-out slope's lower bound minus the copies' upper bound", r.heldout_lo - r.copies_hi,
                            low=0.0)


def test_ch14_copies_kept_rejects_copies_that_all_break():
    """The share of copies kept is 0 when every copy stops being a copy at the first strength."""
    a = [0.0, 1.0, 2.0]
    held = np.outer(a, np.ones(40)) * 0.1 + np.random.default_rng(0).normal(0, 0.01, (3, 40))
    still = np.zeros((3, 40), bool)
    still[0] = True
    r = steering.steering_result(a, held, np.zeros((3, 40)), still)
    assert r.a_change == 1.0 and r.copies_kept == 0.0
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("share of copies still copies where the held-out samples change", r.copies_kept, low=0.5)


def test_ch14_zero_strength_moves_nothing(pipe):
    """Chapter 14's check "held-out samples: lower 95 % bound of the mean brightness slope >= 1e-3" rejects a
    sweep in which steering did nothing (the hook with a = 0 at every strength): all slopes are 0."""
    v = {"up_blocks.1.resnets.0": torch.ones(pipe.unet.config.block_out_channels[-2])}
    base = pipeline.generate(pipe, ["a", "b", "c"], steps=3, seed=0).images
    with steering.steer(pipe.unet, v, 0.0, start=0, stop=3):
        same = pipeline.generate(pipe, ["a", "b", "c"], steps=3, seed=0).images
    torch.testing.assert_close(base, same)
    bright = np.stack([steering.brightness(base), steering.brightness(same)])
    r = steering.steering_result([0.0, 0.5], bright, bright, np.ones((2, 3), bool))
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("held-out samples: lower 95 % bound of the mean brightness slope", r.heldout_lo,
                            low=1e-3)


def test_ch14_copies_at_zero_check_rejects_a_lost_copy():
    """"Copies at a = 0 are the screened copies" fails as soon as one a = 0 sample is not a copy (sampling
    resumed from the wrong latents)."""
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("copies at a = 0 are the screened copies", np.array([True, False, True]).mean(), low=1.0)


def test_ch12_block_layout_check_rejects_another_layout():
    """Chapter 12's layout checks fail for a U-Net with other block types or two resnets per up block."""
    sd14 = random_sd14.sd14_unet_config()
    other = list(sd14["down_block_types"])
    other[-1] = "CrossAttnDownBlock2D"
    mismatch = sum(a != b for a, b in zip(other, sd14["down_block_types"], strict=True))
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("block layout vs SD v1.4 (number of mismatches)", mismatch, 0, tol=0, relative=False)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("resnets per up block", [2, 2, 2, 2], [3, 3, 3, 3], tol=0, relative=False)


def test_ch12_guided_loop_check_rejects_another_guidance(pipe):
    """"Our guided DDIM loop vs StableDiffusionPipeline" fails when the loop uses another guidance weight."""
    probe = ["the quiet harbor by tumiti", "a red circle above a blue square on a white background"]
    ours = pipeline.generate(pipe, probe, steps=3, guidance=1.0, seed=1).images
    ref = pipe(probe, num_inference_steps=3, guidance_scale=7.5, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(1)).images
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("our guided DDIM loop vs StableDiffusionPipeline (max abs, [0,1] pixels)",
                      (ours.numpy().transpose(0, 2, 3, 1) + 1) / 2, ref, tol=1e-4, relative=False)


def test_ch12_prompt_list_checks_reject_swapped_lists():
    """The prompt-list checks fail when the planted and held-out lists are swapped."""
    planted, held = ["the quiet harbor by tumiti"], ["a red circle above a blue square on a white background"]
    training_captions = set(planted) | {"a green square below a red circle on a gray background"}
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("memorized prompts = planted captions", float(held == planted), 1.0, tol=0)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("held-out prompts found in the training captions", len(set(planted) & training_captions), 0,
                      tol=0, relative=False)


def test_ch12_recall_checks_reject_an_untrained_unet(pipe):
    """Chapter 12's recall checks. "Own title at t=999: error <= 0.5" fails for an untrained U-Net (it recalls
    nothing); the ratio checks (empty / own >= 2 at t=999, another title / own >= 2 at t=850, control / planted
    >= 2 at t=500) fail when both sides are the same measurement (ratio 1), and "empty / own <= 2 at t=500"
    fails for a prompt that matters there (ratio 3)."""
    z = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # unit-scale latents
    err = float(np.median(pipeline.clean_estimate_error(pipe, z, ["the quiet harbor by tumiti"] * 4, [999])))
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("own title at t=999: relative error (recall from the title)", err, high=0.5)
    for what in ("t=999: empty prompt / own title error (recall needs the title)",
                 "t=850: another title / own title error",
                 "t=500: control posters / planted posters error (own titles)"):
        with pytest.raises(repdiff.CheckFailed):
            repdiff.check_range(what, err / err, low=2)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("t=500: empty prompt / own title error (recognition needs no prompt)", 3.0, high=2)


def test_ch12_median_ratio_check_rejects_equal_groups():
    """"Median NN ratio: planted-title minus held-out generations <= -0.1" fails when both groups are alike."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 1, 64), rng.uniform(0.5, 1, 64)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("median NN ratio: planted-title minus held-out generations",
                            float(np.median(a) - np.median(b)), high=-0.1)


def test_ch14_overlap_check_rejects_a_separating_sweep():
    """Chapter 14's check "the slope intervals overlap" fails for a sweep that shows the paper's contrast
    (held-out samples move, copies do not)."""
    rng = np.random.default_rng(0)
    a = [0.0, 0.2, 0.3, 0.5]
    held = np.outer(a, rng.uniform(0.2, 0.4, 40)) + rng.normal(0, 0.01, (4, 40))
    cop = rng.normal(0, 0.01, (4, 40))
    r = steering.steering_result(a, held, cop, np.ones((4, 40), bool))
    assert r.separated and r.moved
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("copies' upper 95 % bound minus held-out lower bound (the slope intervals overlap)",
                            r.copies_hi - r.heldout_lo, low=0.0)
