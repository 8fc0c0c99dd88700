"""Negative controls of the checks added to Chapters 12 and 13: each check, fed the wrong answer it is there
to reject, raises ``repdiff.CheckFailed``."""

import json

import numpy as np
import pytest
import torch

import repdiff
from repdiff.data import captioned, scenes
from repdiff.sd import detection, screening, tiny_sd

pytestmark = pytest.mark.negative_control

MODEL = tiny_sd.default_model_path()
PAPER_CELL = (detection.DETECTION_SITE, 10, "max")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(MODEL / "tokenizer")


def _shipped_prompts() -> list[str]:
    return [p for name in ("memorized", "control", "held_out") for p in tiny_sd.read_prompts(name, MODEL)]


def _check_one_token(split: list[str]) -> None:
    repdiff.check("distinct words of the shipped prompts split into several tokens", len(split), 0, tol=0,
                  relative=False)


def test_ch12_one_token_check_rejects_a_word_not_in_the_data(tokenizer):
    """Chapter 12's "every word of the shipped prompts is one token" fails once a word that is not in the data
    set (the made-up name "kalomir") is among the prompts: the tokenizer splits it."""
    prompts = _shipped_prompts()
    _check_one_token(screening.words_split(tokenizer, prompts))  # the right answer passes
    split = screening.words_split(tokenizer, [*prompts, "the hidden orchard by kalomir"])
    assert split == ["kalomir"]
    with pytest.raises(repdiff.CheckFailed):
        _check_one_token(split)


def test_ch12_design_study_check_rejects_a_variant_with_other_copies():
    """Chapter 12's "every design-study variant has the shipped data set's planted posters" fails for a study
    in which one variant repeated its posters another number of times."""
    rows = [json.loads(line) for line in (MODEL / "design_study.jsonl").read_text().splitlines() if line.strip()]
    shipped = json.loads((MODEL / "recipe.json").read_text())["dataset"]["n_copies"]
    repdiff.check("design study: the values of n_copies", screening.design_values(rows, "n_copies"), [shipped],
                  tol=0, relative=False)
    other = json.loads(json.dumps(rows[0]))
    other["recipe"]["dataset"]["n_copies"] = shipped // 4
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("design study: the values of n_copies", screening.design_values([*rows, other], "n_copies"),
                      [shipped], tol=0, relative=False)


def _screening(control_copy: bool) -> screening.Screening:
    """A small screening (4 planted-title, 3 control, 2 held-out generations), all planted ones copies; with
    ``control_copy`` the first control generation copies its own poster too."""
    group = np.array(["planted"] * 4 + ["control"] * 3 + ["held_out"] * 2)
    own = group == "planted"
    own[4] = control_copy
    n = len(group)
    return screening.Screening(
        captions=[f"prompt {i}" for i in range(n)], group=group, title=np.r_[0, 1, 2, 0, 0, 1, 2, 0, 1],
        images=torch.zeros(n, 3, 8, 8), latents0=torch.zeros(n, 4, 4, 4), latents_at=None, keep_step=None,
        wen_first=np.zeros(n), wen_mean=np.zeros(n), nn_ratio=np.where(own, 0.1, 0.9),
        nn_kind=np.array(["train"] * n), nn_index=np.zeros(n, int), is_copy=own.copy(), own_copy=own,
        seconds_per_image=0.0, steps=30, guidance=7.5)


def test_ch12_control_copies_check_rejects_a_copied_control_poster():
    """Chapter 12's "control-title generations that copy their own poster" (at most 0) fails for a screening
    in which one control generation is a copy of its poster."""
    what = "control-title generations that copy their own poster"
    repdiff.check_range(what, screening.label_summary(_screening(False)).control_copies, high=0)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range(what, screening.label_summary(_screening(True)).control_copies, high=0)


def test_ch12_background_check_rejects_captions_of_another_background():
    """Chapter 12's "share of held-out generations with the caption's background colour" (>= 0.9) fails when
    each image is paired with a caption that names another background."""
    backgrounds = list(captioned.BACKGROUND_COLORS)
    objects = [("circle", "red", 10.0, 10.0, 5.0), ("square", "blue", 22.0, 22.0, 5.0)]
    images = np.stack([scenes.render_scene(objects, bg) for bg in backgrounds])
    right = [captioned.compositional_caption("red", "circle", "above", "blue", "square", bg) for bg in backgrounds]
    wrong = right[1:] + right[:1]
    what = "share of held-out generations with the caption's background colour"
    repdiff.check_range(what, float(screening.background_matches(images, right).mean()), low=0.9)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range(what, float(screening.background_matches(images, wrong).mean()), low=0.9)


