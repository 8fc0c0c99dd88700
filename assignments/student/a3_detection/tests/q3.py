from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 2

@test_case(points=None, hidden=False)
def test_q3_interval(bootstrap_ci, auroc, np):
    from repdiff import metrics
    from repdiff.grading import answer, assert_close
    rng = np.random.default_rng(3)
    pos, neg = (rng.standard_normal(30) + 1.0, rng.standard_normal(40))
    got = answer(bootstrap_ci, pos, neg, 300, 1)
    assert np.shape(got) == (2,), f'bootstrap_ci should return two numbers (lo, hi), got {got!r}'
    lo, hi = (float(got[0]), float(got[1]))
    point = metrics.detection_metrics(pos, neg)['auroc']
    if abs(lo - point) < 1e-12 and abs(hi - point) < 1e-12:
        raise AssertionError('lo and hi both equal the AUROC itself: draw the resamples *with* replacement (rng.integers), each class separately')
    assert lo <= point <= hi, f'the interval ({lo:.3f}, {hi:.3f}) should contain the AUROC {point:.3f}'
    r = np.random.default_rng(1)
    vals = []
    for _ in range(300):
        p = pos[r.integers(0, 30, 30)]
        q = neg[r.integers(0, 40, 40)]
        vals.append(metrics.detection_metrics(p, q)['auroc'])
    ref = metrics.detection_metrics(pos, neg, n_bootstrap=300, seed=1)
    assert_close('bootstrap_ci(pos, neg, n_boot=300, seed=1)', [lo, hi], [ref['auroc_lo'], ref['auroc_hi']], rtol=1e-09, slips={'the 90% interval (percentiles 5 and 95); use 2.5 and 97.5': np.percentile(vals, [5, 95]), 'np.percentile with fractions (0.025, 0.975); np.percentile takes percents (2.5, 97.5)': np.percentile(vals, [0.025, 0.975])}, hint='Draw the indices exactly as the question says (pos first, then neg, in every round), and check your auroc (Question 2).')

