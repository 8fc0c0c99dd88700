"""repdiff.sd.hub offline: clear failures without GPU/hub, the loader on a fake hub folder (fp16 variant, dtype
keyword of old and new diffusers), T4 batch bounds and chunking, resumable caches, SD v1.4's architecture, and
scripts/gpu_check.sh's CPU mode (repdiff.sd.gpu_check)."""

import json
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_random_sd_pipeline

from repdiff import representations
from repdiff.representations import ActivationRecorder
from repdiff.sd import detection, gpu_memory, random_sd14, steering
from repdiff.sd import gpu_check as sd_gpu_check
from repdiff.sd import hub as sd_hub


def test_clear_message_without_gpu_or_hub(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(sd_hub.HubUnavailable, match="GPU and the Hugging Face hub"):
        sd_hub.require_gpu_and_hub(check_hub=lambda: False)
    with pytest.raises(sd_hub.HubUnavailable, match="no CUDA GPU"):
        sd_hub.load_sd14()  # fails before any download


def test_offline_env_means_no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert sd_hub.hub_reachable() is False
    with pytest.raises(sd_hub.HubUnavailable, match="hub cannot be reached"):
        sd_hub.require_gpu_and_hub(need_gpu=False)


def test_parse_jsonl():
    text = '{"caption": "Living in the Light", "index": 1}\n\n{"caption": "b"}\n'
    assert sd_hub.parse_jsonl_captions(text) == ["Living in the Light", "b"]
    with pytest.raises(ValueError, match="caption"):
        sd_hub.parse_jsonl_captions('{"text": "x"}')


def test_memorized_prompts_read_from_cache(tmp_path):
    (tmp_path / "sdv1_500_memorized.jsonl").write_text('{"caption": "p0"}\n{"caption": "p1"}\n')
    assert sd_hub.memorized_prompts(1, cache_dir=tmp_path) == ["p0"]


def test_generation_cache_resumes(tmp_path):
    calls = []

    def fake(prompt, seed):
        calls.append((prompt, seed))
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)

    a = sd_hub.generate_cached(fake, ["x", "y", "z"], tmp_path, tag="mem", seed=10, progress=False)
    assert a.shape == (3, 3, 8, 8) and calls == [("x", 10), ("y", 11), ("z", 12)]
    (tmp_path / "mem_0001_s11.png").unlink()  # an interrupted run: one image missing
    b = sd_hub.generate_cached(fake, ["x", "y", "z"], tmp_path, tag="mem", seed=10, progress=False)
    assert calls[3:] == [("y", 11)]
    np.testing.assert_array_equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_sd14_unet_detection_site_is_1280_dimensional():
    """The full SD v1.4 U-Net, built from its config with random weights (no download)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(random_sd14.sd14_unet_config()).to(torch.bfloat16).eval()
    n_params = sum(p.numel() for p in unet.parameters())
    assert 855e6 < n_params < 865e6  # SD v1.4's U-Net has about 860M parameters
    z = torch.randn(1, 4, 16, 16, dtype=torch.bfloat16)  # a 128x128 image's latent keeps the test fast
    ctx = torch.randn(1, 77, 768, dtype=torch.bfloat16)
    with torch.no_grad(), ActivationRecorder(unet, [detection.DETECTION_SITE], keep="all") as store:
        unet(z, 10, encoder_hidden_states=ctx)
    h = store[detection.DETECTION_SITE][0]
    assert h.shape[:2] == (1, 1280)
    assert representations.pool(h, "max").shape == (1, 1280)
    assert all(len(m._forward_pre_hooks) == 0 for m in unet.modules())


# ----------------------------------------------------------------------------------------------- the loader
@pytest.mark.parametrize(("version", "keyword"), [("0.39.0", "torch_dtype"), ("0.41.9", "torch_dtype"),
                                                  ("0.42.0", "dtype"), ("0.42.1", "dtype"), ("1.0.0rc1", "dtype"),
                                                  ("0.43.0.dev0", "dtype")])
def test_dtype_keyword_follows_the_diffusers_version(version, keyword):
    assert sd_hub.dtype_keyword(sd_hub._parse_version(version)) == keyword


def test_parse_version():
    assert sd_hub._parse_version("2.11.0+cu126") == (2, 11, 0)
    assert sd_hub._parse_version("1.0.0rc1") == (1, 0, 0)
    with pytest.raises(ValueError, match="not a version"):
        sd_hub._parse_version("dev")


def _unet_probe(pipe) -> torch.Tensor:
    return pipe.unet.conv_in.bias.detach().float().cpu().clone()


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
    """A folder in the hub's layout: full-precision weights and, with other U-Net weights, an ``fp16`` variant."""
    folder = tmp_path_factory.mktemp("fake_sd14")
    pipe = tiny_random_sd_pipeline()
    pipe.save_pretrained(folder)
    full = _unet_probe(pipe)
    with torch.no_grad():
        pipe.unet.conv_in.bias += 1.0  # the variant's weights differ, so the test sees which file was read
    pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()
    return folder, full, full + 1.0


