from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 3

@test_case(points=None, hidden=False)
def test_q4_shape_and_columns(memorization_weights, X, p, sigma, lam, np):
    """Shape (d, p); column i parallel to x_i; zeros after column n."""
    from repdiff.grading import answer
    W = np.asarray(answer(memorization_weights, X, p, sigma, lam))
    n_, d_ = X.shape
    if W.shape == (p, d_):
        raise AssertionError("W has shape (p, d); the course's weights are (d, p): one column per unit")
    assert W.shape == (d_, p), f'W should have shape (d, p) = {(d_, p)}, got {W.shape}'
    assert np.allclose(W[:, n_:], 0), 'the columns after the first n must be zero (unused units)'
    cos = (W[:, :n_] * X.T).sum(0) / (np.linalg.norm(W[:, :n_], axis=0) * np.linalg.norm(X, axis=1) + 1e-300)
    assert np.allclose(cos, 1), f'column i must point along x_i (in the order of the rows of X); cosines: {cos}'

@test_case(points=None, hidden=False)
def test_q4_errors(memorization_weights, X, sigma, np):
    """The corollary's conditions raise ValueError."""
    from repdiff.grading import assert_raises_value_error
    assert_raises_value_error(memorization_weights, [((X, X.shape[0] - 1, sigma, 0.001), 'p < n'), ((X, 12, sigma, float((X ** 2).sum(1).min()) / X.shape[0] * 1.01), 'n*lam >= min |x_i|^2')], name='memorization_weights')

