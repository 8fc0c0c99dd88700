"""repdiff.sd.steering: the injection hook, concept vectors, slopes and PCA."""

import dataclasses

import numpy as np
import pytest
import torch

from repdiff import metrics
from repdiff.data import captioned, scenes
from repdiff.representations import ActivationRecorder
from repdiff.sd import pipeline, retention, steering


def test_hook_adds_only_to_conditional_half_inside_window(pipe):
    unet = pipe.unet
    site = "up_blocks.1.resnets.0"
    c = unet.up_blocks[1].resnets[0].out_channels
    v = torch.randn(c)
    z = torch.randn(4, 4, 8, 8)
    ctx = pipeline.encode_prompts(pipe, ["", "", "the hidden orchard by kalomir", "the hidden orchard by kalomir"])
    with torch.no_grad():
        with ActivationRecorder(unet, [site], keep="all") as plain:
            unet(z, 500, encoder_hidden_states=ctx)
        with steering.steer(unet, {site: v}, 0.7, start=1, stop=2) as state, \
                ActivationRecorder(unet, [site], keep="all") as steered:
            for _ in range(3):
                unet(z, 500, encoder_hidden_states=ctx)
    assert state["calls"] == 3
    base = plain[site][0]
    # call 0 and 2 are outside the window [1, 2): unchanged
    torch.testing.assert_close(steered[site][0], base)
    torch.testing.assert_close(steered[site][2], base)
    diff = steered[site][1] - base
    torch.testing.assert_close(diff[:2], torch.zeros_like(diff[:2]))
    torch.testing.assert_close(diff[2:], (0.7 * v).view(1, -1, 1, 1).expand_as(diff[2:]), rtol=1e-5, atol=1e-5)
    assert all(len(m._forward_hooks) == 0 for m in unet.modules())  # removed
    assert len(unet._forward_pre_hooks) == 0


def test_zero_strength_changes_nothing(pipe):
    v = steering.concept_vectors(pipe, torch.rand(3, 3, 32, 32) * 2 - 1, "a red circle",
                                 sites=["up_blocks.0.resnets.2", "up_blocks.1.resnets.1"])
    assert v["up_blocks.0.resnets.2"].shape == (32,)
    g0 = pipeline.generate(pipe, ["the quiet harbor by tumiti"], steps=3, seed=2)
    with steering.steer(pipe.unet, v, 0.0, start=0, stop=3):
        g1 = pipeline.generate(pipe, ["the quiet harbor by tumiti"], steps=3, seed=2)
    torch.testing.assert_close(g0.images, g1.images)
    with steering.steer(pipe.unet, v, 5.0, start=0, stop=3):
        g2 = pipeline.generate(pipe, ["the quiet harbor by tumiti"], steps=3, seed=2)
    assert (g2.images - g0.images).abs().max() > 1e-3


def test_concept_vector_is_mean_of_pooled_outputs(pipe):
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    site = "up_blocks.1.resnets.1"
    v = steering.concept_vectors(pipe, x, "a red square", sites=[site], seed=3)[site]
    z = pipeline.encode_images(pipe, x, generator=torch.Generator().manual_seed(3))
    reps = pipeline.features_at_t(pipe, z, [site], t=10, prompt="a red square", pooling="mean", seed=3)
    torch.testing.assert_close(v, reps[(site, "mean")].mean(0))