@pytest.fixture
def spy_from_pretrained(monkeypatch):
    """Record the keyword arguments of StableDiffusionPipeline.from_pretrained (and call the real one)."""
    from diffusers import StableDiffusionPipeline

    real = StableDiffusionPipeline.from_pretrained.__func__
    seen: list[dict] = []

    def spy(cls, *args, **kwargs):
        seen.append(dict(kwargs))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", classmethod(spy))
    return seen


@pytest.mark.parametrize(("version", "keyword"), [((0, 39, 0), "torch_dtype"), ((0, 42, 1), "dtype")])
def test_loader_reads_fp16_variant_in_fp16(fake_hub, spy_from_pretrained, monkeypatch, version, keyword):
    """Under Colab's diffusers (0.39: ``torch_dtype``) and the pin (0.42: ``dtype``) the U-Net ends up fp16, read
    from the ``fp16`` files."""
    folder, _, variant_bias = fake_hub
    monkeypatch.setattr(sd_hub, "diffusers_version", lambda: version)
    pipe = sd_hub.load_sd14("cpu", torch.float16, model_id=folder, verbose=False)
    assert spy_from_pretrained[-1][keyword] == torch.float16 and spy_from_pretrained[-1]["variant"] == "fp16"
    assert {"dtype", "torch_dtype"} - {keyword} - set(spy_from_pretrained[-1]) == {"dtype", "torch_dtype"} - {keyword}
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.float16
    torch.testing.assert_close(_unet_probe(pipe), variant_bias, rtol=0, atol=1e-3)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.safety_checker is None


def test_loader_reads_full_precision_files_in_fp32(fake_hub):
    folder, full_bias, _ = fake_hub
    pipe = sd_hub.load_sd14("cpu", torch.float32, model_id=folder, verbose=False)
    assert pipe.unet.dtype == torch.float32
    torch.testing.assert_close(_unet_probe(pipe), full_bias)


def test_loader_rejects_a_dtype_the_library_ignored(fake_hub, monkeypatch):
    """What diffusers < 0.42 does with ``dtype=`` (drops it: fp32 weights) must not pass silently."""
    from diffusers import StableDiffusionPipeline

    folder, _, _ = fake_hub
    real = StableDiffusionPipeline.from_pretrained.__func__

    def ignores_dtype(cls, *args, **kwargs):
        kwargs.pop("dtype", None)
        kwargs.pop("torch_dtype", None)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", classmethod(ignores_dtype))
    with pytest.raises(RuntimeError, match="was not understood"):
        sd_hub.load_sd14("cpu", torch.float16, model_id=folder, verbose=False)


