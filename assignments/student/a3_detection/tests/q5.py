from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = 1

@test_case(points=None, hidden=False)
def test_q5_consistent(scores_mem, scores_held, auc, auc_ci, tpr, auc_wen, n_pos, n_neg, np):
    from repdiff import metrics
    from repdiff.grading import assert_close
    for name, v in [('scores_mem', scores_mem), ('scores_held', scores_held), ('auc', auc), ('auc_ci', auc_ci), ('tpr', tpr), ('auc_wen', auc_wen)]:
        assert v is not None and v is not Ellipsis, f'{name} is not computed yet: replace its `...`'
    for name, s, n, rows in (('scores_mem', scores_mem, n_pos, 'one per copy, scr.images[copies]'), ('scores_held', scores_held, n_neg, 'one per held-out generation, scr.images[held]')):
        assert np.shape(s) == (n,), f'{name} should have shape ({n},), {rows}; got {np.shape(s)}'
    ref = metrics.detection_metrics(scores_mem, scores_held, n_bootstrap=1000, seed=0)
    assert_close('auc of your scores', auc, ref['auroc'], slips={'the AUROC with the classes swapped (held-out as positives)': 1 - ref['auroc']})
    assert_close('auc_ci of your scores', auc_ci, [ref['auroc_lo'], ref['auroc_hi']], rtol=1e-09, hint='Call bootstrap_ci(scores_mem, scores_held, 1000, 0).')
    s_mem, s_held = (np.asarray(scores_mem, dtype=float), np.asarray(scores_held, dtype=float))
    assert_close('tpr of your scores', tpr, np.mean(s_mem >= np.percentile(s_held, 99)))