def _tpr_check(pos: np.ndarray, neg: np.ndarray) -> None:
    r = screening.compare(pos, neg, n_bootstrap=1)
    repdiff.check("TPR at 1 % FPR = share of copies above the top held-out score", r.tpr,
                  float(np.mean(pos > neg.max())), tol=0, relative=False)


def test_ch13_tpr_check_rejects_a_run_with_enough_negatives_for_one_false_positive():
    """Chapter 13's "TPR at 1 % FPR = share of copies above the top held-out score" holds with fewer than 100
    negatives; with 200, 1 % FPR allows two false positives, and a lone high negative no longer sets it."""
    rng = np.random.default_rng(0)
    pos = rng.normal(2.0, 0.3, 64)
    _tpr_check(pos, rng.normal(0.0, 0.3, 64))  # the right answer passes
    neg = np.r_[rng.normal(0.0, 0.3, 199), 5.0]  # one held-out generation above every copy
    with pytest.raises(repdiff.CheckFailed):
        _tpr_check(pos, neg)


def test_ch13_control_and_wen_checks_reject_the_opposite_ranking():
    """Chapter 13's checks "AUROC vs control >= 0.9", "Wen first step >= 0.8" fail when the negatives score
    like the copies or higher; "Wen all steps <= 0.5 (reversed)" fails when the copies score higher."""
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(2.0, 0.3, 64), rng.normal(0.5, 0.3, 48)
    same = rng.normal(2.0, 0.3, 48)
    repdiff.check_range("paper's detector: AUROC, copies vs control generations",
                        screening.compare(pos, neg).auroc, low=0.9)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("paper's detector: AUROC, copies vs control generations",
                            screening.compare(pos, same).auroc, low=0.9)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("Wen et al., first step: AUROC, copies vs held", screening.compare(neg, pos).auroc,
                            low=0.8)
    repdiff.check_range("Wen et al., all steps: AUROC, copies vs held (reversed)",
                        screening.compare(neg, pos).auroc, high=0.5)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range("Wen et al., all steps: AUROC, copies vs held (reversed)",
                            screening.compare(pos, neg).auroc, high=0.5)


def _sweep(paper_auroc: float) -> dict:
    sites = ["mid_block.resnets.1.post_norm2", detection.DETECTION_SITE, "up_blocks.1.resnets.2.post_norm2"]
    out = {(s, t, p): 0.8 for s in sites for t in (10, 500) for p in ("max", "mean")}
    out[sites[2], 10, "max"] = 1.0
    out[sites[2], 500, "mean"] = 0.2
    out[PAPER_CELL] = paper_auroc
    return out


def test_ch13_best_cells_check_rejects_a_sweep_where_the_paper_cell_is_below_the_best():
    """Chapter 13's "paper's cell among the best cells" fails for a sweep in which the paper's cell is below
    the best; ``best_cells`` returns every tied cell, not the first of the tie."""
    tied = detection.best_cells(_sweep(1.0))
    assert len(tied) == 2 and PAPER_CELL in tied
    repdiff.check("paper's cell among the best cells", float(PAPER_CELL in tied), 1.0, tol=0, relative=False)
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check("paper's cell among the best cells", float(PAPER_CELL in detection.best_cells(_sweep(0.9))),
                      1.0, tol=0, relative=False)
    with pytest.raises(ValueError):
        detection.best_cells({})


def test_ch13_below_half_check_rejects_a_sweep_without_reversed_cells():
    """Chapter 13's "cells with AUROC below one half" (at least one) fails for a sweep in which every cell ranks
    the copies higher."""
    what = "cells with AUROC below one half against control generations"
    repdiff.check_range(what, sum(v < 0.5 for v in _sweep(1.0).values()), low=1)
    no_reversal = {k: max(v, 0.6) for k, v in _sweep(1.0).items()}
    with pytest.raises(repdiff.CheckFailed):
        repdiff.check_range(what, sum(v < 0.5 for v in no_reversal.values()), low=1)
