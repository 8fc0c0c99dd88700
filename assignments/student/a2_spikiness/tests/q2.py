from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 2

@test_case(points=None, hidden=False)
def test_q2_examples(participation_ratio, np):
    from repdiff.grading import answer, assert_close
    H = np.array([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0], [1.0, 2.0, 0.0, 0.0]])
    right = np.array([1.0, 4.0, 2.0, 25.0 / 17.0])
    assert_close('PR of a one-hot, a flat, a two-hot and an uneven row', answer(participation_ratio, H), right, slips={'(sum h)^2 / sum h^2 (powers 1 and 2 instead of 2 and 4)': H.sum(1) ** 2 / (H ** 2).sum(1), 'the inverse, sum h^4 / (sum h^2)^2': 1 / right})

@test_case(points=None, hidden=False)
def test_q2_zero_row_and_scale(participation_ratio, np):
    import warnings
    from repdiff.grading import answer
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        try:
            out = np.asarray(answer(participation_ratio, np.zeros((2, 5))), dtype=float)
        except AssertionError as exc:
            raise AssertionError(f'an all-zero row must give 0 without a warning: {exc}') from None
    assert out.shape == (2,) and np.all(out == 0), f'an all-zero row must give 0 (no active unit), got {out}'
    h = np.array([[0.5, 1.0, 2.0]])
    a, b = (answer(participation_ratio, h), answer(participation_ratio, 7.0 * h))
    assert np.allclose(a, b), 'the PR must not change when h is scaled (it counts units, not magnitudes)'

