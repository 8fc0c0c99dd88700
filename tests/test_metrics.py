"""repdiff.metrics against independent computations (numpy, scikit-learn)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import NearestNeighbors

from repdiff.dae.phase import power_law_covariance, power_law_gaussian
from repdiff.metrics import (
    count_copies,
    denoiser_memorization,
    detection_metrics,
    memorization_fraction,
    nn_distance_ratio,
    participation_ratio,
    psnr,
    representation_std,
)
from repdiff.theory import empirical_denoiser, wiener_denoiser

rng = np.random.default_rng(1)


def test_representation_std_is_population_std():
    h = rng.standard_normal((5, 7, 32))
    np.testing.assert_allclose(representation_std(h), h.std(axis=-1, ddof=0), atol=1e-12)
    t = representation_std(torch.from_numpy(h).float())
    assert isinstance(t, torch.Tensor) and t.shape == (5, 7)


def test_participation_ratio_values():
    p = 16
    one_hot = np.zeros(p)
    one_hot[3] = 7.0
    flat = np.full(p, 0.3)
    assert participation_ratio(one_hot) == pytest.approx(1.0)
    assert participation_ratio(flat) == pytest.approx(p)
    h = np.abs(rng.standard_normal((10, p)))
    brute = (h**2).sum(-1) ** 2 / (h**4).sum(-1)
    np.testing.assert_allclose(participation_ratio(h), brute, rtol=1e-12)
    np.testing.assert_allclose(participation_ratio(1e-200 * h), brute, rtol=1e-12)  # scale-free, no underflow
    np.testing.assert_allclose(participation_ratio(1e100 * h), brute, rtol=1e-12)  # no overflow
    assert participation_ratio(np.zeros(p)) == 0.0


@pytest.mark.parametrize("fn", [representation_std, participation_ratio])
def test_spikiness_bad_input(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="non-empty last axis"):
        fn(np.zeros((3, 0)))


def test_nn_distance_ratio_matches_sklearn():
    train = rng.standard_normal((60, 3, 4, 4))
    samples = rng.standard_normal((25, 3, 4, 4))
    dist, _ = NearestNeighbors(n_neighbors=2).fit(train.reshape(60, -1)).kneighbors(samples.reshape(25, -1))
    np.testing.assert_allclose(nn_distance_ratio(samples, train), dist[:, 0] / dist[:, 1], rtol=1e-12)
    np.testing.assert_allclose(nn_distance_ratio(samples, train, chunk_size=4), dist[:, 0] / dist[:, 1], rtol=1e-12)


def test_copies_of_duplicated_training_points_count_as_memorized():
    train = rng.standard_normal((10, 8))
    train = np.concatenate([train, train[:3], train[:3]])  # three images present three times
    copies = train[:5] + 1e-6 * rng.standard_normal((5, 8))
    ratios = nn_distance_ratio(copies, train)
    assert np.all(ratios < 1e-4)
    assert memorization_fraction(copies, train) == 1.0
    novel = rng.standard_normal((200, 8)) * 3
    assert memorization_fraction(novel, train) < 0.2
    assert isinstance(memorization_fraction(torch.from_numpy(novel), torch.from_numpy(train)), float)


def test_count_copies_counts_what_the_fraction_measures():
    train = rng.standard_normal((10, 8))
    mixed = np.concatenate([train[:4] + 1e-6 * rng.standard_normal((4, 8)), rng.standard_normal((6, 8)) * 3])
    n = count_copies(mixed, train)
    assert isinstance(n, int)
    assert n == round(memorization_fraction(mixed, train) * len(mixed))
    assert n >= 4
    assert count_copies(mixed[:4], train) == 4
    with pytest.raises(ValueError, match="threshold"):
        count_copies(mixed, train, threshold=0.0)


def test_nn_ratio_bad_input():
    with pytest.raises(ValueError, match="same number of values"):
        nn_distance_ratio(np.zeros((3, 4)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="at least 2 distinct"):
        nn_distance_ratio(np.zeros((3, 4)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        nn_distance_ratio(np.full((3, 4), np.nan), rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match="threshold"):
        memorization_fraction(np.zeros((3, 4)), rng.standard_normal((5, 4)), threshold=0)


def sklearn_tpr_at(scores_mem, scores_gen, max_fpr=0.01):
    y = np.r_[np.ones(len(scores_mem)), np.zeros(len(scores_gen))]
    fpr, tpr, _ = roc_curve(y, np.r_[scores_mem, scores_gen], drop_intermediate=False)
    return tpr[fpr <= max_fpr].max()


@pytest.mark.parametrize("ties", [False, True])
def test_detection_metrics_match_sklearn(ties):
    mem = rng.normal(1.5, 1.0, 300)
    gen = rng.normal(0.0, 1.0, 400)
    if ties:
        mem, gen = np.round(mem, 1), np.round(gen, 1)
    out = detection_metrics(mem, gen)
    y = np.r_[np.ones(300), np.zeros(400)]
    assert out["auroc"] == pytest.approx(roc_auc_score(y, np.r_[mem, gen]), abs=1e-12)
    assert out["tpr_at_1pct_fpr"] == pytest.approx(sklearn_tpr_at(mem, gen), abs=1e-12)


def test_detection_metrics_extremes_and_bootstrap():
    assert detection_metrics([5.0, 6.0], [1.0, 2.0])["auroc"] == 1.0
    assert detection_metrics([5.0, 6.0], [1.0, 2.0])["tpr_at_1pct_fpr"] == 1.0
    assert detection_metrics([1.0, 1.0], [1.0, 1.0])["auroc"] == 0.5
    out = detection_metrics(rng.normal(1, 1, 100), rng.normal(0, 1, 100), n_bootstrap=200, seed=3)
    assert out["auroc_lo"] <= out["auroc"] <= out["auroc_hi"]
    assert out["tpr_lo"] <= out["tpr_hi"]
    again = detection_metrics(rng.normal(1, 1, 100), rng.normal(0, 1, 100), n_bootstrap=10, seed=3)
    assert set(again) == set(out)


def test_detection_metrics_bad_input():
    with pytest.raises(ValueError, match="at least one score"):
        detection_metrics([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics([np.nan], [1.0])


def test_psnr():
    target = rng.uniform(-1, 1, (4, 8, 8))
    est = target + 0.1 * rng.standard_normal(target.shape)
    mse = ((est - target) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(psnr(est, target), 10 * np.log10(4 / mse), rtol=1e-12)
    np.testing.assert_allclose(psnr(est, target, peak=1.0), 10 * np.log10(1 / mse), rtol=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        psnr(est, target[:2])


# --- denoiser_memorization (Chapter 5) ---------------------------------------------------------------------


def _ch05_data():
    """The phase diagram's data of Chapter 5: power-law Gaussian in d = 16, nested training sets, 256 test points."""
    return (power_law_gaussian(128, 16, decay=1.0, seed=0), power_law_gaussian(256, 16, decay=1.0, seed=1),
            power_law_covariance(16, decay=1.0))


