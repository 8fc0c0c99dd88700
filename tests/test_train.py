"""repdiff.train: an interrupted run resumes exactly; recipes are checked; the shipped sweep shows the transition."""

import json

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from repdiff.datasets import DatasetNotAvailable  # noqa: E402
from repdiff.paths import data_path  # noqa: E402
from repdiff.train import load_recipe, main, train, train_config  # noqa: E402

RECIPE = {
    "name": "tiny",
    "data": {"name": "procedural", "n": 6, "size": 16},
    "model": {"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D"] * 2,
              "up_block_types": ["UpBlock2D"] * 2, "norm_num_groups": 4},
    "train": {"steps": 8, "batch_size": 4, "checkpoint_every": 2, "log_every": 2, "warmup_steps": 2},
}


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    full = train(RECIPE, output=tmp_path / "full", progress=False, cpu=True)
    assert full["finished"] and full["steps"] == 8 and full["sessions"] == 1
    part = train(RECIPE, output=tmp_path / "cut", max_steps=5, progress=False, cpu=True)
    assert not part["finished"] and (tmp_path / "cut" / "checkpoint" / "state.pt").is_file()
    assert not (tmp_path / "cut" / "model_index.json").exists()
    # the command line resumes it (the step-5 state was saved when the run stopped)
    assert main([json_path(tmp_path), "--output", str(tmp_path / "cut"), "--cpu"]) == 0
    rec = json.loads((tmp_path / "cut" / "record.json").read_text())
    assert rec["steps"] == 8 and rec["sessions"] == 2
    assert not (tmp_path / "cut" / "checkpoint").exists()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert rec["final_loss"] == pytest.approx(full["final_loss"])
    for key in ("wall_time_s", "device", "commit", "n_train", "loss_curve"):
        assert key in rec
    assert json.loads((tmp_path / "cut" / "recipe.json").read_text())["data"] == RECIPE["data"]


def json_path(tmp_path):
    p = tmp_path / "recipe.json"
    p.write_text(json.dumps(RECIPE))
    return str(p)


def test_resume_refuses_a_different_recipe(tmp_path):
    train(RECIPE, output=tmp_path / "r", max_steps=2, progress=False, cpu=True)
    other = json.loads(json.dumps(RECIPE))
    other["train"]["lr"] = 1e-4
    with pytest.raises(ValueError, match="different recipe"):
        train(other, output=tmp_path / "r", progress=False, cpu=True)


def test_bad_recipes_fail_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="'data' entry"):
        load_recipe({"name": "x"})
    with pytest.raises(ValueError, match="unknown train keys"):
        train_config({"data": {}, "train": {"epochs": 3}})
    with pytest.raises(FileNotFoundError):
        load_recipe(tmp_path / "missing.json")
    bad = dict(RECIPE, data={"name": "cifar10", "n": 10, "root": str(tmp_path / "none")})
    with pytest.raises(DatasetNotAvailable, match="download_cifar10"):
        train(bad, output=tmp_path / "c", progress=False, cpu=True)


def test_shipped_sweep_shows_the_transition():
    """The "done when" check: 64 samples, the saved scheduler, 50 steps, against each recipe's training set."""
    from repdiff.bench import transition_table

    root = data_path("unet_sweep", must_exist=False)
    if not (root / "n00004" / "model_index.json").is_file():
        pytest.skip("no shipped checkpoints")
    torch.set_num_threads(2)
    tmp = {}
    for name in ("n00004", "n08192"):
        (row,) = transition_table(root, n=64, steps=50, only=[name])
        tmp[name] = row["mem_fraction"]
    assert tmp["n00004"] >= 0.9
    assert tmp["n08192"] <= 0.1
