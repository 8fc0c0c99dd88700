from otter.test_files import test_case

OK_FORMAT = False

name = "q6"
points = 3

@test_case(points=None, hidden=False)
def test_q6_numbers(err_map, stored_trained, a_theory, np):
    from repdiff.grading import assert_close
    for name, v in [('err_map', err_map), ('stored_trained', stored_trained), ('a_theory', a_theory)]:
        assert v is not None and v is not Ellipsis, f'{name} is not computed yet: replace its `...`'
    assert np.ndim(err_map) == 0, 'err_map should be one number'
    assert 0 <= float(err_map) < 0.05, f'err_map = {float(err_map):.3g}: the trained map should agree with W_mem W_mem^T to a few percent. Check W_mem (Question 4) and that you compare W2 W1^T, not W1 alone.'
    assert_close('stored weights of the trained network vs a_theory', stored_trained, a_theory, rtol=0.03, hint='The trained network stores each sample with weight close to a_i.')

