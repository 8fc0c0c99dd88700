from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 3

@test_case(points=None, hidden=False)
def test_q4_nn_ratio(nn_ratio, np):
    from repdiff.grading import answer, assert_close
    train = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 10.0]])
    s = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 9.0]])
    right = np.array([1 / 3, 1 / 3, 1 / 9])
    assert_close('nn_ratio on three points in the plane', answer(nn_ratio, s, train), right, slips={'the ratio of *squared* distances (the square of the right ratio)': right ** 2, 'the inverse ratio, NN2 / NN1 (it should be at most 1)': 1 / right})

@test_case(points=None, hidden=False)
def test_q4_copy_fraction(copy_fraction, np):
    from repdiff.grading import answer
    train = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 10.0]])
    outputs = np.array([[0.1, 0.0], [3.9, 0.1], [0.0, 0.2], [2.0, 0.0]])
    owner = np.array([0, 1, 2, 0])
    got = answer(copy_fraction, outputs, train, owner)
    assert np.ndim(got) == 0, 'copy_fraction should return one number'
    if abs(float(got) - 0.75) < 1e-09:
        raise AssertionError("copy_fraction counted an output that copies a *different* training point: the nearest training point must be the output's own (owner[k])")
    assert abs(float(got) - 0.5) < 1e-09, f'two of the four outputs are copies of their own point (0.5), got {got}'

