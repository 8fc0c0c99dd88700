"""repdiff.data.captioned: the mini-LAION data set of Chapters 12-14."""

import numpy as np
import pytest
import torch

from repdiff.data import captioned, scenes


@pytest.fixture(scope="module")
def ds():
    return captioned.make_mini_laion(n_unique=200, n_planted=10, n_copies=5, n_single_posters=20, n_held_out=30,
                                     seed=3)


def test_shapes_and_ranges(ds):
    n = 200 + 10 * 5 + 20
    assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == np.float32
    assert len(ds.captions) == len(ds.kind) == len(ds.planted_id) == n
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert ds.planted_images.shape == (10, 3, 32, 32)
    assert ds.unique_images().shape == (200 + 20 + 10, 3, 32, 32)


def test_planted_duplicates_are_exact_copies_with_one_caption(ds):
    for j in range(10):
        rows = np.nonzero(ds.planted_id == j)[0]
        assert len(rows) == 5
        assert all(np.array_equal(ds.images[r], ds.planted_images[j]) for r in rows)
        assert {ds.captions[r] for r in rows} == {ds.planted_captions[j]}
    assert len(set(ds.planted_captions)) == 10


def test_captions_unique_and_held_out_disjoint(ds):
    comp = [c for c, k in zip(ds.captions, ds.kind, strict=True) if k == "compositional"]
    assert len(set(comp)) == len(comp) == 200
    assert not set(ds.held_out_captions) & set(ds.captions)
    singles = [c for c, k in zip(ds.captions, ds.kind, strict=True) if k == "single_poster"]
    assert not set(singles) & set(ds.planted_captions)
    title_words = {w for c in ds.planted_captions for w in c.split()} - {"the"}
    comp_words = {w for c in comp + ds.held_out_captions for w in c.split()}
    assert not title_words & comp_words  # memorized prompts share no content word with the others
    assert {w for c in ds.captions + ds.held_out_captions for w in c.split()} <= set(captioned.vocabulary())


def test_deterministic():
    a = captioned.make_mini_laion(n_unique=20, n_planted=3, n_copies=2, n_single_posters=2, n_held_out=5, seed=1)
    b = captioned.make_mini_laion(n_unique=20, n_planted=3, n_copies=2, n_single_posters=2, n_held_out=5, seed=1)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions


def test_relations_are_rendered():
    rng = np.random.default_rng(0)
    # a red circle above a blue square on white: red pixels' mean row above blue pixels' mean row
    img = captioned.compositional_scene("red", "circle", "above", "blue", "square", "white", rng)
    red = scenes.color_fraction(img[None], "red")[0]
    assert red > 0.02
    rgb = (img + 1) / 2
    red_rows = np.nonzero(np.abs(rgb - np.array(scenes.COLORS["red"])[:, None, None]).max(0) < 0.1)[0]
    blue_rows = np.nonzero(np.abs(rgb - np.array(scenes.COLORS["blue"])[:, None, None]).max(0) < 0.1)[0]
    assert red_rows.mean() < blue_rows.mean()
    img = captioned.compositional_scene("red", "circle", "left of", "blue", "square", "white", rng)
    rgb = (img + 1) / 2
    red_cols = np.nonzero(np.abs(rgb - np.array(scenes.COLORS["red"])[:, None, None]).max(0) < 0.1)[1]
    blue_cols = np.nonzero(np.abs(rgb - np.array(scenes.COLORS["blue"])[:, None, None]).max(0) < 0.1)[1]
    assert red_cols.mean() < blue_cols.mean()


def test_color_fraction_and_errors():
    img = scenes.render_scene([], "red", size=8)
    assert scenes.color_fraction(img[None], "red")[0] == 1.0
    assert scenes.color_fraction(img[None], "blue")[0] == 0.0
    with pytest.raises(ValueError, match="shape"):
        scenes.color_fraction(img, "red")
    with pytest.raises(ValueError, match="NaN"):
        scenes.color_fraction(np.full((1, 3, 4, 4), np.nan), "red")
    with pytest.raises(ValueError, match="unknown colour"):
        scenes.render_scene([], "mauve")
    with pytest.raises(ValueError, match="unknown shape"):
        scenes.render_scene([("hexagon", "red", 4, 4, 2)], "white", size=8)
    with pytest.raises(ValueError, match="n_planted"):
        captioned.make_mini_laion(n_planted=0)


def test_poster_mosaic_tiles():
    rng = np.random.default_rng(0)
    img = captioned.poster_scene(rng, size=32, n_objects=0, mosaic_cells=8)
    tiles = img.reshape(3, 8, 4, 8, 4)
    assert np.allclose(tiles, tiles[:, :, :1, :, :1], atol=1e-6)  # constant within each 4x4 tile
    palette = np.asarray(list(scenes.COLORS.values())) * 2 - 1
    colours = tiles[:, :, 0, :, 0].reshape(3, -1).T  # (64, 3): one colour per tile
    assert np.abs(colours[:, None] - palette[None]).max(-1).min(-1).max() < 1e-5  # every tile a palette colour
    assert len(np.unique(colours.round(3), axis=0)) >= 6  # random colours, not a smooth field
    flat = captioned.poster_scene(np.random.default_rng(0), n_objects=0, mosaic_cells=0)
    assert np.allclose(flat, flat[:, :1, :1])  # mosaic_cells=0: a flat background
    with_shapes = captioned.poster_scene(np.random.default_rng(1), n_objects=2, mosaic_cells=8)
    assert with_shapes.shape == (3, 32, 32) and with_shapes.min() >= -1 and with_shapes.max() <= 1


