"""repdiff.unets.train: an interrupted run resumes exactly; recipes are checked; the shipped sweep shows the
transition."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from diffusers import UNet2DModel  # noqa: E402

import repdiff.unets.train as T  # noqa: E402
from repdiff.data.real import DatasetNotAvailable  # noqa: E402
from repdiff.paths import data_path  # noqa: E402
from repdiff.unets.train import load_recipe, main, train, train_config  # noqa: E402

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
    tmp = {}
    for name in ("n00004", "n08192"):
        (row,) = transition_table(root, n=64, steps=50, only=[name])
        tmp[name] = row["mem_fraction"]
    assert tmp["n00004"] >= 0.9
    assert tmp["n08192"] <= 0.1


# --- several processes (Accelerate, gloo on CPU) ------------------------------------------------------------

WORKER = r'''
"""Run by `torchrun --nproc_per_node 2`: train a few steps, stop, resume; dump what each rank saw."""
import json
import os
import shutil
import sys

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import repdiff.unets.train as T

recipe, out, k, dump = json.loads(open(sys.argv[1]).read()), sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
seen, grads, models = [], [], []
share = T._process_share
T._process_share = lambda draws, p, n: seen.append(share(draws, p, n)[0].tolist()) or share(draws, p, n)
build = T.build_unet
T.build_unet = lambda *a, **kw: models.append(build(*a, **kw)) or models[-1]
register_optimizer_step_pre_hook(
    lambda opt, args, kwargs: grads.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
rank = int(os.environ["RANK"])  # set by torchrun (creating Accelerate's state here would pin it to one process)
for part, steps in (("part", k), ("full", None)):
    rec = T.train(recipe, output=out, max_steps=steps, progress=False, cpu=True)
    if part == "part" and rank == 0:
        shutil.copy(os.path.join(out, "checkpoint", "state.pt"), os.path.join(dump, "state_part.pt"))
    torch.save({"seen": seen[:], "first_grads": grads[0] if grads else None, "params": models[-1].state_dict(),
                "record": rec}, os.path.join(dump, f"rank{rank}_{part}.pt"))
    seen.clear()
    grads.clear()
'''

DDP_RECIPE = json.loads(json.dumps(RECIPE))
# grad_clip 0: clipping rescales a sum of gradients to the same norm as their mean, and would hide a sum
DDP_RECIPE["train"] = {"steps": 6, "batch_size": 4, "checkpoint_every": 100, "log_every": 1, "warmup_steps": 3,
                       "grad_clip": 0.0, "lr": 1e-3}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_on_the_union_batch_and_resume(tmp_path, monkeypatch):
    """Two CPU processes (torchrun, Accelerate over gloo): each rank takes its own half of every step's global
    batch; DDP averages the gradients, so the ranks' weights stay identical and equal a one-process run of the
    same recipe; a run stopped at step 3 and resumed (in the same processes, from the checkpoint on disk)
    continues the same learning-rate schedule, and the saved checkpoint and pipeline load."""
    torch.set_num_threads(1)
    k = 3
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "recipe.json").write_text(json.dumps(DDP_RECIPE))
    dump = tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"), TQDM_DISABLE="1")
    # `accelerate launch --cpu` starts several CPU processes only through mpirun; torchrun sets the same
    # environment (RANK, WORLD_SIZE, MASTER_PORT) from which Accelerator(cpu=True) joins a gloo process group
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(tmp_path / "worker.py"),
           str(tmp_path / "recipe.json"), str(tmp_path / "ddp"), str(k), str(dump)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = {(rank, part): torch.load(dump / f"rank{rank}_{part}.pt", weights_only=False)
         for rank in (0, 1) for part in ("part", "full")}

    # the one-process reference, with the same global batch (4) per step
    seen, grads, models = [], [], []
    share = T._process_share
    monkeypatch.setattr(T, "_process_share", lambda d, p, n: seen.append(share(d, p, n)[0].tolist()) or share(d, p, n))
    build = T.build_unet
    monkeypatch.setattr(T, "build_unet", lambda *a, **kw: models.append(build(*a, **kw)) or models[-1])
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: grads.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
    try:
        ref_part = T.train(DDP_RECIPE, output=tmp_path / "one", max_steps=k, progress=False, cpu=True)
        ref_part_params = {n: v.clone() for n, v in models[-1].state_dict().items()}
        ref_full = T.train(DDP_RECIPE, output=tmp_path / "one_full", progress=False, cpu=True)
    finally:
        hook.remove()
    ref_grads = grads[0]

    # 1. each rank saw its own half of every step's batch; together, the one-process batch
    for part, steps in (("part", range(k)), ("full", range(k, 6))):
        a, b = r[(0, part)]["seen"], r[(1, part)]["seen"]
        assert len(a) == len(b) == len(steps) and all(len(x) == 2 for x in a)
        assert a != b, "both ranks trained on the same samples"
    union = [x + y for x, y in zip(r[(0, "part")]["seen"] + r[(0, "full")]["seen"],
                                   r[(1, "part")]["seen"] + r[(1, "full")]["seen"], strict=True)]
    assert union == seen[k:], (union, seen)  # seen: the reference's 3 steps, then its uninterrupted 6
    # 2. gradients are averaged (not summed, not left local): both ranks step with the one-process gradient
    for rank in (0, 1):
        for g, g_ref in zip(r[(rank, "part")]["first_grads"], ref_grads, strict=True):
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    # ... so the ranks' weights stay identical, and equal the one-process run's. Adam divides each gradient by
    # its running scale, so rounding in a near-zero gradient can move a weight by a fraction of lr (1e-3) per
    # step: 2e-4 allows that, while a rank stepping on its own half-batch moves most weights by ~lr
    for name, v in r[(0, "part")]["params"].items():
        torch.testing.assert_close(v, r[(1, "part")]["params"][name], rtol=0, atol=0)
        torch.testing.assert_close(v, ref_part_params[name], rtol=0, atol=2e-4)
    # 3. the checkpoint written at the stop loads, with the schedule at step k
    state = torch.load(dump / "state_part.pt", weights_only=False)
    assert state["state"]["step"] == k and state["lr_schedule"]["last_epoch"] == k
    assert set(state["model"]) == set(ref_part_params) and state["ema"]["optimization_step"] == k
    # 4. the resumed run continued the same learning-rate schedule and loss record as the uninterrupted one
    assert r[(1, "part")]["record"]["num_processes"] == 2 and not r[(1, "part")]["record"]["finished"]
    rec = r[(0, "full")]["record"]
    assert rec["finished"] and rec["sessions"] == 2 and rec["num_processes"] == 2 and ref_part["steps"] == k
    assert rec["lr_curve"] == ref_full["lr_curve"] == [[s, 1e-3 * min(1.0, (s - 1) / 3)] for s in range(1, 7)]
    assert [s for s, _ in rec["loss_curve"]] == list(range(1, 7))
    for (_, a), (_, b) in zip(rec["loss_curve"], ref_full["loss_curve"], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    # 5. the saved pipeline (EMA weights) loads and equals the one-process run's
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one_full")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=2e-4)
    unet = UNet2DModel.from_pretrained(tmp_path / "ddp" / "unet")
    x = torch.zeros(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = unet(x, torch.tensor([10])).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
