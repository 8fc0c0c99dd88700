"""Tests of repdiff.dae.measures, .phase (batched grid training), .leakage, .phase_checks, .image_checks and
repdiff.widgets (Chapters 5-6)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from scipy.stats import norm

from repdiff import metrics, widgets
from repdiff.dae import image_checks, leakage, measures, phase, phase_checks
from repdiff.dae.models import ReLUDAE
from repdiff.data.synthetic import separable_samples
from repdiff.theory import memorization_solution, relu_dae_loss_mc


def _tiny_model(d=6, p=4, seed=0):
    return ReLUDAE(d, p, seed=seed, dtype=torch.float64)


# --- measurements of one model ---------------------------------------------------------------------------


def test_representation_stats_matches_direct_computation():
    model = _tiny_model()
    X = np.random.default_rng(0).standard_normal((5, 6))
    st = measures.representation_stats(model, X, 0.3, n_draws=3, seed=7)
    gen = torch.Generator().manual_seed(7)
    clean = torch.as_tensor(X).repeat(3, 1)
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    h = torch.relu(noisy @ model.W1.detach())
    np.testing.assert_allclose(st["std"], h.std(1, unbiased=False).numpy(), atol=1e-12)
    np.testing.assert_allclose(st["pr"], metrics.participation_ratio(h).numpy(), atol=1e-12)
    np.testing.assert_array_equal(st["active"], (h > 0).sum(1).numpy())
    # the W1 matrix alone gives the same numbers
    st2 = measures.representation_stats(model.W1.detach().numpy(), X, 0.3, n_draws=3, seed=7)
    np.testing.assert_allclose(st2["pr"], st["pr"])


def test_representation_stats_errors():
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        measures.representation_stats(model, np.zeros((3, 5)), 0.1)
    with pytest.raises(ValueError, match="sigma"):
        measures.representation_stats(model, np.zeros((3, 6)), -0.1)
    with pytest.raises(ValueError, match="NaN"):
        measures.representation_stats(model, np.full((3, 6), np.nan), 0.1)
    with pytest.raises(ValueError, match="n_draws"):
        measures.representation_stats(model, np.zeros((3, 6)), 0.1, n_draws=0)


def test_denoising_psnr_of_a_perfect_and_a_zero_model():
    X = separable_samples(4, 8, norm=2.0, seed=0)
    model = ReLUDAE(8, 4, seed=0, dtype=torch.float64)
    with torch.no_grad():  # W2 = 0: the output is 0, so the error is ||x||²/d per pixel
        model.W2.zero_()
    out = measures.denoising_psnr(model, X, 0.1, n_draws=2, seed=0)
    expected = 10 * np.log10(4.0 / (np.tile((X**2).mean(1), 2)))
    np.testing.assert_allclose(out["denoised"], expected, atol=1e-10)
    # noisy PSNR ≈ 10 log10(4 / σ²) on average
    big = measures.denoising_psnr(model, np.zeros((200, 8)), 0.1, n_draws=5, seed=1)
    assert abs(10 * np.log10(4 / np.mean(10 ** (-big["noisy"] / 10) * 4)) - 10 * np.log10(4 / 0.01)) < 0.2
    with pytest.raises(ValueError, match="sigma must be > 0"):
        measures.denoising_psnr(model, X, 0.0)


# --- data for the phase diagram --------------------------------------------------------------------------


def test_power_law_gaussian_spectrum():
    X = phase.power_law_gaussian(20000, 8, decay=1.0, seed=0)
    cov = X.T @ X / len(X)
    ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
    spec = 1.0 / np.arange(1, 9)
    spec *= 8 / spec.sum()
    np.testing.assert_allclose(ev, spec, rtol=0.06)
    # same basis, different samples; same seed, same numbers
    np.testing.assert_array_equal(phase.power_law_gaussian(5, 8, seed=3), phase.power_law_gaussian(5, 8, seed=3))
    with pytest.raises(ValueError, match="positive integers"):
        phase.power_law_gaussian(0, 8)
    with pytest.raises(ValueError, match="decay"):
        phase.power_law_gaussian(5, 8, decay=-1.0)


# --- batched training of a grid --------------------------------------------------------------------------


def _eq6_loss(W1, W2, X, sigma, lam, eps):
    """Eq. 6 with fixed noise draws, written out independently (numpy)."""
    Y = X + sigma * eps
    out = np.maximum(Y @ W1, 0) @ W2.T
    return ((out - X) ** 2).sum(1).mean() + lam * ((W1**2).sum() + (W2**2).sum())


def test_train_dae_grid_masks_and_objective():
    X = separable_samples(4, 8, norm=3.0, seed=0)
    g = phase.train_dae_grid(X, [2, 4, 4], [3, 6, 8], [0.1, 0.1, 0.3], 1e-3, steps=400, lr=1e-2, rows=4, seed=0)
    assert g.W1.shape == (3, 8, 8) and g.W2.shape == (3, 8, 8)
    # units beyond each model's width are exactly zero
    assert torch.count_nonzero(g.W1[0, :, 3:]) == 0 and torch.count_nonzero(g.W2[1, :, 6:]) == 0
    W1, W2 = g.weights(0)
    assert W1.shape == (8, 3) and W1.dtype == torch.float64
    # the recorded objective is Eq. 6 of each model (checked with many fixed noise draws)
    rng = np.random.default_rng(0)
    for b in range(3):
        W1, W2 = (w.numpy() for w in g.weights(b))
        Xb = np.tile(X[: g.n[b]], (500, 1))
        mc = _eq6_loss(W1, W2, Xb, g.sigma[b], 1e-3, rng.standard_normal(Xb.shape))
        assert abs(g.final_loss[b] - mc) < 0.15 * mc + 0.02, (b, g.final_loss[b], mc)
    # training lowers the loss below that of the zero map (mean ||x||² = 9)
    assert (g.final_loss < 1.0).all()


def test_train_dae_grid_memorizes_separable_points():
    X = separable_samples(4, 16, norm=3.0, seed=1)
    g = phase.train_dae_grid(X, [4], [8], [0.3], 1e-2, steps=2000, lr=1e-2, rows=4, seed=0)
    W1, W2 = g.weights(0)
    Wm = torch.as_tensor(memorization_solution(X, 8, 0.3, 1e-2))
    A, B = (W2 @ W1.T).numpy(), (Wm @ Wm.T).numpy()
    assert np.linalg.norm(A - B) / np.linalg.norm(B) < 0.15


def test_train_dae_grid_errors():
    X = np.random.default_rng(0).standard_normal((8, 4))
    with pytest.raises(ValueError, match="same non-zero length"):
        phase.train_dae_grid(X, [2, 4], [2], [0.1, 0.1], 0.0, steps=1, lr=1e-2)
    with pytest.raises(ValueError, match=r"every n must lie in \[1, 8\]"):
        phase.train_dae_grid(X, [16], [2], [0.1], 0.0, steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="every sigma"):
        phase.train_dae_grid(X, [4], [2], [0.0], 0.0, steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="multiple of every n"):
        phase.train_dae_grid(X, [3, 4], [2, 2], [0.1, 0.1], 0.0, steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="lam"):
        phase.train_dae_grid(X, [4], [2], [0.1], -1.0, steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="NaN"):
        phase.train_dae_grid(np.full((4, 4), np.nan), [4], [2], [0.1], 0.0, steps=1, lr=1e-2)


def test_phase_metrics_on_the_closed_form():
    """A grid holding the exact memorizing solution copies every training point; a zero model copies none."""
    X = separable_samples(4, 16, norm=3.0, seed=0)
    Wm = torch.as_tensor(memorization_solution(X, 4, 0.05, 0.0), dtype=torch.float32)
    W1 = torch.stack([Wm, torch.zeros_like(Wm)])
    grid = phase.GridResult(W1, W1.clone(), np.array([4, 4]), np.array([4, 4]), np.array([0.05, 0.05]),
                            np.zeros(2), 0.0)
    X_test = separable_samples(4, 16, norm=3.0, seed=5)
    pm = phase.phase_metrics(grid, X, X_test, n_draws=8)
    assert pm["copy"][0] == 1.0 and pm["copy"][1] == 0.0
    assert pm["pr"][0] < 1.05  # one unit per noisy training point
    assert 0.9 < pm["gap"][0] <= 1.0 and abs(pm["gap"][1]) < 1e-12
    np.testing.assert_allclose(pm["gap_abs"], pm["test_mse"] - pm["train_mse"])
    assert 0.0 <= pm["mem"][0] <= 1.0 and pm["mem"][1] == 0.0  # the zero model returns 0, no training point
    np.testing.assert_allclose(pm["pr_frac"], pm["pr"] / 4)
    with pytest.raises(ValueError, match="must match"):
        phase.phase_metrics(grid, X[:, :8], X_test)
    with pytest.raises(ValueError, match="threshold"):
        phase.phase_metrics(grid, X, X_test, threshold=0.0)


# --- leakage of the ReLU mask ----------------------------------------------------------------------------


def test_unit_margins_brute_force():
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((5, 3)), rng.standard_normal((7, 5))
    expected = np.array([[abs(W[:, j] @ x) / np.linalg.norm(W[:, j]) for j in range(3)] for x in X])
    np.testing.assert_allclose(leakage.unit_margins(W, X), expected, atol=1e-12)
    assert isinstance(leakage.unit_margins(torch.as_tensor(W), torch.as_tensor(X)), torch.Tensor)
    W[:, 1] = 0
    with pytest.raises(ValueError, match="zero column"):
        leakage.unit_margins(W, X)
    with pytest.raises(ValueError, match="share d"):
        leakage.unit_margins(W, X[:, :4])


def test_mask_leakage_single_unit_is_a_gaussian_tail():
    """One unit w = e_1, one input at distance m from its hyperplane: P = Φ(−m/σ)."""
    W = np.zeros((3, 1))
    W[0, 0] = 2.0
    X = np.array([[0.5, 1.0, -1.0]])
    sig = np.array([0.25, 0.5, 1.0])
    P = leakage.mask_leakage(W, X, sig, n_draws=100_000, seed=0)
    exact = norm.cdf(-0.5 / sig)
    assert (np.abs(P - exact) < 4 * np.sqrt(exact * (1 - exact) / 100_000) + 1e-4).all()
    with pytest.raises(ValueError, match="sigmas"):
        leakage.mask_leakage(W, X, [0.0])
    with pytest.raises(ValueError, match="n_draws"):
        leakage.mask_leakage(W, X, [0.1], n_draws=0)


def test_fit_leakage_rate_recovers_an_exact_law():
    sig = np.linspace(0.2, 1.0, 9)
    P = 0.7 * np.exp(-0.4 * 2.0**2 / sig**2)
    fit = leakage.fit_leakage_rate(sig, P, 2.0)
    assert math.isclose(fit["c"], 0.4, rel_tol=1e-9) and math.isclose(fit["C"], 0.7, rel_tol=1e-9)
    assert fit["r2"] > 1 - 1e-12 and fit["n_points"] == 9
    P[:7] = 0.0  # zeros are left out; two points remain
    assert leakage.fit_leakage_rate(sig, P, 2.0)["n_points"] == 2
    with pytest.raises(ValueError, match="at least 2 points"):
        leakage.fit_leakage_rate(sig[:8], P[:8], 2.0)
    with pytest.raises(ValueError, match="gamma"):
        leakage.fit_leakage_rate(sig, P, 0.0)
    with pytest.raises(ValueError, match="same length"):
        leakage.fit_leakage_rate(sig, P[:3], 1.0)


# --- widgets ---------------------------------------------------------------------------------------------


def test_draw_phase_map_and_explorer(monkeypatch):
    ns, ps, sigmas = [4, 8, 16], [4, 8], [0.2, 0.5]
    vals = np.arange(12, dtype=float)
    fig, ax = plt.subplots()
    im = widgets.draw_phase_map(ax, vals.reshape(3, 2, 2)[:, :, 0], ns, ps, title="t")
    assert im.get_array().shape == (3, 2)
    with pytest.raises(ValueError, match="shape"):
        widgets.draw_phase_map(ax, np.zeros((2, 2)), ns, ps)
    plt.close(fig)
    ipywidgets = pytest.importorskip("ipywidgets")
    live = {}
    monkeypatch.delenv("REPDIFF_BOOK_BUILD", raising=False)
    monkeypatch.setattr(ipywidgets, "interact", lambda f, **kw: live.update(draw=f, **kw))
    monkeypatch.setattr(plt, "show", lambda: None)
    assert widgets.phase_explorer({"a": vals, "b": -vals}, ns, ps, sigmas) is None
    assert isinstance(live["sigma_index"], ipywidgets.SelectionSlider)
    live["draw"](measure="b", sigma_index=1)  # what moving the controls does: redraws without error
    with pytest.raises(ValueError, match="12 cells"):
        widgets.phase_explorer({"a": vals[:5]}, ns, ps, sigmas)
    with pytest.raises(ValueError, match="empty"):
        widgets.phase_explorer({}, ns, ps, sigmas)
    plt.close("all")


# --- the checks of Chapters 5-6 and their helpers ---------------------------------------------------------


def test_power_law_covariance_is_the_sampling_covariance():
    X = phase.power_law_gaussian(40000, 8, decay=1.0, seed=3, basis_seed=2)
    C = phase.power_law_covariance(8, decay=1.0, basis_seed=2)
    np.testing.assert_allclose(np.trace(C), 8.0)
    np.testing.assert_allclose(np.cov(X.T, bias=True), C, atol=0.05)


def test_gap_crossing_interpolates_in_log_n():
    ns = [4, 8, 16, 32]
    G = np.array([[0.9, 0.4, 0.9], [0.7, 0.3, 0.9], [0.3, 0.2, 0.9], [0.1, 0.1, 0.9]])
    out = phase_checks.gap_crossing(G, ns, level=0.5)
    np.testing.assert_allclose(out[0], 8 * 2 ** 0.5)  # halfway between 0.7 (n = 8) and 0.3 (n = 16)
    assert np.isnan(out[1]) and np.isnan(out[2])  # below at the smallest n; never below
    with pytest.raises(ValueError, match="increasing"):
        phase_checks.gap_crossing(G, [4, 4, 16, 32])


def test_check_region_and_pr_and_memorizing_gap():
    G = np.stack([np.full((2, 2), 0.9), np.full((2, 2), 0.1)], axis=-1)
    np.testing.assert_array_equal(phase_checks.check_region_shrinks("x", G, high=-3), [4, 0])
    np.testing.assert_allclose(phase_checks.check_pr_rises_with_n("x", np.array([[1.0, 2.0], [2.0, 3.0]])), [2.0, 1.5])
    assert phase_checks.check_memorizing_gap("x", np.array([[0.9, 0.8], [0.1, 0.95]]), [4, 8], [4, 8]) == 0.8
    with pytest.raises(ValueError, match="n <= p"):
        phase_checks.check_memorizing_gap("x", np.ones((1, 1)), [8], [4])


def test_loss_and_gradient_norm_matches_autograd_of_the_mc_loss():
    rng = np.random.default_rng(0)
    W1, W2, X = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((7, 5))
    loss, g = measures.loss_and_gradient_norm(W1, W2, X, 0.3, 0.01, n_draws=16, seed=2)
    assert loss == pytest.approx(relu_dae_loss_mc(W1, W2, X, 0.3, 0.01, n_draws=16, seed=2))
    eps, k = 1e-6, (1, 2)
    Wp = W1.copy()
    Wp[k] += eps
    fd = (relu_dae_loss_mc(Wp, W2, X, 0.3, 0.01, n_draws=16, seed=2) - loss) / eps
    assert abs(fd) <= g + 1e-4


def test_chapter6_geometry_helpers():
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    assert measures.mean_pairwise_cosine(X) == pytest.approx(-1 / 3)
    W = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # unit 0 along x_1, unit 1 outside the span
    assert measures.mean_best_cosine(W, X, 1) == pytest.approx(1.0)
    assert measures.mean_best_cosine(W, X, 2) == pytest.approx(0.5)
    np.testing.assert_allclose(measures.out_of_span_fraction(W, X), [0.0, 1.0], atol=1e-12)
    assert image_checks.check_ratio("x", 3.0, 2.0, low=1.4, high=1.6) == 1.5
    with pytest.raises(ValueError, match="k must"):
        measures.mean_best_cosine(W, X, 3)
    with pytest.raises(ValueError, match="zero row"):
        measures.mean_pairwise_cosine(np.zeros((2, 3)))


def test_psnr_gap_of_a_zero_model_is_the_norm_difference():
    model = _tiny_model(d=6, p=4)
    with torch.no_grad():
        model.W1.zero_()
    X_tr, X_te = np.ones((3, 6)), 0.5 * np.ones((3, 6))
    # f = 0: MSE = ||x||²/d, so PSNR(train) - PSNR(test) = 10 log10(0.25) dB
    assert measures.psnr_gap(model, X_tr, X_te, 0.1) == pytest.approx(10 * np.log10(0.25))


def test_psnr_summary_is_the_mean_of_denoising_psnr_with_the_chapter_seeds():
    model = _tiny_model(d=6, p=4)
    rng = np.random.default_rng(0)
    X_tr, X_te = rng.standard_normal((4, 6)), rng.standard_normal((3, 6))
    s = measures.psnr_summary(model, X_tr, X_te, 0.2, n_draws=2)
    tr = measures.denoising_psnr(model, X_tr, 0.2, n_draws=2, seed=4)
    te = measures.denoising_psnr(model, X_te, 0.2, n_draws=2, seed=5)
    assert (s.noisy_train, s.train) == (tr["noisy"].mean(), tr["denoised"].mean())
    assert (s.noisy_test, s.test) == (te["noisy"].mean(), te["denoised"].mean())
    assert s.gap == measures.psnr_gap(model, X_tr, X_te, 0.2, n_draws=2) == s.train - s.test


def test_pairwise_cosines_of_orthogonal_and_parallel_rows():
    c = measures.pairwise_cosines(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    np.testing.assert_allclose(c, [0.0, 1.0, 0.0], atol=1e-15)
    assert measures.mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])) == pytest.approx(1 / 3)


def test_shuffled_labels_keeps_the_sizes_and_the_values():
    a, b = np.arange(3.0), np.arange(3.0, 10.0)
    sa, sb = phase_checks.shuffled_labels(a, b, seed=1)
    assert sa.size == 3 and sb.size == 7
    np.testing.assert_array_equal(np.sort(np.concatenate([sa, sb])), np.arange(10.0))


def test_block_rank_is_the_participation_ratio_of_the_singular_values():
    """check_block_rank's statistic is (Σ s²)² / Σ s⁴ of the active units' columns; passing s² instead of s
    (a different quantity: 2.12 instead of 2.45 here) fails."""
    W = np.diag([1.0, 1.0, 0.5])  # three units, singular values 1, 1, 0.5
    s2 = np.array([1.0, 1.0, 0.25])
    got = phase_checks.check_block_rank("block rank", W, np.ones(3), low=1.0)
    assert got == pytest.approx(s2.sum() ** 2 / (s2**2).sum(), rel=1e-12)
    assert got != pytest.approx((s2**2).sum() ** 2 / (s2**4).sum(), rel=1e-3)
