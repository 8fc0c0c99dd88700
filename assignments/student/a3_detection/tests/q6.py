from otter.test_files import test_case

OK_FORMAT = False

name = "q6"
points = 2

@test_case(points=None, hidden=False)
def test_q6_examples(slope, np):
    from repdiff.grading import answer, assert_close
    a, y = (np.array([0.0, 1.0, 2.0, 4.0]), np.array([1.0, 2.0, 2.0, 5.0]))
    assert_close('slope(a, y) for a = (0, 1, 2, 4), y = (1, 2, 2, 5)', answer(slope, a, y), 8.5 / 8.75, slips={'a line through the origin (no intercept), sum(a y) / sum(a^2); fit an intercept too': 26 / 21, 'the slope between the two end points; use all points (least squares)': 1.0, 'the regression of a on y (the axes swapped); regress y on a': 8.5 / 9.0})
    Y = np.stack([y, 2 * y + 3.0, np.full(4, 0.7)], axis=1)
    got = answer(slope, a, Y)
    assert_close('slope(a, Y) for three prompts (columns)', got, [8.5 / 8.75, 17 / 8.75, 0.0], hint='Fit each column of Y separately (centre each column by its own mean).')

@test_case(points=None, hidden=False)
def test_q6_bad_input(slope, np):
    from repdiff.grading import assert_raises_value_error
    assert_raises_value_error(slope, [((np.ones(3), np.arange(3.0)), 'a = (1, 1, 1): the slope is undefined'), ((np.arange(3.0), np.arange(4.0)), '3 values of a but 4 rows of y')], name='slope')

