from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 3

@test_case(points=None, hidden=False)
def test_q2_auroc_with_ties(auroc, np):
    from repdiff.grading import answer, assert_close
    pos, neg = (np.array([0.9, 0.8, 0.5, 0.5]), np.array([0.5, 0.3, 0.2, 0.1, 0.0]))
    assert_close('auroc on four positives and five negatives', answer(auroc, pos, neg), 0.95, slips={'the AUROC with the classes swapped (1 - AUROC): the memorized scores are the positives': 0.05, 'ties counted as 0; a tie counts one half': 0.9, 'ties counted as 1; a tie counts one half': 1.0})

@test_case(points=None, hidden=False)
def test_q2_tpr_at_fpr(tpr_at_fpr, np):
    from repdiff.grading import answer, assert_close
    neg = np.linspace(0.0, 1.0, 98).tolist() + [1.0, 1.0]
    pos = np.array([1.0, 1.0, 0.9, 1.2])
    assert_close('tpr_at_fpr(pos, neg, 0.01)', answer(tpr_at_fpr, pos, np.array(neg), 0.01), 0.75, slips={"a strict '>' at the threshold; a positive scoring exactly the threshold is flagged (>=)": 0.25, 'the 1st percentile (fpr) instead of the 99th (1 - fpr) of the negatives': 1.0})
    neg2 = np.arange(10.0)
    pos2 = np.array([8.5, 8.6, 8.7, 3.0])
    assert_close('tpr_at_fpr(pos, neg, 0.1) with neg = 0, 1, ..., 9', answer(tpr_at_fpr, pos2, neg2, 0.1), 0.75, slips={'a percentile of the positives; the threshold is a percentile of the negatives': 0.25, "the threshold at the largest negative (9), not at numpy's 90th percentile (8.1)": 0.0, 'the 10th percentile (fpr) instead of the 90th (1 - fpr) of the negatives': 1.0})

