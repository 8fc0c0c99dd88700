"""The hook API of repdiff.representations: records the right tensors and always removes its hooks."""

import pytest
import torch

from repdiff.representations import (
    ActivationRecorder,
    count_calls,
    edit_outputs,
    list_modules,
    pool,
    spatial_pool,
    unet_features,
)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 6)
        self.act = torch.nn.ReLU()  # used twice per forward, like diffusers' ResnetBlock2D.nonlinearity
        self.b = torch.nn.Linear(6, 6)

    def forward(self, x):
        return self.b(self.act(self.b(self.act(self.a(x)))))


def _n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_recorder_matches_a_manual_forward_and_removes_hooks():
    torch.manual_seed(0)
    net, x = Net(), torch.randn(3, 4)
    with ActivationRecorder(net, ["a", "act"]) as rec:
        assert _n_hooks(net) == 2
        net(x)
    assert _n_hooks(net) == 0
    h1 = net.a(x)
    torch.testing.assert_close(rec["a"], h1)
    torch.testing.assert_close(rec["act"], torch.relu(net.b(torch.relu(h1))))  # last call kept


def test_keep_all_records_every_call():
    net, x = Net(), torch.randn(2, 4)
    with ActivationRecorder(net, "act", keep="all") as rec:
        net(x)
        net(x)
    assert len(rec["act"]) == 4


def test_hooks_are_removed_when_the_body_raises():
    net = Net()
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationRecorder(net, ["a", "b"]):
            assert _n_hooks(net) == 2
            raise RuntimeError("boom")
    assert _n_hooks(net) == 0


def test_unknown_layer_names_are_refused_with_suggestions():
    net = Net()
    with pytest.raises(KeyError, match="close names"):
        with ActivationRecorder(net, ["a", "actt"]):
            pass
    assert _n_hooks(net) == 0
    with pytest.raises(ValueError):
        ActivationRecorder(net, [])


def test_list_modules_and_spatial_pool():
    assert list_modules(Net(), "a*") == ["a", "act"]
    h = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    torch.testing.assert_close(spatial_pool(h, "max"), h.amax(dim=(2, 3)))
    torch.testing.assert_close(spatial_pool(h, "mean"), h.mean(dim=(2, 3)))
    with pytest.raises(ValueError):
        spatial_pool(h, "median")


def test_unet_features_shapes_and_determinism():
    pytest.importorskip("diffusers")
    from repdiff.unets.model import build_scheduler, build_unet

    recipe = {"model": {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"] * 2,
                        "up_block_types": ["UpBlock2D"] * 2, "norm_num_groups": 4}}
    torch.manual_seed(0)
    unet = build_unet(recipe, (1, 16, 16)).eval()
    abar = build_scheduler(recipe).alphas_cumprod
    x0 = torch.rand(5, 1, 16, 16) * 2 - 1
    layers = ["mid_block", "up_blocks.0.resnets.0.nonlinearity"]
    f1 = unet_features(unet, abar, x0, 20, layers, batch_size=2)
    f2 = unet_features(unet, abar, x0, 20, layers)
    assert f1["mid_block"].shape == (5, 16)
    for name in layers:
        torch.testing.assert_close(f1[name], f2[name])
    assert _n_hooks(unet) == 0
    with pytest.raises(ValueError):
        unet_features(unet, abar, x0, 1000, layers)


def test_resnet_block_nonlinearity_runs_three_times_and_the_last_is_before_conv2():
    pytest.importorskip("diffusers")
    from repdiff.unets.model import build_unet

    torch.manual_seed(0)
    unet = build_unet({}, (1, 16, 16)).eval()
    name = "up_blocks.0.resnets.1.nonlinearity"
    conv2_in = {}
    block = unet.get_submodule("up_blocks.0.resnets.1")
    h = block.conv2.register_forward_pre_hook(lambda m, a: conv2_in.setdefault("x", a[0].detach()))
    try:
        with ActivationRecorder(unet, [name], keep="all") as rec, torch.no_grad():
            unet(torch.randn(2, 1, 16, 16), torch.tensor([10, 10]))
    finally:
        h.remove()
    calls = rec.outputs[name]
    assert len(calls) == 3  # after norm1, on the time embedding, after norm2
    assert calls[1].ndim == 2  # the time embedding (N, C_temb)
    assert torch.equal(calls[2], conv2_in["x"])  # dropout is the identity in eval mode


class Resnet(torch.nn.Module):
    """The part of diffusers' ResnetBlock2D that a ``post_norm2`` site reads: SiLU(GroupNorm2(.)) into conv2."""

    def __init__(self):
        super().__init__()
        self.norm2 = torch.nn.GroupNorm(2, 4)
        self.nonlinearity = torch.nn.SiLU()
        self.conv2 = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.conv2(self.nonlinearity(self.norm2(x)))


def test_post_norm2_site_is_the_input_of_conv2():
    net = torch.nn.Sequential(Resnet())
    x = torch.randn(2, 4, 3, 3)
    with ActivationRecorder(net, ["0.post_norm2", "0.conv2"]) as rec, torch.no_grad():
        net(x)
    torch.testing.assert_close(rec["0.post_norm2"], torch.nn.functional.silu(net[0].norm2(x)))
    torch.testing.assert_close(rec["0.conv2"], net(x))
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in net.modules()) == 0


def test_edit_outputs_and_count_calls():
    torch.manual_seed(0)
    net, x = Net(), torch.randn(3, 4)
    plain = net(x)
    with count_calls(net, first=5) as state, edit_outputs(net, {"a": lambda out: out * 0, "b": lambda out: None}):
        edited = net(x)
        net(x)
    assert state["calls"] == 7
    torch.testing.assert_close(edited, net.b(torch.relu(net.b(torch.zeros(3, 6)))))
    torch.testing.assert_close(net(x), plain)  # hooks gone
    assert _n_hooks(net) == 0 and sum(len(m._forward_pre_hooks) for m in net.modules()) == 0
    with pytest.raises(ValueError, match="outputs"):
        with edit_outputs(torch.nn.Sequential(Resnet()), {"0.post_norm2": lambda out: out}):
            pass


def test_pool_maps_and_tokens():
    h = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(pool(h, "mean"), h.mean(dim=(2, 3)))
    tokens = h.flatten(2).transpose(1, 2)  # (N, L, C), a transformer block's output
    torch.testing.assert_close(pool(tokens, "max"), h.amax(dim=(2, 3)))
    torch.testing.assert_close(spatial_pool(h, "max"), pool(h, "max"))
    with pytest.raises(ValueError, match="pooling"):
        pool(h, "median")
