from otter.test_files import test_case

OK_FORMAT = False

name = "q6"
points = 2

@test_case(points=None, hidden=False)
def test_q6_answers(memorizing, pr_rises_at_fixed_width, pr_separates_across_widths, copy, np):
    for name, v in [('memorizing', memorizing), ('pr_rises_at_fixed_width', pr_rises_at_fixed_width), ('pr_separates_across_widths', pr_separates_across_widths)]:
        assert v is not None and v is not Ellipsis, f'{name} is not computed yet: replace its `...`'
    m = np.asarray(memorizing)
    assert m.shape == np.shape(copy) and m.dtype == bool, f'memorizing should be a boolean array of shape {np.shape(copy)}'
    assert m[0, 0] and (not m[-1, 0]), 'with p = 8 the model with n = 4 should memorize and the one with n = 128 not: check measure (Question 5) and the threshold 1/2'
    assert isinstance(pr_rises_at_fixed_width, bool | np.bool_) and isinstance(pr_separates_across_widths, bool | np.bool_), 'the last two answers are True or False'

