"""repdiff.sd_hub offline: clear failures without GPU/hub, caching, prompt parsing, SD v1.4's architecture."""

import numpy as np
import pytest
import torch

from repdiff import detection, sd_hub


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
    unet = UNet2DConditionModel.from_config(sd_hub.sd14_unet_config()).to(torch.bfloat16).eval()
    n_params = sum(p.numel() for p in unet.parameters())
    assert 855e6 < n_params < 865e6  # SD v1.4's U-Net has about 860M parameters
    z = torch.randn(1, 4, 16, 16, dtype=torch.bfloat16)  # a 128x128 image's latent keeps the test fast
    ctx = torch.randn(1, 77, 768, dtype=torch.bfloat16)
    with torch.no_grad(), detection.capture(unet, [detection.DETECTION_SITE]) as store:
        unet(z, 10, encoder_hidden_states=ctx)
    h = store[detection.DETECTION_SITE][0]
    assert h.shape[:2] == (1, 1280)
    assert detection.pool(h, "max").shape == (1, 1280)
    assert all(len(m._forward_pre_hooks) == 0 for m in unet.modules())
