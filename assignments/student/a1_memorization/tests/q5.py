from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = 3

@test_case(points=None, hidden=False)
def test_q5_representation(representation, np):
    from repdiff.grading import answer, assert_close
    W1 = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
    Y = np.array([[1.0, 1.0], [-2.0, 0.5]])
    right = np.maximum(Y @ W1, 0)
    assert_close('representation(W1, Y) on a 2x3 example', answer(representation, W1, Y), right, slips={'relu(-W1^T y): a flipped sign': np.maximum(-Y @ W1, 0), 'W1^T y without the ReLU': Y @ W1})

@test_case(points=None, hidden=False)
def test_q5_stored_weight_at_wmem(stored_weight, X, sigma, lam, np):
    """At the closed form the stored weight of sample i is a_i = r_i^2 |x_i|^2."""
    import repdiff
    from repdiff.grading import answer, assert_close
    W = repdiff.theory.memorization_solution(X, 12, sigma, lam)
    s = (X ** 2).sum(1)
    a = (s - X.shape[0] * lam) / (s + sigma ** 2)
    assert_close('stored_weight(W_mem, W_mem, X)', answer(stored_weight, W, W, X), a, slips={'the stored weight along x_i instead of the unit vector xhat_i (a_i |x_i|^2)': a * s})

