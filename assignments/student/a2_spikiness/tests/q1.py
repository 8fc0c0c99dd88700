from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 2

@test_case(points=None, hidden=False)
def test_q1_one_hot_and_flat(rep_std, np):
    from repdiff.grading import answer, assert_close
    H = np.array([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0]])
    right = H.std(axis=1)
    assert_close('rep_std of a one-hot, a flat and a two-hot row', answer(rep_std, H), right, slips={'the sample Std (dividing by p - 1); the paper uses the population Std (divide by p)': H.std(axis=1, ddof=1), 'the variance (the square root is missing)': H.var(axis=1), 'the Std over the wrong axis (down the columns instead of along each row)': H.std(axis=0)[:3]})