@pytest.mark.parametrize("n", [4, 16, 64, 128])
def test_denoiser_memorization_separates_the_reference_denoisers(n):
    """At σ = 0.2 the identity map and the Wiener filter score <= 0.05, the empirical optimal denoiser >= 0.9."""
    X_pool, X_test, C = _ch05_data()
    X = X_pool[:n]
    assert denoiser_memorization(lambda y: y, X, X_test, 0.2) <= 0.05
    assert denoiser_memorization(lambda y: wiener_denoiser(y, np.zeros(16), C, 0.2), X, X_test, 0.2) <= 0.05
    assert denoiser_memorization(lambda y: empirical_denoiser(y, X, 0.2), X, X_test, 0.2) >= 0.9


def test_denoiser_memorization_counts_exact_copies_and_follows_the_input_kind():
    X_pool, X_test, _ = _ch05_data()
    X = X_pool[:8]
    nearest = lambda y: X[np.argmin(((y[:, None] - X[None]) ** 2).sum(-1), axis=1)]  # noqa: E731
    assert denoiser_memorization(nearest, X, X_test, 0.5, n_draws=2) == 1.0
    seen = []

    def spy(y):
        seen.append((type(y), y.shape))
        return y

    denoiser_memorization(spy, X, X_test[:10], 0.5, n_draws=3)
    denoiser_memorization(spy, torch.as_tensor(X), torch.as_tensor(X_test[:10]), 0.5, n_draws=3)
    assert seen == [(np.ndarray, (30, 16)), (torch.Tensor, torch.Size([30, 16]))]
    # the same seed gives the same noisy inputs; the noise is σ-scaled
    a = denoiser_memorization(nearest, X, X_test, 0.5, seed=3)
    assert a == denoiser_memorization(nearest, X, X_test, 0.5, seed=3)


def test_denoiser_memorization_bad_input():
    X_pool, X_test, _ = _ch05_data()
    for s in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            denoiser_memorization(lambda y: y, X_pool, X_test, s)
    with pytest.raises(ValueError, match="same d"):
        denoiser_memorization(lambda y: y, X_pool[:, :8], X_test, 0.2)
    with pytest.raises(ValueError, match="same d"):
        denoiser_memorization(lambda y: y, X_pool, X_test[0], 0.2)
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        denoiser_memorization(lambda y: y[:, :4], X_pool, X_test, 0.2)
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        denoiser_memorization(lambda y: y[:-1], X_pool, X_test, 0.2)
    with pytest.raises(ValueError, match="n_draws"):
        denoiser_memorization(lambda y: y, X_pool, X_test, 0.2, n_draws=0)