def test_slopes_and_pca():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.stack([2 * a + 1, -0.5 * a, np.zeros(4)], axis=1)
    np.testing.assert_allclose(steering.attribute_slopes(a, y), [2, -0.5, 0], atol=1e-12)
    with pytest.raises(ValueError):
        steering.attribute_slopes([1.0, 1.0], np.zeros((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        steering.attribute_slopes(a, np.full((4, 1), np.nan))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2)) @ np.diag([5.0, 1.0]) @ np.linalg.qr(rng.standard_normal((2, 2)))[0]
    x = np.hstack([x, 1e-3 * rng.standard_normal((50, 3))])
    coords, ratio = steering.pca_2d(x)
    assert coords.shape == (50, 2) and ratio[0] > 0.9
    with pytest.raises(ValueError, match="finite"), steering.steer(torch.nn.Linear(1, 1), {}, float("nan"),
                                                                     start=0, stop=1):
        pass


def test_pixel_change_and_mean_interval():
    base = torch.zeros(3, 3, 4, 4)
    moved = base.clone()
    moved[1] += 0.5  # prompt 1 changes everywhere by 0.5, prompt 2 in one pixel of 48 by 4.8
    moved[2, 0, 0, 0] = 4.8
    change = steering.pixel_change([base, moved])
    np.testing.assert_allclose(change, [[0, 0, 0], [0, 0.5, 4.8 / np.sqrt(48)]], atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        steering.pixel_change([base, base[:2]])
    with pytest.raises(ValueError, match="two or more"):
        steering.pixel_change([base])
    mean, lo, hi = metrics.mean_interval([1.0, 2.0, 3.0, 4.0], seed=1)
    assert mean == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert metrics.mean_interval([2.0, 2.0]) == (2.0, 2.0, 2.0)
    wide, narrow = metrics.mean_interval(np.arange(12.0)), metrics.mean_interval(np.arange(12.0), level=0.5)
    assert wide[1] < narrow[1] < narrow[2] < wide[2]
    with pytest.raises(ValueError, match="NaN"):
        metrics.mean_interval([1.0, np.nan])


def test_push_retention_against_scheduler_and_memorizer(pipe):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=g) * 1.6 - 0.9
    prompts = ["a red circle", "", "a blue square", "the hidden orchard"]
    got = retention.push_retention(pipe, images, prompts, [50, 400], guidance=3.0, seed=5)
    assert got.shape == (2, 4) and np.isfinite(got).all()
    # the same quantity by hand, with the scheduler's own clean estimate
    sched = pipe.scheduler
    sched.set_timesteps(10)
    bright = lambda x: ((x + 1) / 2).mean(dim=(1, 2, 3))  # noqa: E731
    pushed = 0.8 * images + 0.2
    z, zp = pipeline.encode_images(pipe, images), pipeline.encode_images(pipe, pushed)
    din = bright(pipeline.decode_latents(pipe, zp)) - bright(pipeline.decode_latents(pipe, z))
    ctx = torch.cat([pipeline.encode_prompts(pipe, [""] * 4), pipeline.encode_prompts(pipe, prompts)])
    for k, t in enumerate([50, 400]):
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(5 + k))
        est = []
        for lat in (z, zp):
            zt = sched.add_noise(lat, noise, torch.tensor([t]))
            with torch.no_grad():
                eu, ec = pipe.unet(torch.cat([zt, zt]), t, encoder_hidden_states=ctx).sample.chunk(2)
            x0 = sched.step(eu + 3.0 * (ec - eu), t, zt).pred_original_sample
            est.append(bright(pipeline.decode_latents(pipe, x0)))
        np.testing.assert_allclose(got[k], ((est[1] - est[0]) / din).numpy(), rtol=1e-4, atol=1e-5)
    # a perfect memorizer of the unpushed images pulls every pushed one back at low noise: nothing is kept
    # (this random VAE puts all latents close together, so at large t it mixes them; U-Net: keeps some)
    mem = retention.push_retention(pipe, images, prompts, [1, 3], memorizer=z)
    np.testing.assert_allclose(mem, 0.0, atol=1e-3)
    assert np.abs(got[0]).mean() > 0.01


