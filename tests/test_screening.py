"""repdiff.sd.screening: per-generation labels and their summary, on synthetic data (no shipped model needed)."""

import numpy as np
import pytest
import torch

from repdiff.sd import screening


def _screening(group, title, is_copy, own):
    n = len(group)
    z = torch.zeros(n, 4, 2, 2)
    return screening.Screening(
        captions=[f"c{i}" for i in range(n)], group=np.asarray(group), title=np.asarray(title), images=torch.zeros(
            n, 3, 4, 4), latents0=z, latents_at=None, keep_step=None, wen_first=np.zeros(n), wen_mean=np.zeros(n),
        nn_ratio=np.where(np.asarray(is_copy, bool), 0.1, 0.9), nn_kind=np.asarray(group), nn_index=np.asarray(title),
        is_copy=np.asarray(is_copy, bool), own_copy=np.asarray(own, bool), seconds_per_image=0.1, steps=30,
        guidance=7.5)


def test_label_summary_counts():
    scr = _screening(["planted"] * 4 + ["control"] * 2 + ["held_out"] * 3, [0, 1, 0, 1, 0, 1, 0, 1, 2],
                     [1, 1, 1, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 1, 0, 0, 0, 0])
    s = screening.label_summary(scr)
    assert (s.n_planted, s.n_titles, s.copies, s.other_copies, s.titles_copied) == (4, 2, 2, 1, 1)
    assert s.copy_share == pytest.approx(0.5)
    assert (s.n_control, s.control_copies, s.n_held_out, s.held_out_copies) == (2, 1, 3, 1)
    np.testing.assert_array_equal(scr.copies(), [1, 0, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="group"):
        scr.mask("planted titles")


def test_nearest_and_ratio():
    ref = torch.eye(4).reshape(4, 1, 2, 2).expand(4, 3, 2, 2).contiguous()
    x = torch.stack([ref[2] * 0.98, (ref[0] + ref[1]) / 2])
    ratio, nearest = screening._label(x, ref)
    assert nearest[0] == 2 and ratio[0] < 1 / 3 and ratio[1] == pytest.approx(1.0)


def test_compare_is_detection_metrics():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30), rng.normal(0, 1, 50)
    c = screening.compare(pos, neg, n_bootstrap=200)
    ref = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    assert c.auroc == pytest.approx(ref) and c.auroc_lo <= c.auroc <= c.auroc_hi and (c.n_pos, c.n_neg) == (30, 50)
    # without a bootstrap (Chapter 13's exercises) the same AUROC and no interval, not a KeyError
    c0 = screening.compare(pos, neg, n_bootstrap=0)
    assert c0.auroc == pytest.approx(ref) and np.isnan([c0.auroc_lo, c0.auroc_hi, c0.tpr_lo, c0.tpr_hi]).all()


def test_steering_rows_skip_white_backgrounds_and_take_copies():
    """Held-out rows whose caption ends in "white background" are skipped (the white concept could not show);
    planted rows that are not copies of their own poster are not taken."""
    group = ["planted"] * 3 + ["held_out"] * 4
    scr = _screening(group, [0, 1, 2, 0, 1, 2, 3], [1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0])
    scr.captions = ["p0", "p1", "p2", "a on a white background", "b on a gray background",
                    "c on a white background", "d on a pink background"]
    rows, n_held = scr.steering_rows(5)
    assert n_held == 2 and rows.tolist() == [4, 6, 0, 2]
    rows, n_held = scr.steering_rows(1)
    assert n_held == 1 and rows.tolist() == [4, 0]
