"""repdiff.unets.model: parametrisation helpers, the VE denoiser wrapper, sampling with the saved scheduler, loading."""

import json
import math

import pytest
import torch

pytest.importorskip("diffusers")

from repdiff.paths import data_path  # noqa: E402
from repdiff.unets.model import (  # noqa: E402
    UNetDenoiser,
    build_scheduler,
    build_unet,
    check_memorization_sweep,
    ddim_vp_and_ve,
    eps_to_x0,
    generate,
    load_pipeline,
    save_pipeline,
    ve_sigmas,
    x0_to_eps,
)

TINY = {"model": {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"] * 2,
                  "up_block_types": ["UpBlock2D"] * 2, "norm_num_groups": 4}}


def _tiny():
    torch.manual_seed(0)
    return build_unet(TINY, (1, 16, 16)).eval(), build_scheduler(TINY)


def test_ve_sigmas_and_the_vp_ve_correspondence():
    _, sched = _tiny()
    abar = sched.alphas_cumprod
    sig = ve_sigmas(abar)
    assert sig.shape == (1000,) and bool((sig[1:] > sig[:-1]).all())
    # x_t = sqrt(abar) x0 + sqrt(1-abar) eps  <=>  x_t / sqrt(abar) = x0 + sigma eps
    t = 300
    x0, eps = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 4, 4, dtype=torch.float64)
    xt = abar[t].double().sqrt() * x0 + (1 - abar[t].double()).sqrt() * eps
    torch.testing.assert_close(xt / abar[t].double().sqrt(), x0 + sig[t] * eps)
    torch.testing.assert_close(eps_to_x0(x0 + sig[t] * eps, eps, sig[t]), x0)
    torch.testing.assert_close(x0_to_eps(x0 + sig[t] * eps, x0, sig[t]), eps)
    with pytest.raises(ValueError):
        x0_to_eps(x0, x0, 0.0)


def test_denoiser_wrapper_matches_the_unet_at_training_steps():
    unet, sched = _tiny()
    den = UNetDenoiser(unet, sched.alphas_cumprod)
    sig = ve_sigmas(sched.alphas_cumprod)
    t = 250
    assert den.timestep(float(sig[t])) == pytest.approx(t, abs=1e-6)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        eps = unet(x / math.sqrt(1 + float(sig[t]) ** 2), torch.full((3,), float(t))).sample
        torch.testing.assert_close(den(x, float(sig[t])), x - float(sig[t]) * eps, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="outside the trained range"):
        den(x, 1e-6)
    with pytest.raises(ValueError):
        den(x.reshape(3, -1), 1.0)


def test_generate_equals_the_pipelines_own_loop(tmp_path):
    unet, sched = _tiny()
    save_pipeline(unet, sched, tmp_path / "pipe")
    pipe = load_pipeline(tmp_path / "pipe")
    ours = generate(pipe, 3, seed=5, num_inference_steps=4, progress=False)
    ref = pipe(batch_size=3, num_inference_steps=4, generator=torch.Generator().manual_seed(5), output_type="np")
    torch.testing.assert_close(ours[:, 0], torch.from_numpy(ref.images[..., 0]) * 2 - 1, atol=1e-5, rtol=0)
    # same noise in, same samples out
    noise = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(generate(pipe, 3, noise=noise, num_inference_steps=4, progress=False), ours)


def test_load_pipeline_explains_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m repdiff.unets.train"):
        load_pipeline(tmp_path / "nope")


def test_shipped_checkpoints_load_offline():
    root = data_path("unet_sweep", must_exist=False)
    folders = sorted(p.parent for p in root.glob("*/model_index.json"))
    if not folders:
        pytest.skip("no shipped checkpoints")
    assert len(folders) >= 5
    for folder in folders:
        assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
        assert (folder / "scheduler" / "scheduler_config.json").is_file()
        assert (folder / "recipe.json").is_file() and (folder / "record.json").is_file()
    pipe = load_pipeline(folders[0])
    assert pipe.unet.config.sample_size == 16


def test_memorization_sweep_check_passes_on_the_recorded_sweep():
    rec = data_path("unet_sweep", "bench", "transition_50steps.json", must_exist=False)
    if not rec.is_file():
        pytest.skip("no shipped sweep record")
    fracs = {r["n_train"]: r["mem_fraction"] for r in json.loads(rec.read_text())["rows"]}
    check_memorization_sweep(fracs, copies_up_to=64, most_at=256, none_from=1024)
    with pytest.raises(ValueError):
        check_memorization_sweep(fracs, copies_up_to=256, most_at=64, none_from=1024)


def test_ddim_vp_and_ve_agree_on_a_tiny_unet():
    unet, sched = _tiny()

    class Pipe:  # the two attributes ddim_vp_and_ve reads
        pass

    pipe = Pipe()
    pipe.unet, pipe.scheduler = unet, sched
    noise = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    x, x_ve = ddim_vp_and_ve(pipe, noise, 10)
    assert torch.allclose(x, x_ve, atol=1e-3)
    with pytest.raises(ValueError, match="sigma_kind"):
        ddim_vp_and_ve(pipe, noise, 10, sigma_kind="edm")
