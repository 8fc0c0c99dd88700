"""Tests of the toy diffusion model (Chapters 7-8): repdiff.dae.toy_diffusion (the model), toy_recipes (data),
toy_training (training, save/load) and toy_measures (what Chapter 7 measures)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from repdiff.dae import toy_diffusion as td
from repdiff.dae import toy_measures as tm
from repdiff.dae import toy_recipes as recipes
from repdiff.dae import toy_training as training
from repdiff.data.synthetic import load_digits

TINY = recipes.Recipe(name="tiny", data={"kind": "digits", "n": 20, "seed": 3}, p=8, steps=150, batch_size=16)


def test_forward_shapes_and_initial_gain():
    m = td.TimeConditionedReLUDAE(10, 6, seed=1)
    x = torch.randn(4, 10)
    assert m(x, 0.3).shape == (4, 10)
    assert m(x, torch.full((4,), 0.3)).shape == (4, 10)
    assert torch.allclose(m.gain(0.7), torch.ones(6))  # last gain layer starts at zero
    assert m.gain(torch.tensor([0.1, 1.0])).shape == (2, 6)
    assert m.skip_value == 0.0 and m.representation(x).shape == (4, 6)
    assert (m.representation(x) >= 0).all()


def test_forward_matches_the_formula():
    m = td.TimeConditionedReLUDAE(5, 3, tied=False, seed=2, center=torch.arange(5.0))
    with torch.no_grad():
        m.s.fill_(0.3)
        m.gain_out.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = torch.randn(7, 5)
    a = torch.exp(torch.tensor([0.1, -0.2, 0.3]))
    expected = m.center + (a * torch.relu((x - m.center) @ m.W1)) @ m.W2.T + 0.3 * (x - m.center)
    assert torch.allclose(m(x, 0.5), expected, atol=1e-6)


def test_positive_homogeneity_about_the_centre():
    m = td.TimeConditionedReLUDAE(8, 5, seed=3, center=torch.randn(8))
    with torch.no_grad():
        m.s.fill_(-0.1)
    u = torch.randn(6, 8)
    c = m.center
    assert torch.allclose(m(c + 3.0 * u, 0.4), c + 3.0 * (m(c + u, 0.4) - c), atol=1e-5)


def test_bias_variant_needs_sigma_for_its_representation():
    m = td.TimeConditionedReLUDAE(8, 5, bias=True)
    with pytest.raises(ValueError, match="sigma"):
        m.representation(torch.randn(2, 8))
    assert m.representation(torch.randn(2, 8), 0.5).shape == (2, 5)


@pytest.mark.parametrize(
    ("x", "sigma", "err"),
    [
        (torch.randn(3, 7), 0.5, ValueError),
        (torch.randn(8), 0.5, ValueError),
        (torch.randn(3, 8), 0.0, ValueError),
        (torch.randn(3, 8), float("nan"), ValueError),
        (torch.randn(3, 8), torch.ones(2), ValueError),
        (np.zeros((3, 8)), 0.5, TypeError),
    ],
)
def test_model_rejects_bad_input(x, sigma, err):
    m = td.TimeConditionedReLUDAE(8, 4)
    with pytest.raises(err):
        m(x, sigma)


def test_model_rejects_input_on_another_device():
    m = td.TimeConditionedReLUDAE(8, 4).to("meta")
    with pytest.raises(RuntimeError, match="model is on"):
        m(torch.randn(2, 8), 0.5)


def test_recipe_validation_and_json_roundtrip():
    assert recipes.Recipe.from_json(TINY.to_json()) == TINY
    for bad in ({"sigma_min": 0.0}, {"sigma_min": 2.0, "sigma_max": 1.0}, {"steps": 0}, {"lr": -1.0},
                {"data": {"kind": "cifar"}}):
        with pytest.raises(ValueError):
            dataclasses.replace(TINY, **bad)


def test_training_is_deterministic_and_lowers_the_loss():
    m1, info1 = training.train(TINY, progress=False)
    m2, _ = training.train(TINY, progress=False)
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k
    hist = [h for _, h in info1["history"]]
    assert hist[-1] < hist[0]
    X = torch.tensor(recipes.make_training_data(TINY.data)[0], dtype=torch.float32)
    assert torch.allclose(m1.center, X.mean(0))


def test_save_load_roundtrip_and_recipe_mismatch(tmp_path):
    model, _ = training.train(TINY, progress=False)
    training.save(model, TINY, tmp_path / "ck")
    loaded, recipe = training.load(tmp_path / "ck")
    assert recipe == TINY
    x = torch.randn(5, 64)
    assert torch.equal(loaded(x, 0.2), model(x, 0.2))
    m3, how = training.load_or_train(TINY, tmp_path / "ck", progress=False)
    assert how.startswith("loaded") and torch.equal(m3(x, 0.2), model(x, 0.2))
    other = dataclasses.replace(TINY, steps=10)
    _, how = training.load_or_train(other, tmp_path / "ck", progress=False)
    assert how.startswith("trained")
    # a recipe.json edited after training no longer matches the weights
    (tmp_path / "ck" / "recipe.json").write_text(other.to_json())
    with pytest.raises(ValueError, match="different recipe"):
        training.load(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="recipe.json"):
        training.load(tmp_path / "missing")
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "recipe.json").write_text(TINY.to_json())
    with pytest.raises(FileNotFoundError, match="python -m repdiff.dae.toy_training"):
        training.load(tmp_path / "no_weights")


def test_command_line_writes_a_checkpoint(tmp_path):
    (tmp_path / "recipe.json").write_text(TINY.to_json())
    training.main([str(tmp_path / "recipe.json")])
    model, recipe = training.load(tmp_path)
    assert recipe == TINY and model.p == TINY.p


def test_course_recipes_are_valid_json():
    for r in (recipes.MEM_RECIPE, recipes.GEN_RECIPE, recipes.MOG_RECIPE):
        assert recipes.Recipe(**json.loads(r.to_json())) == r
    assert recipes.MEM_RECIPE.p >= len(recipes.MEM_RECIPE.data["indices"])  # memorizing: n <= p


def test_mog_clusters_geometry():
    means, covs, S = recipes.mog_clusters(K=4, d=32, rank=2, norm=3.0, spread=(0.5, 0.25), floor=0.005, seed=0)
    nrm = np.linalg.norm(means, axis=1)
    assert np.allclose(nrm, 3.0)
    cos = means @ means.T / np.outer(nrm, nrm)
    assert np.allclose(cos[~np.eye(4, dtype=bool)], -1 / 3)
    for k in range(4):
        assert np.allclose(covs[k] @ means.T, 0.005 * means.T)  # variance directions orthogonal to all means
        assert np.allclose(np.sort(np.linalg.eigvalsh(covs[k]))[-2:], [0.255, 0.505])
        assert np.allclose(S[k], covs[k] + np.outer(means[k], means[k]))
    with pytest.raises(ValueError):
        recipes.mog_clusters(K=4, d=8, rank=2)
    for a, b in zip(recipes.mog_clusters_of(recipes.MOG_RECIPE.data), (means, covs, S), strict=True):
        assert np.array_equal(a, b)  # the recipe's clusters are the ones written out above
    for j in range(4):  # the variance directions of different clusters are orthogonal (blocks apart)
        for k in range(j):
            assert np.allclose((covs[j] - 0.005 * np.eye(32)) @ (covs[k] - 0.005 * np.eye(32)), 0)


def test_mog_training_data_has_labels():
    X, labels = recipes.make_training_data({"kind": "mog", "n": 400, "K": 3, "d": 12, "rank": 1, "spread": [0.3]})
    assert X.shape == (400, 12) and labels.shape == (400,) and set(labels) == {0, 1, 2}


def test_negatively_correlated_digits():
    idx = recipes.negatively_correlated_digits(5)
    X = load_digits()
    Xc = X[idx] - X.mean(0)
    G = Xc @ Xc.T
    assert len(idx) == 5 and (G[~np.eye(5, dtype=bool)] < 0).all()
    assert recipes.negatively_correlated_digits(7) == recipes.MEM_RECIPE.data["indices"]


def test_directions_groups_and_grouped_participation_ratio():
    c = torch.zeros(3)
    d = tm.directions(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, -2.0]]), c)
    assert torch.allclose(d.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError):
        tm.directions(torch.zeros(1, 3), c)
    m = td.TimeConditionedReLUDAE(3, 4, center=c)
    with torch.no_grad():  # two units on e1 (a split), one on e2, one unused
        m.W1.copy_(torch.tensor([[1.0, 0.9, 0.0, 0.0], [0.0, 0.1, 1.0, 0.0], [0.0, 0.0, 0.0, 0.01]]))
    X = torch.eye(3)
    groups = tm.unit_groups(m, X)
    assert groups.tolist() == [0, 0, 1, -1]
    h = torch.tensor([[1.0, 1.0, 0.0, 5.0], [1.0, 0.0, 1.0, 0.0]])
    gpr = tm.grouped_participation_ratio(h, groups)
    assert torch.allclose(gpr, torch.tensor([1.0, 2.0]))


def test_trajectory_spikiness_shapes():
    m = td.TimeConditionedReLUDAE(6, 4)
    traj = [torch.randn(5, 6) for _ in range(3)]
    std, pr = tm.trajectory_spikiness(m, traj)
    assert std.shape == pr.shape == (3, 5)
    assert (pr >= 0).all() and (pr <= 4 + 1e-6).all()


def test_direction_copies_counts_exact_copies_at_any_length():
    X = torch.eye(4) * 2.0 - 0.5  # four points, pairwise far apart
    c = X.mean(0)
    lengths = torch.tensor([1.0, 1.0, 2.0, 0.5])
    copies = c + lengths[:, None] * (X - c)  # the stored directions, at other lengths
    res = tm.direction_copies(copies, torch.randn(4, 4), X, X, c, c)
    assert res.frac_mem == 1.0
    assert torch.allclose(res.scale, lengths)
    assert res.scale_q10 <= 1.0 <= res.scale_q90


def test_spikiness_along_and_column_rms():
    m = td.TimeConditionedReLUDAE(6, 4, center=torch.zeros(6))
    traj = [torch.randn(5, 6) for _ in range(3)]
    spk = tm.spikiness_along(m, m, traj, traj, torch.randn(4, 6))
    assert spk.std["mem"].shape == spk.gpr_mem.shape == (3, 5) and spk.groups.shape == (4,)
    fin = spk.end_medians()
    assert set(fin) == {"std_mem", "std_gen", "pr_mem", "pr_gen", "gpr_mem"} and fin["std_mem"] == fin["std_gen"]
    assert tm.column_rms(m) == pytest.approx(float(m.W1.detach().norm(dim=0).square().mean().sqrt()))


def test_paper_sampler_variants_keys_and_ranges():
    m = td.TimeConditionedReLUDAE(4, 3, center=torch.zeros(4))
    X = torch.randn(6, 4)
    sig = torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    res = tm.paper_sampler_variants(m, m, X, X, 2.0 * torch.randn(8, 4), sig)
    assert set(res.frac) == {"em_x0_mem", "anc_it_mem", "em_mem", "em_gen"}
    assert set(res.length) == {"em_x0", "anc_it", "em"}
    assert all(0.0 <= v <= 1.0 for v in res.frac.values()) and all(v >= 0 for v in res.length.values())
