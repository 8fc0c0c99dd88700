"""repdiff._compat: the keyword diffusers' from_pretrained takes for the dtype, per version (Colab: 0.39)."""

import tempfile
import types

import pytest
import torch

from repdiff import _compat


@pytest.mark.parametrize("ver, key", [("0.39.0", "torch_dtype"), ("0.41.0", "torch_dtype"), ("0.42.1", "dtype"),
                                      ("0.43.0.dev0", "dtype"), ("1.0.0", "dtype")])
def test_dtype_keyword_follows_the_installed_diffusers(monkeypatch, ver, key):
    monkeypatch.setattr(_compat, "version", lambda dist: ver)
    assert _compat.diffusers_dtype_kwargs(torch.float16) == {key: torch.float16}


def test_dtype_keyword_for_the_installed_diffusers_loads_that_dtype():
    """The keyword chosen for the diffusers installed here really sets the dtype (0.39 ignores dtype=)."""
    pytest.importorskip("diffusers")
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8,), layers_per_block=1,
                       down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), norm_num_groups=4)
    with tempfile.TemporaryDirectory() as d:
        unet.save_pretrained(d)
        loaded = UNet2DModel.from_pretrained(d, **_compat.diffusers_dtype_kwargs(torch.float16))
    assert loaded.dtype == torch.float16


def test_check_pipeline_dtype_names_the_wrong_parts():
    part = types.SimpleNamespace  # diffusers' and transformers' models expose .dtype
    pipe = part(unet=part(dtype=torch.float16), vae=part(dtype=torch.float32), text_encoder=None)
    with pytest.raises(RuntimeError, match="vae is torch.float32"):
        _compat.check_pipeline_dtype(pipe, torch.float16)
    pipe.vae.dtype = torch.float16
    assert _compat.check_pipeline_dtype(pipe, torch.float16) is pipe
    with pytest.raises(TypeError):
        _compat.diffusers_dtype_kwargs("float16")