def test_latent_gain_against_scheduler_and_memorizer(pipe):
    g = torch.Generator().manual_seed(1)
    z = pipeline.encode_images(pipe, torch.rand(3, 3, 32, 32, generator=g) * 1.6 - 0.9)
    prompts = ["a red circle", "", "the hidden orchard"]
    d = torch.randn(z.shape, generator=g)
    got = retention.latent_gain(pipe, z, prompts, 5.0 * d, [40, 600], step=0.5, guidance=2.0, seed=3)
    assert got.shape == (2, 3) and np.isfinite(got).all()
    # by hand, with the scheduler's clean estimate; the direction's length does not matter
    sched = pipe.scheduler
    sched.set_timesteps(10)
    u = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    ctx = torch.cat([pipeline.encode_prompts(pipe, [""] * 3), pipeline.encode_prompts(pipe, prompts)])
    for k, t in enumerate([40, 600]):
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(3 + k))
        est = []
        for lat in (z, z + 0.5 * u):
            zt = sched.add_noise(lat, noise, torch.tensor([t]))
            with torch.no_grad():
                eu, ec = pipe.unet(torch.cat([zt, zt]), t, encoder_hidden_states=ctx).sample.chunk(2)
            est.append(sched.step(eu + 2.0 * (ec - eu), t, zt).pred_original_sample)
        want = ((est[1] - est[0]) * u).flatten(1).sum(1) / 0.5
        np.testing.assert_allclose(got[k], want.numpy(), rtol=1e-4, atol=1e-5)
    # the perfect memorizer of these latents removes a small shift at low noise: gain 0
    mem = retention.latent_gain(pipe, z, prompts, d, [1, 4], step=0.05, memorizer=z)
    np.testing.assert_allclose(mem, 0.0, atol=1e-3)
    # at t = 0 the clean estimate is almost the noisy input itself, so a U-Net passes a shift on in full
    near_identity = retention.latent_gain(pipe, z, prompts, d, [0], step=0.1)
    assert np.all(near_identity > 0.9)
    # guidance 0 is the unconditional pass alone: the same as any guidance with the empty prompt in both branches
    uncond = retention.latent_gain(pipe, z, prompts, d, [40, 600], step=0.5, guidance=0.0, seed=3)
    empty = retention.latent_gain(pipe, z, [""] * 3, d, [40, 600], step=0.5, guidance=7.5, seed=3)
    np.testing.assert_allclose(uncond, empty, atol=1e-4)
    assert np.abs(uncond - got).max() > 1e-3  # and not what the prompts give with guidance


def test_latent_gain_rejects_bad_input(pipe):
    z = torch.zeros(2, 4, 16, 16)
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        retention.latent_gain(pipe, z[0], ["a", "b"], z[0], [10])
    with pytest.raises(ValueError, match="directions must have"):
        retention.latent_gain(pipe, z, ["a", "b"], z[:1], [10])
    with pytest.raises(ValueError, match="one prompt per latent"):
        retention.latent_gain(pipe, z, ["a"], torch.ones_like(z), [10])
    with pytest.raises(ValueError, match="nonzero"):
        retention.latent_gain(pipe, z, ["a", "b"], z, [10])
    with pytest.raises(ValueError, match="step"):
        retention.latent_gain(pipe, z, ["a", "b"], torch.ones_like(z), [10], step=0.0)
    with pytest.raises(ValueError, match="memorizer"):
        retention.latent_gain(pipe, z, ["a", "b"], torch.ones_like(z), [10], memorizer=torch.zeros(3, 4))


def test_push_retention_rejects_bad_input(pipe):
    x = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        retention.push_retention(pipe, x[0], ["a", "b"], [10])
    with pytest.raises(ValueError, match="one prompt per image"):
        retention.push_retention(pipe, x, ["a"], [10])
    with pytest.raises(ValueError, match="blend"):
        retention.push_retention(pipe, x, ["a", "b"], [10], blend=0.0)
    with pytest.raises(ValueError, match="target colour"):
        retention.push_retention(pipe, torch.ones(2, 3, 32, 32), ["a", "b"], [10])
    with pytest.raises(ValueError, match="timestep"):
        retention.push_retention(pipe, x, ["a", "b"], [1000])
    with pytest.raises(ValueError, match="memorizer"):
        retention.push_retention(pipe, x, ["a", "b"], [10], memorizer=torch.zeros(3, 4))


