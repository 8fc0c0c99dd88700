from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 2

@test_case(points=None, hidden=False)
def test_q3_onehot(onehot_std, np):
    from repdiff.grading import answer, assert_close
    right = [2.5 * np.sqrt(p - 1) / p for p in (2, 10, 1280)]
    got = [answer(onehot_std, 2.5, p) for p in (2, 10, 1280)]
    assert_close('onehot_std(2.5, p) for p = 2, 10, 1280', got, right, slips={'the sample Std (divide by p - 1): c / sqrt(p)': [2.5 / np.sqrt(p) for p in (2, 10, 1280)], 'the variance c^2 (p - 1) / p^2 (the square root is missing)': [2.5 ** 2 * (p - 1) / p ** 2 for p in (2, 10, 1280)]})