def test_poster_and_background_errors():
    with pytest.raises(ValueError, match="mosaic_cells"):
        captioned.poster_scene(np.random.default_rng(0), size=32, mosaic_cells=5)
    with pytest.raises(ValueError, match="background image"):
        scenes.render_scene([], np.zeros((3, 16, 16)), size=32)
    with pytest.raises(ValueError, match="unknown colour"):
        scenes.render_scene([], "mauve")


def test_layouts_render_the_same_images(ds):
    """The planted posters can be re-drawn from their layouts, and a scene from its compositional layout."""
    mosaic = captioned.make_mini_laion(n_unique=20, n_planted=4, n_copies=2, n_single_posters=0, n_held_out=5,
                                       seed=3, mosaic_cells=8)
    for data, n_objects in ((ds, 3), (mosaic, 2)):  # flat posters have three shapes, mosaics two
        assert len(data.planted_layouts) == len(data.planted_images)
        for (objects, background), image in zip(data.planted_layouts, data.planted_images, strict=True):
            assert len(objects) == n_objects
            assert np.array_equal(scenes.render_scene(objects, background), image)
    assert isinstance(ds.planted_layouts[0][1], str) and mosaic.planted_layouts[0][1].shape == (3, 32, 32)
    layout = captioned.compositional_layout("red", "circle", "left of", "blue", "square", np.random.default_rng(4))
    scene = captioned.compositional_scene("red", "circle", "left of", "blue", "square", "gray",
                                          np.random.default_rng(4))
    assert np.array_equal(scenes.render_scene(layout, "gray"), scene)
    (s1, c1, x1, _, r1), (_, _, x2, _, _) = layout
    assert (s1, c1) == ("circle", "red") and x1 < x2 and 4.5 <= r1 <= 6.5


def test_edit_objects_scales_and_moves():
    objects = [("circle", "red", 10.0, 12.0, 5.0), ("square", "blue", 20.0, 22.0, 4.0)]
    bigger = scenes.edit_objects(objects, scale=1.5)
    assert [o[4] for o in bigger] == [7.5, 6.0] and [o[2:4] for o in bigger] == [o[2:4] for o in objects]
    moved = scenes.edit_objects(objects, shift=(2.0, -1.0))
    assert [o[2:4] for o in moved] == [(12.0, 11.0), (22.0, 21.0)]
    area = [np.abs(scenes.render_scene(o, "black") - scenes.render_scene([], "black")).max(0).mean()
            for o in (objects, bigger)]
    assert area[1] > 1.8 * area[0]  # 1.5 times the radius: about 2.25 times the area
    with pytest.raises(ValueError, match="scale"):
        scenes.edit_objects(objects, scale=0.0)


def test_parse_compositional_caption_round_trip(ds):
    for caption in ds.held_out_captions:
        assert captioned.compositional_caption(*captioned.parse_compositional_caption(caption)) == caption
    assert captioned.parse_compositional_caption("a red circle left of a blue square on a teal background") == (
        "red", "circle", "left of", "blue", "square", "teal")
    for bad in (ds.planted_captions[0], "a red circle", "a red blob above a blue square on a teal background", ""):
        with pytest.raises(ValueError, match="not a compositional caption"):
            captioned.parse_compositional_caption(bad)


def test_render_layouts_draws_the_edited_objects(ds):
    layouts = ds.planted_layouts[:3]
    np.testing.assert_array_equal(scenes.render_layouts(layouts), ds.planted_images[:3])
    moved = scenes.render_layouts(layouts, scale=1.2, shift=(1.0, 0.0))
    expected = [scenes.render_scene(scenes.edit_objects(o, scale=1.2, shift=(1.0, 0.0)), bg) for o, bg in layouts]
    np.testing.assert_array_equal(moved, np.stack(expected))
    with pytest.raises(ValueError, match="no layouts"):
        scenes.render_layouts([])


def test_all_compositional_is_every_caption_once():
    specs = captioned.all_compositional()
    assert len(specs) == len(set(specs)) == 6 * 3 * 4 * 6 * 3 * 5
    assert all(captioned.parse_compositional_caption(captioned.compositional_caption(*s)) == s for s in specs[:50])


def test_border_color_is_the_median_of_the_one_pixel_border():
    """A gray frame around a red square: the border's colour, not the image's mean or its centre pixel."""
    x = np.zeros((2, 3, 8, 8))
    x[:] = (np.asarray(scenes.COLORS["gray"]) * 2 - 1)[None, :, None, None]
    x[:, :, 1:-1, 1:-1] = (np.asarray(scenes.COLORS["red"]) * 2 - 1)[None, :, None, None]
    x[1, :, 0, 0] = 1.0  # one odd border pixel does not move the median
    want = np.asarray(scenes.COLORS["gray"]) * 2 - 1
    np.testing.assert_allclose(scenes.border_color(x), np.stack([want, want]))
    assert np.abs(x.mean(axis=(2, 3)) - want).max() > 0.1  # the mean would be wrong
    np.testing.assert_allclose(scenes.border_color(torch.from_numpy(x)), scenes.border_color(x))
    with pytest.raises(ValueError, match="shape"):
        scenes.border_color(x[0])
