"""Negative controls of the checks of Chapters 12-14: each check, run on the wrong answer it is there to
reject, raises ``repdiff.CheckFailed`` (or the library refuses the input)."""

import numpy as np
import pytest
import torch

import repdiff
from repdiff.sd import detection, pipeline, random_sd14, retention, screening, steering

pytestmark = pytest.mark.negative_control



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


A_CH14 = [0.0, 0.2, 0.3, 0.5]


def _sweep(held_slopes, copies_slopes, *, kept=1.0, seed=0):
    """A synthetic Chapter 14 sweep: attribute = slope · a + noise per prompt, and the copies' flags."""
    rng = np.random.default_rng(seed)
    a = np.asarray(A_CH14)
    held = np.outer(a, held_slopes) + rng.normal(0, 1e-4, (len(a), len(held_slopes)))
    cop = np.outer(a, copies_slopes) + rng.normal(0, 1e-4, (len(a), len(copies_slopes)))
    still = np.ones(cop.shape, bool)
    still[1:, int(round(kept * cop.shape[1])):] = False
    return steering.steering_result(A_CH14, held, cop, still)


def _measured_like(seed=0):
    """Slopes like the ones Chapter 14 measured: held-out around 0 (interval contains 0), copies slightly up."""
    z = np.random.default_rng(seed).normal(size=(2, 40))
    z = (z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)  # the measured means and spreads, exactly
    return 0.0017 + 0.006 * z[0], 0.0039 + 0.004 * z[1]


def _changes(held=0.06, copies=0.027, seed=0):
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(held, 0.02, 40)), np.abs(rng.normal(copies, 0.01, 40))


def test_ch14_sweep_claims_pass_on_the_measured_pattern():
    """The right answer passes: the measured pattern (the negative controls below change one part of it)."""
    steering.check_sweep_claims(_sweep(*_measured_like()), *_changes())


def test_ch14_overlap_check_rejects_a_separating_sweep():
    """"The slope intervals overlap" fails for a sweep with the paper's contrast (held-out samples move,
    copies do not)."""
    rng = np.random.default_rng(0)
    r = _sweep(rng.uniform(0.2, 0.4, 40), rng.normal(0, 1e-3, 40))
    assert r.separated
    with pytest.raises(repdiff.CheckFailed, match="slope intervals overlap"):
        steering.check_sweep_claims(r, *_changes())


def test_ch14_heldout_zero_check_rejects_held_out_samples_that_move():
    """"The held-out slope's interval contains 0" fails when the held-out samples brighten like the copies
    (intervals still overlap)."""
    _, cop = _measured_like()
    r = _sweep(cop + 0.0005, cop)
    assert not r.separated and r.heldout_lo > 0
    with pytest.raises(repdiff.CheckFailed, match="held-out slope: lower 95 % bound"):
        steering.check_sweep_claims(r, *_changes())


def test_ch14_copies_slope_check_rejects_a_sweep_that_changes_nothing(pipe):
    """"The copies' slope interval excludes 0" fails for a sweep in which steering did nothing (the hook with
    a = 0 at every strength): every slope is 0."""
    v = {"up_blocks.1.resnets.0": torch.ones(pipe.unet.config.block_out_channels[-2])}
    base = pipeline.generate(pipe, ["a", "b", "c"], steps=3, seed=0).images
    with steering.steer(pipe.unet, v, 0.0, start=0, stop=3):
        same = pipeline.generate(pipe, ["a", "b", "c"], steps=3, seed=0).images
    torch.testing.assert_close(base, same)
    bright = np.stack([steering.brightness(base)] + [steering.brightness(same)] * 3)
    r = steering.steering_result(A_CH14, bright, bright, np.ones((4, 3), bool))
    assert r.copies_lo == 0 == r.copies_hi
    with pytest.raises(repdiff.CheckFailed, match="copies' slope: lower 95 % bound"):
        steering.check_sweep_claims(r, *_changes())


def test_ch14_copies_kept_check_rejects_copies_that_break():
    """"The copies hold their image" (>= 90 % still copies at the change strength) fails when half break."""
    r = _sweep(*_measured_like(), kept=0.5)
    assert r.copies_kept == 0.5
    with pytest.raises(repdiff.CheckFailed, match="share of copies still copies"):
        steering.check_sweep_claims(r, *_changes())


def test_ch14_change_check_rejects_groups_that_change_alike():
    """"Held-out images change more than copies" fails when both groups change by the same amount."""
    with pytest.raises(repdiff.CheckFailed, match="RMS change"):
        steering.check_sweep_claims(_sweep(*_measured_like()), *_changes(held=0.03, copies=0.03))


def test_ch14_moves_checks_reject_copies_that_move_and_a_move_along_the_axis():
    """"Copies hardly move" fails when the copies move like the held-out samples; "held-out samples move
    mostly across the concept axis" fails when they move straight along it."""
    rng = np.random.default_rng(0)
    r0, axis = rng.normal(size=(40, 8)), np.eye(8)[0]
    across = np.zeros(8)
    across[1] = 1.0
    held = steering.representation_moves(r0, r0 + across + rng.normal(0, 0.05, (40, 8)), axis)
    still = steering.representation_moves(r0, r0 + 0.05 * across, axis)
    steering.check_moves_claims(held, still)  # the right answer passes
    with pytest.raises(repdiff.CheckFailed, match="copies' move"):
        steering.check_moves_claims(held, held)
    toward = steering.representation_moves(r0, r0 + axis, axis)
    with pytest.raises(repdiff.CheckFailed, match="across part minus"):
        steering.check_moves_claims(toward, still)


def test_ch14_push_checks_reject_the_wrong_signs_and_a_memorizer_that_keeps_the_push():
    """The push-test checks at the measured values pass; each fails on its wrong answer: a pass that keeps the
    held-out push, copies that keep none or all of it, and a "memorizer" that keeps as much as the U-Net."""
    retention.check_push_claims(-0.66, 0.28, 0.0)
    for held, copies, memorizer, which in ((0.3, 0.28, 0.0, "held-out"), (-0.66, 0.0, 0.0, "copies"),
                                           (-0.66, 1.0, 0.0, "copies"), (-0.66, 0.28, 0.28, "memorizer")):
        with pytest.raises(repdiff.CheckFailed, match=which):
            retention.check_push_claims(held, copies, memorizer)


def test_ch14_gain_checks_reject_an_instance_norm_and_equal_gains():
    """"No GroupNorm is an instance norm" fails for a U-Net with a GroupNorm of one channel per group
    (``GroupNorm(32, 32)``), and "a channel-mean shift keeps more than a random one" fails when the two gains
    are equal."""
    retention.check_gain_claims(0.24, 0.034, 8)
    instance = torch.nn.GroupNorm(32, 32)
    with pytest.raises(repdiff.CheckFailed, match="channels per group"):
        retention.check_gain_claims(0.24, 0.034, instance.num_channels // instance.num_groups)
    with pytest.raises(repdiff.CheckFailed, match="channel-mean shift minus random"):
        retention.check_gain_claims(0.034, 0.034, 8)
