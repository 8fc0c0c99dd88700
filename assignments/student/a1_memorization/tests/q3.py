from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 3

@test_case(points=None, hidden=False)
def test_q3_shrinkage(optimal_shrinkage, per_sample_objective, np):
    """a* minimises g: compare with the formula, and with a fine grid search of your own g."""
    from repdiff.grading import answer, assert_close
    s = np.array([1.0, 2.0, 4.0, 9.0])
    n_, sg, lm = (5, 0.5, 0.01)
    right = (s - n_ * lm) / (s + sg ** 2)
    slips = {'the formula with sigma in place of sigma^2': (s - n_ * lm) / (s + sg), 'the formula with lam in place of n*lam': (s - lm) / (s + sg ** 2), 'the formula with +n*lam in the numerator (the penalty pushes a down, not up)': (s + n_ * lm) / (s + sg ** 2), 'the column norm r_i |x_i| = sqrt(a*), not a*': np.sqrt(right)}
    assert_close('a* for |x|^2 = 1, 2, 4, 9 (n = 5, sigma = 0.5, lam = 0.01)', answer(optimal_shrinkage, s, n_, sg, lm), right, slips=slips)
    grid = np.linspace(0, 1.5, 150001)
    g = answer(per_sample_objective, grid, 4.0, n_, sg, lm, name='per_sample_objective')
    assert abs(grid[int(np.argmin(g))] - right[2]) < 0.0001, 'a* should be where your per_sample_objective is smallest'

@test_case(points=None, hidden=False)
def test_q3_switched_off(optimal_shrinkage, np):
    """When n*lam >= |x|^2 the best a >= 0 is 0 (the unit is switched off), never negative."""
    from repdiff.grading import answer, assert_close
    out = answer(optimal_shrinkage, np.array([0.04, 0.05, 1.0]), 5, 0.5, 0.01)
    assert_close('a* for |x|^2 = 0.04, 0.05, 1 (n*lam = 0.05)', out, [0.0, 0.0, 0.95 / 1.25], hint='a must be >= 0: clip the formula at 0 where n*lam >= |x|^2.')

@test_case(points=None, hidden=False)
def test_q3_r_on_this_data(r_coefficients, X, sigma, lam, np):
    """r_i for the data set of this notebook (different norms, so one r per sample)."""
    from repdiff.grading import answer, assert_close
    s = (X ** 2).sum(1)
    n_ = X.shape[0]
    right = np.sqrt((s - n_ * lam) / (s ** 2 + sigma ** 2 * s))
    slips = {'the formula with sigma in place of sigma^2': np.sqrt((s - n_ * lam) / (s ** 2 + sigma * s)), 'the formula with lam in place of n*lam': np.sqrt((s - lam) / (s ** 2 + sigma ** 2 * s)), 'the column norms r_i |x_i|, not r_i': np.sqrt((s - n_ * lam) / (s + sigma ** 2)), 'r_i^2 (the square root is missing)': (s - n_ * lam) / (s ** 2 + sigma ** 2 * s), 'the formula with n = the number of columns d (rows are samples: n = X.shape[0])': np.sqrt((s - X.shape[1] * lam) / (s ** 2 + sigma ** 2 * s))}
    assert_close('r_coefficients(X, sigma, lam)', answer(r_coefficients, X, sigma, lam), right, slips=slips)