def test_brightness():
    x = torch.stack([-torch.ones(3, 2, 2), torch.ones(3, 2, 2), torch.zeros(3, 2, 2)])
    np.testing.assert_allclose(steering.brightness(x), [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        steering.brightness(x[0])


def test_spatial_concept_vector_and_map_hook(pipe):
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    site = "up_blocks.1.resnets.1"
    v = steering.concept_vectors(pipe, x, "", sites=[site], seed=3, spatial=True)[site]
    pooled = steering.concept_vectors(pipe, x, "", sites=[site], seed=3)[site]
    assert v.ndim == 3
    torch.testing.assert_close(v.mean(dim=(1, 2)), pooled, rtol=1e-5, atol=1e-5)  # pooling commutes with the mean
    vz = steering.without_channel_means({site: v})[site]
    assert vz.shape == v.shape
    torch.testing.assert_close(vz.mean(dim=(1, 2)), torch.zeros(v.shape[0]), rtol=0, atol=1e-5)
    torch.testing.assert_close(v - vz, pooled.view(-1, 1, 1).expand_as(v), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        steering.without_channel_means({site: pooled})
    # the map is added where it was measured, on the conditional half only
    z = torch.randn_like(pipeline.encode_images(pipe, x[:2]))  # the latent size v was measured at
    ctx = pipeline.encode_prompts(pipe, ["", "a red circle above a blue square on a white background"])
    with torch.no_grad():
        with ActivationRecorder(pipe.unet, [site], keep="all") as plain:
            pipe.unet(z, 300, encoder_hidden_states=ctx)
        with steering.steer(pipe.unet, {site: vz}, 0.5, start=0, stop=1), \
                ActivationRecorder(pipe.unet, [site], keep="all") as steered:
            pipe.unet(z, 300, encoder_hidden_states=ctx)
    diff = steered[site][0] - plain[site][0]
    torch.testing.assert_close(diff[0], torch.zeros_like(diff[0]))
    torch.testing.assert_close(diff[1], 0.5 * vz, rtol=1e-5, atol=1e-5)
    # a map of the wrong size is refused with the shapes named, and the hooks still come off
    with pytest.raises(ValueError, match="block outputs"), \
            steering.steer(pipe.unet, {site: vz[:, :1, :1]}, 0.5, start=0, stop=1), torch.no_grad():
        pipe.unet(z, 300, encoder_hidden_states=ctx)
    assert all(len(m._forward_hooks) == 0 for m in pipe.unet.modules())


def test_horizontal_moment():
    bg = scenes.render_scene([], "gray")
    right = scenes.render_scene([("circle", "red", 24.0, 16.0, 4.0)], "gray")
    left = scenes.render_scene([("circle", "red", 8.0, 16.0, 4.0)], "gray")  # the mirror image of `right`
    m = steering.horizontal_moment(np.stack([bg, right, left]), bg)
    assert m[0] == 0 and m[1] > 0.01
    np.testing.assert_allclose(m[2], -m[1], rtol=1e-5)
    # per-image backgrounds: a mosaic is no shape
    mosaic = captioned.poster_layout(np.random.default_rng(0))[1]
    on_mosaic = scenes.render_scene([("square", "blue", 24.0, 10.0, 4.0)], mosaic)
    m2 = steering.horizontal_moment(np.stack([mosaic, on_mosaic]), np.stack([mosaic, mosaic]))
    assert m2[0] == 0 and m2[1] > 0.01
    with pytest.raises(ValueError, match="backgrounds"):
        steering.horizontal_moment(np.stack([bg, right]), np.stack([bg, bg, bg]))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        steering.horizontal_moment(bg, bg)


def test_authors_window():
    assert steering.authors_window(40) == (18, 38)  # the authors' calls 18-37 of 40
    assert steering.authors_window(30) == (13, 28)
    with pytest.raises(ValueError):
        steering.authors_window(2)


def test_sweep_resumes_where_the_unsteered_run_left(pipe):
    """Sampling from the kept latents at step k gives the full run's samples, and a steered sweep changes
    only what the window steers."""
    prompts = ["the quiet harbor by tumiti", "a red circle above a blue square on a white background"]
    full = pipeline.generate(pipe, prompts, steps=6, seed=3, keep_step=2)
    resumed = pipeline.generate(pipe, prompts, steps=6, latents=full.latents_at, start_step=2)
    torch.testing.assert_close(resumed.images, full.images, rtol=1e-4, atol=1e-4)
    v = steering.concept_vectors(pipe, torch.rand(2, 3, 32, 32) * 2 - 1, "a", sites=["up_blocks.1.resnets.0"])
    runs = steering.sweep(pipe, v, [0.0, 3.0], prompts, full.latents_at, from_step=2, window=(3, 5), steps=6)
    torch.testing.assert_close(runs[0], full.images, rtol=1e-4, atol=1e-4)
    assert (runs[1] - full.images).abs().max() > 1e-3
    # the same steering from step 0, with the hook counting from 0, gives the same images
    with steering.steer(pipe.unet, v, 3.0, start=3, stop=5):
        direct = pipeline.generate(pipe, prompts, steps=6, seed=3).images
    torch.testing.assert_close(runs[1], direct, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="from_step"):
        steering.sweep(pipe, v, [1.0], prompts, full.latents_at, from_step=4, window=(3, 5), steps=6)
    with pytest.raises(ValueError, match="latents"):
        pipeline.generate(pipe, prompts, steps=6, start_step=2)


def test_steering_result_against_numpy():
    rng = np.random.default_rng(0)
    a = [0.0, 0.2, 0.3, 0.5]
    held = np.outer(a, rng.uniform(0.2, 0.4, 40)) + rng.normal(0, 0.01, (4, 40))
    cop = np.outer(a, rng.uniform(-0.01, 0.03, 40)) + rng.normal(0, 0.01, (4, 40))
    still = np.ones((4, 40), bool)
    still[1:, :10] = False
    r = steering.steering_result(a, held, cop, still)
    ac = np.asarray(a) - np.mean(a)
    h = (ac @ (held - held.mean(0))) / (ac @ ac)
    c = (ac @ (cop - cop.mean(0))) / (ac @ ac)
    assert r.heldout_slope == pytest.approx(h.mean()) and r.copies_slope == pytest.approx(c.mean())
    assert r.ratio == pytest.approx(h.mean() / abs(c.mean()))
    assert r.heldout_lo < r.heldout_slope < r.heldout_hi and r.separated and r.n == 40
    assert r.a_change == 0.2 and r.copies_kept == pytest.approx(0.75)
    with pytest.raises(ValueError, match="a_values starting at 0"):
        steering.steering_result([0.1, 0.2], held[:2], cop[:2], still[:2])
    # the overlap check reads the bounds; it refuses a result whose ``separated`` says otherwise
    with pytest.raises(ValueError, match="contradict separated"):
        steering.check_sweep_claims(dataclasses.replace(r, separated=False), h, c)


def test_representation_moves():
    r0 = np.zeros((3, 2))
    r1 = np.array([[3.0, 4.0], [3.0, 4.0], [3.0, -4.0]])
    m = steering.representation_moves(r0, r1, np.array([2.0, 0.0]))
    assert m.total == pytest.approx(5.0) and m.along == pytest.approx(3.0) and m.across == pytest.approx(4.0)
    assert m.of_mean == pytest.approx(np.hypot(3.0, 4.0 / 3))
    assert steering.representation_moves(r0, r1, np.array([1.0, 0.0]), scale=5.0).total == pytest.approx(1.0)
