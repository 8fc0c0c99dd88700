"""repdiff.sd.detection against independent computations, on a small random-weight pipeline."""

import numpy as np
import pytest
import torch

from repdiff import representations
from repdiff.representations import ActivationRecorder
from repdiff.sd import detection, pipeline


def test_post_norm2_equals_second_call_of_shared_nonlinearity(pipe):
    """The conv2 pre-hook sees SiLU(GroupNorm2(.)): the *last* of the three calls of the resnet's shared SiLU
    (after norm1, on the time embedding, after norm2)."""
    unet = pipe.unet
    calls = []
    h = unet.up_blocks[0].resnets[2].nonlinearity.register_forward_hook(lambda m, a, o: calls.append(o))
    z = torch.randn(3, 4, 8, 8)
    ctx = pipeline.encode_prompts(pipe, [""] * 3)
    try:
        with ActivationRecorder(unet, [detection.DETECTION_SITE], keep="all") as store, torch.no_grad():
            unet(z, 10, encoder_hidden_states=ctx)
    finally:
        h.remove()
    assert len(calls) == 3 and len(store[detection.DETECTION_SITE]) == 1
    torch.testing.assert_close(store[detection.DETECTION_SITE][0], calls[-1])
    assert calls[1].ndim == 2  # the time embedding


def test_hooks_removed_even_on_error(pipe):
    unet = pipe.unet
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    with pytest.raises(RuntimeError, match="boom"), ActivationRecorder(unet, [detection.DETECTION_SITE,
                                                                           "up_blocks.1.resnets.0"], keep="all"):
        raise RuntimeError("boom")
    after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    assert before == after
    with pytest.raises(KeyError, match="no module"), ActivationRecorder(unet, ["up_blocks.9.resnets.0"], keep="all"):
        pass


def test_pool_and_scores_against_numpy():
    rng = np.random.default_rng(0)
    h = torch.from_numpy(rng.standard_normal((4, 6, 3, 5)))
    np.testing.assert_allclose(representations.pool(h, "max").numpy(), h.numpy().reshape(4, 6, -1).max(-1))
    np.testing.assert_allclose(representations.pool(h, "mean").numpy(), h.numpy().reshape(4, 6, -1).mean(-1))
    v = np.abs(rng.standard_normal((5, 20))) + 0.1
    np.testing.assert_allclose(detection.spikiness(v, "std"), v.std(1))
    np.testing.assert_allclose(detection.spikiness(v, "inv_pr"), 20 * (v**4).sum(1) / (v**2).sum(1) ** 2)
    np.testing.assert_allclose(detection.spikiness(v, "l4_l2"), (v**4).sum(1) ** 0.25 / np.sqrt((v**2).sum(1)))
    one_hot = np.eye(20)[:1]
    assert detection.spikiness(one_hot, "inv_pr")[0] == pytest.approx(20)
    with pytest.raises(ValueError, match="NaN"):
        detection.spikiness(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="pooling"):
        representations.pool(h, "median")
    with pytest.raises(ValueError, match="score"):
        detection.spikiness(v, "kurtosis")


