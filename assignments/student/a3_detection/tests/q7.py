from otter.test_files import test_case

OK_FORMAT = False

name = "q7"
points = 1

@test_case(points=None, hidden=False)
def test_q7_slopes(slopes_gen, slopes_mem, ratio, attr_gen, attr_mem, a_values, n_steer, np):
    from repdiff.sd import steering
    from repdiff.grading import assert_close
    for name, v in [('slopes_gen', slopes_gen), ('slopes_mem', slopes_mem), ('ratio', ratio)]:
        assert v is not None and v is not Ellipsis, f'{name} is not computed yet: replace its `...`'
    for name, s in (('slopes_gen', slopes_gen), ('slopes_mem', slopes_mem)):
        assert np.shape(s) == (n_steer,), f'{name} should have one slope per prompt, shape ({n_steer},)'
    ref_g, ref_m = (steering.attribute_slopes(a_values, attr_gen), steering.attribute_slopes(a_values, attr_mem))
    assert_close('slopes_gen', slopes_gen, ref_g, slips={"the copies' slopes (swapped)": ref_m})
    assert_close('slopes_mem', slopes_mem, ref_m)
    assert_close('ratio', ratio, ref_g.mean() / abs(ref_m.mean()), slips={'the ratio without the absolute value': ref_g.mean() / ref_m.mean(), 'the inverse ratio (copies / held-out)': abs(ref_m.mean()) / ref_g.mean()})

