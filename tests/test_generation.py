"""repdiff.sd.pipeline.generate is diffusers' StableDiffusionPipeline written out (Chapters 12-14).

``scripts/test.sh`` also runs this file in ``.venv-colab`` (Google Colab's diffusers and transformers): the
build's shared screening (:mod:`repdiff.sd.screening`) is computed by whichever chapter asks first, so this is
what tests the course's sampling loop with Colab's versions.
"""

import numpy as np
import torch

from repdiff.paths import data_path
from repdiff.sd import pipeline, tiny_sd


def test_generate_is_plain_stable_diffusion_from_the_same_noise():
    """Same prompts, same starting noise: the course's loop and ``pipe(...)`` give the same images (to 1e-4).

    Negative controls: the next prompt's image differs by more than 0.1, and the course's loop at guidance 5
    differs from diffusers' at 7.5 (a wrong guidance formula or scale would be caught).
    """
    from diffusers import StableDiffusionPipeline

    path = data_path("tiny_sd")
    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)  # plain diffusers, offline
    pipe.set_progress_bar_config(disable=True)
    prompts = [tiny_sd.read_prompts(kind, path)[0] for kind in ("memorized", "control", "held_out")]
    ours = pipeline.generate(pipe, prompts, steps=30, guidance=7.5, seed=3)
    plain = pipe(prompts, num_inference_steps=30, guidance_scale=7.5, height=32, width=32, output_type="pt",
                 latents=ours.latents0).images * 2 - 1
    diff = (ours.images - plain).flatten(1).abs().amax(1)
    assert diff.max() < 1e-4, f"largest pixel difference per image: {diff.tolist()}"
    assert (ours.images - plain.roll(1, 0)).flatten(1).abs().amax(1).min() > 0.1
    weaker = pipeline.generate(pipe, prompts, steps=30, guidance=5.0, seed=3)
    assert (weaker.images - plain).flatten(1).abs().amax(1).min() > 0.05
    assert np.isfinite(ours.wen_first).all() and torch.equal(weaker.latents0, ours.latents0)