def test_generate_matches_diffusers_pipeline(pipe):
    prompts = ["the hidden orchard by kalomir", "a red circle above a blue square on a gray background"]
    g = pipeline.generate(pipe, prompts, steps=4, guidance=7.5, seed=5)
    ref = pipe(prompts, num_inference_steps=4, guidance_scale=7.5, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(5)).images
    ours = (g.images.numpy().transpose(0, 2, 3, 1) + 1) / 2
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    d, secs = detection.wen_scores(pipe, prompts, steps=4, seed=5)
    np.testing.assert_allclose(d, g.wen_first, rtol=1e-5)
    assert secs > 0 and g.seconds_per_sample > 0
    # a prompt started again from its own recorded noise, alone and in another place, gives the same image
    again = pipeline.generate(pipe, prompts[::-1], steps=4, guidance=7.5, latents=g.latents0.flip(0))
    torch.testing.assert_close(again.images, g.images.flip(0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="one per prompt"):
        pipeline.generate(pipe, prompts, steps=4, latents=g.latents0[:1])


def test_detector_independent_of_batching(pipe):
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    s1, _ = detection.detector_scores(pipe, x, seed=1)
    z = pipeline.encode_images(pipe, x, generator=torch.Generator().manual_seed(1))
    # independent: add_noise by hand, one image at a time, hook the shared SiLU's second call
    ab = pipe.scheduler.alphas_cumprod[10]
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(z.shape, generator=gen)
    zt = ab.sqrt() * z + (1 - ab).sqrt() * noise
    ctx = pipeline.encode_prompts(pipe, [""])
    s2 = []
    for i in range(5):
        calls: list[torch.Tensor] = []
        h = pipe.unet.up_blocks[0].resnets[2].nonlinearity.register_forward_hook(
            lambda m, a, o, calls=calls: calls.append(o))
        with torch.no_grad():
            pipe.unet(zt[i:i + 1], 10, encoder_hidden_states=ctx)
        h.remove()
        v = calls[-1].amax(dim=(2, 3))[0].double().numpy()
        s2.append(v.std())
    np.testing.assert_allclose(s1, s2, rtol=1e-4)


def test_bad_inputs(pipe):
    with pytest.raises(ValueError, match="shape"):
        pipeline.encode_images(pipe, torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        pipeline.encode_images(pipe, torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="timestep"):
        pipeline.renoise(pipe, torch.zeros(1, 4, 8, 8), 1000, torch.Generator())
    with pytest.raises(ValueError, match="steps"):
        pipeline.generate(pipe, ["a"], steps=0)
    with pytest.raises(ValueError, match="context"):  # one empty-prompt and one prompt state per latent
        pipeline.guided_pass(pipe, torch.zeros(2, 4, 8, 8), 10, pipeline.encode_prompts(pipe, ["", "a", "b"]))


def test_clean_estimate_error_against_ddim_scheduler(pipe):
    """ẑ₀ and its relative error against DDIMScheduler.step's pred_original_sample, on the same noisy input."""
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(5, pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size,
                     generator=g)
    prompts = ["a red circle", "", "a blue square", "", "a"]
    ts = [10, 500, 999]
    err = pipeline.clean_estimate_error(pipe, z0, prompts, ts, seed=4)
    assert err.shape == (3, 5)
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(pipe.scheduler.config.num_train_timesteps)
    with torch.no_grad():
        ctx = pipeline.encode_prompts(pipe, prompts)
        for k, t in enumerate(ts):
            zt = pipeline.renoise(pipe, z0, t, torch.Generator().manual_seed(4 + k))
            eps = pipe.unet(zt, t, encoder_hidden_states=ctx).sample
            z0_hat = sched.step(eps, t, zt).pred_original_sample
            ref = ((z0_hat - z0) ** 2).flatten(1).sum(1) / (z0 ** 2).flatten(1).sum(1)
            np.testing.assert_allclose(err[k], ref.numpy(), rtol=1e-4)
    # batching does not change the result
    np.testing.assert_allclose(pipeline.clean_estimate_error(pipe, z0, prompts, ts, seed=4, batch_size=2), err,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="one prompt per latent"):
        pipeline.clean_estimate_error(pipe, z0, prompts[:2], ts)
    with pytest.raises(ValueError, match="shape"):
        pipeline.clean_estimate_error(pipe, z0[0], prompts, ts)


def test_decode_latents_matches_vae_and_batching(pipe):
    z = torch.randn(5, pipe.unet.config.in_channels, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
    np.testing.assert_allclose(pipeline.decode_latents(pipe, z, batch_size=2).numpy(), ref.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        pipeline.decode_latents(pipe, z[0])


def test_images_in_the_ecosystems_conventions(pipe):
    """[0, 1] tensors and NHWC arrays (diffusers' output_type "pt"/"np"), uint8 and PIL images all give the
    scores of the same images in [-1, 1]."""
    from PIL import Image

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref, _ = detection.detector_scores(pipe, x, seed=2)
    unit = (x + 1) / 2
    s_pt, _ = detection.detector_scores(pipe, unit, seed=2, value_range=(0, 1))
    s_np, _ = detection.detector_scores(pipe, unit.permute(0, 2, 3, 1).numpy(), seed=2, value_range=(0, 1))
    np.testing.assert_allclose(s_pt, ref, rtol=1e-4)
    np.testing.assert_allclose(s_np, ref, rtol=1e-4)
    u8 = (unit * 255).round().to(torch.uint8)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]
    s_u8, _ = detection.detector_scores(pipe, u8, seed=2)
    s_pil, _ = detection.detector_scores(pipe, pil, seed=2)
    np.testing.assert_allclose(s_u8, s_pil)
    np.testing.assert_allclose(s_u8, ref, rtol=0.05)  # 8-bit rounding only
    torch.testing.assert_close(pipeline.as_model_images(u8), u8.float() / 127.5 - 1)


def test_range_that_does_not_match_raises(pipe):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match="outside the declared"):
        detection.detector_scores(pipe, x, value_range=(0, 1))  # [-1, 1] data declared [0, 1]
    with pytest.raises(ValueError, match="outside the declared"):
        pipeline.as_model_images(x.clamp(min=-0.06) * 0 - 0.06, value_range=(0, 1))
    with pytest.raises(ValueError, match="outside the declared"):
        pipeline.as_model_images(x * 255)  # [0, 255] floats taken for [-1, 1]
    with pytest.raises(ValueError, match="uint8"):
        pipeline.as_model_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), value_range=(0, 1))
    with pytest.raises(ValueError, match="high > low"):
        pipeline.as_model_images(x, value_range=(1, 0))
    # a [0, 1] batch declared [-1, 1] on purpose is accepted (it is in range), and maps to itself
    torch.testing.assert_close(pipeline.as_model_images((x + 1) / 2, value_range=(-1, 1)), (x + 1) / 2)
