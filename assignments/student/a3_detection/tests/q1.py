from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 2

@test_case(points=None, hidden=False)
def test_q1_small_example(pooled_std, np):
    from repdiff.grading import answer, assert_close
    h = np.random.default_rng(0).standard_normal((4, 4, 2, 3))
    for how, pooled in (('max', h.max(axis=(2, 3))), ('mean', h.mean(axis=(2, 3)))):
        reduce = np.max if how == 'max' else np.mean
        assert_close(f'pooled_std(h, {how!r}) for h of shape (4, 4, 2, 3)', answer(pooled_std, h, how), pooled.std(axis=1), slips={'the sample Std (dividing by C - 1); the detector uses the population Std (divide by C)': pooled.std(axis=1, ddof=1), 'the variance (the square root is missing)': pooled.var(axis=1), 'pooling over the channels and taking the Std over space; pool over space (H, W) and take the Std over the C channels': reduce(h, axis=1).reshape(4, -1).std(axis=1), 'the Std over the batch (one value per channel); take it over the channels of each image': pooled.std(axis=0)})

@test_case(points=None, hidden=False)
def test_q1_bad_input(pooled_std, np):
    from repdiff.grading import assert_raises_value_error
    h = np.ones((2, 3, 4, 4))
    assert_raises_value_error(pooled_std, [((h, 'median'), "pooling='median' (only 'max' and 'mean' exist)"), ((h[0], 'max'), 'an h of shape (3, 4, 4) (it must be (B, C, H, W))')], name='pooled_std')

