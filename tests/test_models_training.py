"""Tests of repdiff.dae.models (the ReLU DAE) and repdiff.dae.training (the Eq. 6 objective) — Chapters 2-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repdiff import theory
from repdiff.dae import models, training
from repdiff.data import synthetic as data


def test_relu_dae_shapes_and_tying():
    m = models.ReLUDAE(6, 4, seed=1, dtype=torch.float64)
    x = torch.randn(3, 6, dtype=torch.float64)
    assert m(x).shape == (3, 6) and m.hidden(x).shape == (3, 4)
    assert torch.allclose(m(x), torch.relu(x @ m.W1) @ m.W2.T)
    assert (m.hidden(x) >= 0).all()
    assert m(x[0]).shape == (6,)
    assert m.W1 is not m.W2
    t = models.ReLUDAE(6, 4, tied=True)
    assert t.W1 is t.W2 and len(list(t.parameters())) == 1
    with pytest.raises(ValueError, match=r"shape \(m, 6\)"):
        m(torch.randn(3, 5, dtype=torch.float64))
    a, b = models.ReLUDAE(6, 4, seed=2), models.ReLUDAE(6, 4, seed=2)
    assert torch.equal(a.W1, b.W1)
    assert abs(models.ReLUDAE(400, 3, seed=0).W1.norm(dim=0).mean() - 1) < 0.1  # default init: unit-norm columns


def test_activation_frequency_and_on_units_map():
    X = data.separable_samples(3, 6, norm=2.0)
    m = models.ReLUDAE(6, 4, dtype=torch.float64)
    with torch.no_grad():
        m.W1.copy_(torch.tensor(theory.memorization_solution(X, 4, 0.0, 0.0)))
        m.W2.copy_(m.W1)
    freq = models.activation_frequency(m, torch.tensor(X[:1]), sigma=0.0)
    assert freq.tolist() == [1.0, 0.0, 0.0, 0.0]
    M = models.on_units_map(m, [0])
    assert torch.allclose(M @ torch.tensor(X[0]), torch.tensor(X[0]))


def test_train_dae_objective_is_eq6_and_maps_to_weight_decay():
    """One SGD step on Eq. 6 = one SGD step on MSELoss + weight_decay, λ = d·wd/2 (lr scaled by d)."""
    torch.manual_seed(0)
    d, p, wd, lr = 5, 3, 0.01, 0.1
    X = torch.randn(7, d, dtype=torch.float64)
    ours = models.ReLUDAE(d, p, seed=3, dtype=torch.float64)
    ref = models.ReLUDAE(d, p, seed=3, dtype=torch.float64)
    training.train_dae(ours, X, 0.0, d * wd / 2, steps=1, lr=lr, optimizer="sgd", progress=False)
    opt = torch.optim.SGD(ref.parameters(), lr=lr * d, weight_decay=wd)
    loss = torch.nn.MSELoss()(ref(X), X)
    loss.backward()
    opt.step()
    assert torch.allclose(ours.W1, ref.W1, atol=1e-12) and torch.allclose(ours.W2, ref.W2, atol=1e-12)


def test_train_dae_records_the_exact_objective_and_is_deterministic():
    X = data.separable_samples(3, 6, norm=2.0)
    m = models.ReLUDAE(6, 4, seed=0, dtype=torch.float64)
    W1, W2 = m.W1.detach().clone(), m.W2.detach().clone()
    h = training.train_dae(m, X, 0.0, 0.01, steps=1, lr=1e-3, progress=False)
    assert abs(h["losses"][0] - theory.relu_dae_loss_gated(W1, W2, torch.tensor(X), 0.0, 0.01)) < 1e-10
    runs = []
    for _ in range(2):
        m = models.ReLUDAE(6, 4, seed=0)
        runs.append(training.train_dae(m, X, 0.2, 1e-3, steps=30, lr=1e-2, batch_size=2, progress=False))
    assert np.array_equal(runs[0]["losses"], runs[1]["losses"])


def test_train_dae_bad_input():
    m = models.ReLUDAE(6, 4)
    X = np.ones((3, 6))
    with pytest.raises(ValueError, match="optimizer"):
        training.train_dae(m, X, 0.1, 0.0, steps=1, lr=1e-3, optimizer="adamw", progress=False)
    with pytest.raises(ValueError, match="shape"):
        training.train_dae(m, np.ones((3, 5)), 0.1, 0.0, steps=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="sigma"):
        training.train_dae(m, X, -0.1, 0.0, steps=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        training.train_dae(m, X * np.nan, 0.1, 0.0, steps=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        training.train_dae(m, X, 0.1, 0.0, steps=1, lr=1e-3, batch_size=4, progress=False)


def test_fit_linear_dae_reaches_the_closed_form():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6)) * np.array([2.0, 1.5, 1.0, 0.6, 0.3, 0.1])
    res = training.fit_linear_dae(X, 3, 0.3, 0.02, seed=1)
    W = theory.linear_dae_solution(X, 3, 0.3, 0.02)
    M, M0 = res["W1"] @ res["W2"].T, W @ W.T
    assert np.linalg.norm(M - M0) / np.linalg.norm(M0) < 1e-6
    assert np.linalg.norm(res["W1"] - res["W2"]) / np.linalg.norm(res["W1"]) < 1e-6


def test_relu_dae_training_finds_the_memorization_solution():
    """A short run in the memorization regime recovers W Wᵀ of Corollary 3.2 within a few percent."""
    torch.manual_seed(0)
    X = data.separable_samples(3, 8, norm=2.0, seed=0)
    sigma, lam = 0.2, 1e-3
    m = models.ReLUDAE(8, 6, tied=True, seed=0, dtype=torch.float64)
    training.train_dae(m, X, sigma, lam, steps=4000, lr=1e-2, noise_draws=16, schedule="cosine", progress=False)
    W = theory.memorization_solution(X, 6, sigma, lam)
    M = (m.W2 @ m.W1.T).detach().numpy()
    assert np.linalg.norm(M - W @ W.T) / np.linalg.norm(W @ W.T) < 0.03
