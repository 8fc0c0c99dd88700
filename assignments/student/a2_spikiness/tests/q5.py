from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = 3

@test_case(points=None, hidden=False)
def test_q5_memorizing_model(measure, np, torch, ReLUDAE):
    """A model built from the memorization closed form copies every training point and is one-hot."""
    import repdiff
    from repdiff.grading import answer
    Xs = repdiff.data.synthetic.separable_samples(4, 16, norm=3.0, seed=1)
    Xt = repdiff.data.synthetic.separable_samples(4, 16, norm=3.0, seed=2)
    m = ReLUDAE(16, 8, tied=True, dtype=torch.float64)
    with torch.no_grad():
        m.W1.copy_(torch.as_tensor(repdiff.theory.memorization_solution(Xs, 8, 0.2, 0.001)))
    res = answer(measure, m, Xs, Xt, 0.2)
    assert isinstance(res, dict) and {'copy', 'gap', 'pr', 'std'} <= set(res), f'measure should return a dict with keys copy, gap, pr, std; got {res!r}'
    assert res['copy'] > 0.99, f"the closed-form memorizing model copies every training point; copy = {res['copy']}"
    assert res['gap'] > 0.9, f"it only denoises its own training points: the gap should be near 1, got {res['gap']}"
    assert abs(res['pr'] - 1) < 0.05, f"its representations are one-hot: median PR should be 1, got {res['pr']}"

