from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 3

@test_case(points=None, hidden=False)
def test_q4_matches_course(detector_score, pipe, latent_noise, torch, np):
    from repdiff.sd import detection, pipeline
    from repdiff.grading import answer, assert_close
    size = pipe.vae.config.sample_size
    images = torch.rand((4, 3, size, size), generator=torch.Generator().manual_seed(3)) * 2 - 1
    eps = latent_noise(4, 5)
    got = answer(detector_score, pipe, images, 10, eps, eps)
    right, _ = detection.detector_scores(pipe, images, t=10, seed=5)
    z = pipeline.encode_images(pipe, images, generator=torch.Generator().manual_seed(5))

    def variant(site, pooling='max', latents=z):
        h = pipeline.features_at_t(pipe, latents, [site], t=10, pooling=pooling, seed=5)[site, pooling]
        return detection.spikiness(h, 'std')
    site = detection.DETECTION_SITE
    c = pipe.unet.up_blocks[0].resnets[2].conv2.in_channels
    assert_close('detector_score on four images at t = 10', got, right, rtol=0.0001, slips={'the sample Std (ddof = 1); use the population Std, as in your pooled_std': right * np.sqrt(c / (c - 1)), 'the output of conv2; hook its *input* (a forward pre-hook on conv2)': variant('up_blocks.0.resnets.2.conv2'), 'the output of the whole resnet; hook the input of its conv2': variant('up_blocks.0.resnets.2'), 'mean pooling; the detector max-pools over space': variant(site, 'mean'), "latents without the VAE's scaling factor": variant(site, latents=z / pipe.vae.config.scaling_factor)}, hint='Follow the five steps: posterior sample times scaling_factor, add_noise at t, empty prompt, the input of up_blocks[0].resnets[2].conv2, max pooling, population Std.')

@test_case(points=None, hidden=False)
def test_q4_hook_removed(detector_score, pipe, latent_noise, torch):
    from repdiff.grading import answer
    conv2 = pipe.unet.up_blocks[0].resnets[2].conv2
    before = len(conv2._forward_pre_hooks)
    size = pipe.vae.config.sample_size
    images = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(4)) * 2 - 1
    answer(detector_score, pipe, images, 10, latent_noise(2, 0), latent_noise(2, 1))
    assert len(conv2._forward_pre_hooks) == before, 'after detector_score returns, its hook is still on conv2: keep the handle that register_forward_pre_hook returns and call handle.remove() in a `finally:` block'

    def fail(module, args, output):
        raise RuntimeError('a failure made by the test inside the U-Net pass')
    trap = conv2.register_forward_hook(fail)
    try:
        try:
            detector_score(pipe, images, 10, latent_noise(2, 0), latent_noise(2, 1))
        except RuntimeError:
            pass
    finally:
        trap.remove()
    assert len(conv2._forward_pre_hooks) == before, 'when the U-Net pass fails, your hook stays on conv2 and every later pass keeps recording: remove it in a `finally:` block'

