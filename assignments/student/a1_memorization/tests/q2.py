from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 2

@test_case(points=None, hidden=False)
def test_q2_simple_cases(per_sample_objective):
    """a = 0 stores nothing (the whole sample is lost); a = 1 without weight decay keeps the noise."""
    from repdiff.grading import answer, assert_close
    assert_close('g(a=0) with |x|^2 = 4', answer(per_sample_objective, 0.0, 4.0, 5, 0.5, 0.01), 4.0, hint='At a = 0 the output is 0, so the loss is |x|^2.')
    assert_close('g(a=1) with |x|^2 = 4, sigma = 0.5, lam = 0', answer(per_sample_objective, 1.0, 4.0, 5, 0.5, 0.0), 0.25, slips={'the value with sigma in place of sigma^2': 0.5}, hint='At a = 1 without weight decay only the noise along x is left.')

@test_case(points=None, hidden=False)
def test_q2_weight_decay(per_sample_objective):
    """The weight-decay term: both layers, and the factor n from multiplying the loss by n."""
    from repdiff.grading import answer, assert_close
    a, s, n_, sg, lm = (0.5, 4.0, 5, 0.5, 0.01)
    right = s * (1 - a) ** 2 + sg ** 2 * a ** 2 + 2 * n_ * lm * a
    slips = {'the formula with lam in place of n*lam (the loss was multiplied by n, so is its penalty)': s * (1 - a) ** 2 + sg ** 2 * a ** 2 + 2 * lm * a, 'the formula with the penalty counted for one layer only (W1 and W2 both pay it)': s * (1 - a) ** 2 + sg ** 2 * a ** 2 + n_ * lm * a, 'the formula with a minus sign on the penalty': s * (1 - a) ** 2 + sg ** 2 * a ** 2 - 2 * n_ * lm * a, 'the formula with sigma in place of sigma^2': s * (1 - a) ** 2 + sg * a ** 2 + 2 * n_ * lm * a}
    assert_close('g(0.5) with |x|^2 = 4, n = 5, sigma = 0.5, lam = 0.01', answer(per_sample_objective, a, s, n_, sg, lm), right, slips=slips)