def test_local_folder_needs_a_gpu_for_cuda(fake_hub, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(sd_hub.HubUnavailable, match="no CUDA GPU"):
        sd_hub.load_sd14("cuda", model_id=fake_hub[0], verbose=False)


# ----------------------------------------------------------------------------------------------- T4 bounds
def test_batch_limit_scales_with_pixels_dtype_and_memory():
    gib = 2**30
    n512 = gpu_memory.batch_limit("vae_decode", 512, 512, free_bytes=10 * gib, cap=1000)
    assert n512 == int(10 * gib * 0.8 // gpu_memory.PER_ITEM_BYTES["vae_decode"])
    assert gpu_memory.batch_limit("vae_decode", 256, 256, free_bytes=10 * gib, cap=1000) in range(4 * n512 - 4,
                                                                                                4 * n512 + 5)
    assert gpu_memory.batch_limit("vae_decode", 512, 512, free_bytes=10 * gib, dtype=torch.float32,
                              cap=1000) == n512 // 2
    assert gpu_memory.batch_limit("unet", free_bytes=1) == 1  # never 0
    assert gpu_memory.batch_limit("unet", free_bytes=1000 * gib, cap=8) == 8
    with pytest.raises(ValueError, match="kind"):
        gpu_memory.batch_limit("clip", free_bytes=gib)


def test_t4_batch_sizes_leave_room_for_the_weights(monkeypatch):
    fake = SimpleNamespace(unet=SimpleNamespace(dtype=torch.float16))
    monkeypatch.setattr(gpu_memory, "model_bytes", lambda pipe: gpu_memory.T4_BYTES + 1)
    with pytest.raises(ValueError, match="does not leave memory"):
        gpu_memory.t4_batch_sizes(fake)
    monkeypatch.setattr(gpu_memory, "model_bytes", lambda pipe: 2 * 2**30)  # SD v1.4's weights in fp16
    sizes = gpu_memory.t4_batch_sizes(fake)
    free = gpu_memory.T4_BYTES - 2 * 2**30
    for kind, key in (("vae_decode", "decode"), ("vae_encode", "encode")):
        assert sizes[key] * gpu_memory.PER_ITEM_BYTES[kind] <= 0.8 * free
    assert 2 * sizes["generate"] * gpu_memory.PER_ITEM_BYTES["unet"] <= 0.8 * free
    assert sizes["generate"] * gpu_memory.PER_ITEM_BYTES["vae_decode"] <= 0.8 * free  # generate decodes its batch
    assert all(1 <= v <= 16 for v in sizes.values())


def test_chunked_splits_and_joins():
    seen = []

    def f(x):
        seen.append(len(x))
        return x * 2, (x.sum(1) if isinstance(x, torch.Tensor) else np.asarray(x).sum(1))

    x = torch.arange(30.0).reshape(10, 3)
    a, b = gpu_memory.chunked(f, x, 4)
    assert seen == [4, 4, 2]
    torch.testing.assert_close(a, x * 2)
    torch.testing.assert_close(b, x.sum(1))
    assert gpu_memory.chunked(lambda p: [s.upper() for s in p], ["a", "b", "c"], 2) == ["A", "B", "C"]
    with pytest.raises(ValueError, match="batch_size"):
        gpu_memory.chunked(f, x, 0)



def _image_size(pipe) -> int:
    return pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)


@contextmanager
def batch_sizes_seen(pipe):
    """Record the batch size of every U-Net call and VAE encode/decode call."""
    seen = {"unet": [], "encode": [], "decode": []}
    handles = [pipe.unet.register_forward_pre_hook(lambda m, a, kw: seen["unet"].append(len(a[0] if a else
                                                                                           kw["sample"])),
                                                   with_kwargs=True)]
    enc, dec = pipe.vae.encode, pipe.vae.decode

    def encode(x, *a, **k):
        seen["encode"].append(len(x))
        return enc(x, *a, **k)

    def decode(z, *a, **k):
        seen["decode"].append(len(z))
        return dec(z, *a, **k)

    pipe.vae.encode, pipe.vae.decode = encode, decode
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()
        del pipe.vae.encode, pipe.vae.decode


def test_gpu_check_layer_bounds_every_batch(pipe):
    """The calls of the chapters' API that gpu_check (and Colab) make stay within the batch size they are given."""
    imgs = torch.rand(5, 3, _image_size(pipe), _image_size(pipe)) * 2 - 1
    with batch_sizes_seen(pipe) as seen:
        s, _ = sd_gpu_check.api_detect(pipe, imgs, batch_size=2)
    assert len(s) == 5 and seen == {"unet": [2, 2, 1], "encode": [2, 2, 1], "decode": []}
    with batch_sizes_seen(pipe) as seen:
        g = sd_gpu_check.api_generate(pipe, ["a", "b", "c"], steps=2, guidance=7.5, seed=0, batch_size=2)
    assert g.images.shape[0] == 3 and seen["unet"] == [4, 4, 2, 2] and seen["decode"] == [2, 1]
    with batch_sizes_seen(pipe) as seen:
        v = sd_gpu_check.api_concept_vectors(pipe, imgs, "a", batch_size=2)
    assert max(seen["encode"]) <= 2 and max(seen["unet"]) <= 2 and sum(seen["encode"]) == 5
    assert set(v) == set(steering.STEERING_SITES)


def test_chunked_concept_vectors_are_the_mean_over_all_references(pipe):
    """Chunking changes only which posterior/noise sample each reference gets, not what is averaged: with one chunk
    the layer gives exactly concept_vectors; with chunks, the size-weighted mean of the chunks' vectors."""
    imgs = torch.rand(5, 3, _image_size(pipe), _image_size(pipe)) * 2 - 1
    whole = sd_gpu_check.api_concept_vectors(pipe, imgs, "a", batch_size=5)
    ref = steering.concept_vectors(pipe, imgs, "a", steering.STEERING_SITES, t=10, seed=0)
    for site in ref:
        torch.testing.assert_close(whole[site], ref[site])
    parts = sd_gpu_check.api_concept_vectors(pipe, imgs, "a", batch_size=3)
    a = steering.concept_vectors(pipe, imgs[:3], "a", steering.STEERING_SITES, t=10, seed=0)
    b = steering.concept_vectors(pipe, imgs[3:], "a", steering.STEERING_SITES, t=10, seed=1)
    expected = {site: (3 * a[site] + 2 * b[site]) / 5 for site in a}
    for site in ref:
        torch.testing.assert_close(parts[site], expected[site])


def test_estimate_run_times_a_pass(pipe):
    est = gpu_memory.estimate_run(pipe, 5, steps=3, batch_size=2, verbose=False)
    assert est["seconds"] == pytest.approx(3 * (3 * est["seconds_per_unet_pass"] + est["seconds_per_decode"]))
    assert np.isnan(est["peak_bytes"])  # no GPU here
    with pytest.raises(ValueError, match="steps"):
        gpu_memory.estimate_run(pipe, 5, steps=0, batch_size=2)


# ----------------------------------------------------------------------------------------------- caches
def test_batched_cache_resumes_after_an_interruption(tmp_path):
    calls = []

    def fake(prompts, seeds):
        calls.append(list(seeds))
        if len(calls) == 2 and seeds[0] == 12:
            raise KeyboardInterrupt  # the session disconnects during the second batch
        return [np.random.default_rng(s).random((8, 8, 3)) for s in seeds]

    prompts = list("abcde")
    with pytest.raises(KeyboardInterrupt):
        sd_hub.generate_cached_batches(fake, prompts, tmp_path, tag="gen", seed=10, batch_size=2, progress=False)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["gen_0000_s10.png", "gen_0001_s11.png"]
    a = sd_hub.generate_cached_batches(fake, prompts, tmp_path, tag="gen", seed=10, batch_size=2, progress=False)
    assert calls[2:] == [[12, 13], [14]] and a.shape == (5, 3, 8, 8)
    # another batch size reads the same files and generates nothing
    b = sd_hub.generate_cached_batches(fake, prompts, tmp_path, tag="gen", seed=10, batch_size=3, progress=False)
    assert len(calls) == 4
    np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp.png"))
    with pytest.raises(ValueError, match="3 images for 2 prompts"):
        sd_hub.generate_cached_batches(lambda p, s: [np.zeros((8, 8, 3))] * 3, ["x", "y"], tmp_path, tag="bad",
                                       batch_size=2, progress=False)


def test_pipeline_batch_generator_one_seed_per_prompt(pipe, tmp_path):
    """An image depends on its prompt and seed, not on the batch it was generated in."""
    gen = sd_hub.pipeline_batch_generator(pipe, steps=2, guidance=7.5)
    both = gen(["a red circle", "a blue square"], [3, 4])
    alone = gen(["a blue square"], [4])
    assert both.shape == (2, _image_size(pipe), _image_size(pipe), 3) and 0 <= both.min() and both.max() <= 1
    np.testing.assert_allclose(both[1], alone[0], atol=1e-4)
    assert np.abs(both[0] - both[1]).max() > 1e-3


def test_cached_array(tmp_path):
    calls = []
    f = tmp_path / "scores.npy"
    a = sd_hub.cached_array(f, lambda: calls.append(1) or np.arange(3.0))
    b = sd_hub.cached_array(f, lambda: calls.append(1) or np.zeros(3))
    np.testing.assert_array_equal(a, b)
    assert calls == [1]
    with pytest.raises(ValueError, match=".npy"):
        sd_hub.cached_array(tmp_path / "x.npz", lambda: 0)


# ----------------------------------------------------------------------------------------------- gpu_check
def test_small_random_sd14_keeps_the_layout():
    p = random_sd14.random_sd14_pipeline(small=True)
    names = dict(p.unet.named_modules())
    assert detection.DETECTION_SITE.rsplit(".", 1)[0] in names and all(s in names for s in steering.STEERING_SITES)
    assert p.tokenizer.model_max_length == 77 and p.text_encoder.config.vocab_size == 49408
    assert p.unet.config.sample_size * 2 ** (len(p.vae.config.block_out_channels) - 1) == 64
    assert len(p.unet.up_blocks) == 4 and len(p.unet.up_blocks[0].resnets) == 3


def test_gpu_check_cpu_small_passes(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert sd_gpu_check.main(["--cpu-small", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [s["name"] for s in res["stages"]] == ["build", "load", "probe", "estimate", "generate", "pipeline",
                                                   "detector", "wen", "concept", "steering"]
    assert all(not s["error"] for s in res["stages"]) and not res["failed"]
    assert "GPU CHECK PASSED" in capsys.readouterr().out


def test_gpu_check_fails_when_steering_does_nothing(tmp_path, monkeypatch, capsys):
    """A steering hook that adds nothing (or a stage that raises) must make the check exit non-zero."""

    @contextmanager
    def inert(unet, vectors, a, *, start, stop):
        state = {"calls": 0}
        h = unet.register_forward_pre_hook(lambda m, args: state.__setitem__("calls", state["calls"] + 1))
        try:
            yield state
        finally:
            h.remove()

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(sd_gpu_check, "api_steer", inert)
    monkeypatch.setattr(sd_gpu_check, "api_wen", broken)
    out = tmp_path / "check.json"
    assert sd_gpu_check.main(["--cpu-small", "--json", str(out)]) == 1
    res = json.loads(out.read_text())
    assert res["failed"] == ["wen", "steering"]
    assert "steering changed nothing" in next(s["error"] for s in res["stages"] if s["name"] == "steering")
    assert "GPU CHECK FAILED" in capsys.readouterr().out


def test_over_budget():
    r = [sd_gpu_check.StageResult("a", peak_allocated=1.0, peak_reserved=2.0),
         sd_gpu_check.StageResult("b", peak_allocated=3.0, peak_reserved=5.0),
         sd_gpu_check.StageResult("c")]  # a CPU stage: no figures
    assert sd_gpu_check.over_budget(r, 4.0) == ["b"]
    assert sd_gpu_check.over_budget(r, 1.5) == ["a", "b"]


def test_a_lost_connection_is_hub_unavailable(monkeypatch):
    """A download that fails after the hub answered says so clearly (not a bare OSError deep in the hub client)."""
    from diffusers import StableDiffusionPipeline

    def offline(cls, *args, **kwargs):
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(sd_hub, "require_gpu_and_hub", lambda **kw: None)
    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", classmethod(offline))
    with pytest.raises(sd_hub.HubUnavailable, match="could not download .*resume"):
        sd_hub.load_sd14("cpu", verbose=False)

    def bug(cls, *args, **kwargs):
        raise TypeError("a bug, not the network")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", classmethod(bug))
    with pytest.raises(TypeError, match="a bug"):
        sd_hub.load_sd14("cpu", verbose=False)


def test_gpu_check_launcher_needs_only_the_check_modules():
    """scripts/gpu_check.py loads the check without repdiff/__init__.py: a bare GPU image lacks matplotlib etc."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path.insert(0, 'scripts'); import gpu_check; gpu_check.light_import(); "
            "import repdiff.sd.gpu_check; "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'ipywidgets', 'repdiff.plotting') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    bad = subprocess.run([sys.executable, "scripts/gpu_check.py", "--no-such-flag"], cwd=root, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "--cpu-small" in bad.stderr


def test_sd14_configs_give_sd14_parameter_counts():
    """U-Net, VAE and CLIP text encoder built from the configs (on the meta device: no memory, no download)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        parts = {"unet": UNet2DConditionModel.from_config(random_sd14.sd14_unet_config()),
                 "vae": AutoencoderKL.from_config(random_sd14.sd14_vae_config()),
                 "text_encoder": CLIPTextModel(CLIPTextConfig(**random_sd14.sd14_text_config()))}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    assert counts == sd_hub.SD14_PARAMETERS
    assert 2.0 < sd_hub._sd14_download_gb(torch.float16, "fp16") < 2.2  # fp16 weights without the safety checker
