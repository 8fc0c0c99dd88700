"""Train a small diffusers U-Net from a JSON recipe: ``python -m repdiff.unets.train <recipe.json> [...]`` (Chapter 9).

The same command runs on a CPU or a GPU, through Hugging Face Accelerate. Several processes start with
``torchrun --nproc_per_node N -m repdiff.unets.train <recipe>``: tests/test_train.py runs it with two CPU processes
(gloo); on several GPUs the same command, or ``accelerate launch -m repdiff.unets.train <recipe>``, starts one process
per GPU (untested here; ``accelerate launch --cpu`` needs MPI for several CPU processes). What a run does:

- loads the exact training tensor of the recipe's ``data`` entry (:func:`repdiff.data.real.load_dataset`);
- trains a ``UNet2DModel`` (:func:`repdiff.unets.model.build_unet`) on the standard DDPM objective: draw a step t and
  noise ε, and regress ε from x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with the mean squared error;
- AdamW with a linear warm-up (``diffusers.optimization.get_scheduler("constant_with_warmup")``), gradient
  clipping, and an exponential moving average of the weights (``diffusers.training_utils.EMAModel``; the EMA
  weights are the ones saved);
- ``batch_size`` is the *global* batch: with N processes each takes its own N-th of every step's draws and
  Accelerate (DDP) averages the gradients, so a recipe trains the same model on 1 or N processes (up to
  floating-point reduction order; tests/test_train.py runs it on two CPU processes);
- bf16 autocast and channels-last memory on a GPU (``"mixed_precision": "auto"``), optional ``torch.compile``;
- a progress bar; a resumable checkpoint every ``checkpoint_every`` steps: an interrupted run, started again
  with the same command, continues from its last checkpoint (weights, optimizer, EMA and learning-rate
  schedule). The random draws of step k depend only on (seed, k), so a resumed run takes the same steps as an
  uninterrupted one;
- at the end, a diffusers pipeline folder (``save_pretrained``: safetensors + scheduler config), the recipe
  (``recipe.json``) and a record of the run (``record.json``: steps, final loss, wall time, device, commit).

A recipe (all keys but ``data`` optional)::

    {"name": "n0064",
     "data": {"name": "procedural", "n": 64, "size": 16, "seed": 0, "offset": 0},
     "model": {...UNet2DModel kwargs...}, "scheduler": {...DDIMScheduler kwargs...},
     "train": {"steps": 4000, "batch_size": 128, "lr": 2e-3, ...},
     "output": "data/unet_sweep/n0064"}
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from repdiff.data.real import load_dataset
from repdiff.noise import add_noise, per_sample
from repdiff.paths import repo_root
from repdiff.unets.model import build_scheduler, build_unet, count_parameters, save_pipeline

__all__ = ["DEFAULT_TRAIN", "load_recipe", "train_config", "train", "git_commit", "main"]

#: Training settings used unless a recipe's ``train`` entry overrides them.
DEFAULT_TRAIN: dict[str, Any] = {
    "steps": 4000,
    "batch_size": 128,
    "lr": 2e-3,
    "warmup_steps": 200,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "seed": 0,
    "checkpoint_every": 1000,
    "log_every": 50,
    "mixed_precision": "auto",  # "auto" = bf16 on a GPU, fp32 on a CPU; or "no" / "bf16"
    "channels_last": "auto",  # "auto" = on a GPU
    "compile": False,
    "keep_checkpoint": False,  # delete the resumable state once the final pipeline is saved
}


def load_recipe(recipe: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A recipe as a dict (from a dict or a JSON file), checked for the keys training needs."""
    if isinstance(recipe, (str, Path)):
        path = Path(recipe)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {path} does not exist")
        recipe = json.loads(path.read_text())
    if not isinstance(recipe, dict) or not isinstance(recipe.get("data"), dict):
        raise ValueError("a recipe must be a JSON object with a 'data' entry (what load_dataset takes)")
    unknown = set(recipe) - {"name", "data", "model", "scheduler", "train", "output", "notes"}
    if unknown:
        raise ValueError(f"unknown recipe keys: {sorted(unknown)}")
    return copy.deepcopy(recipe)


def train_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_TRAIN` updated by the recipe's ``train`` entry (unknown keys raise)."""
    cfg = dict(DEFAULT_TRAIN)
    extra = set(recipe.get("train", {})) - set(cfg)
    if extra:
        raise ValueError(f"unknown train keys: {sorted(extra)} (allowed: {sorted(cfg)})")
    cfg.update(recipe.get("train", {}))
    for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise ValueError(f"train.{key} must be a positive integer, got {cfg[key]!r}")
    if not cfg["lr"] > 0 or not 0 <= cfg["ema_decay"] < 1:
        raise ValueError("train.lr must be > 0 and train.ema_decay in [0, 1)")
    if int(cfg["warmup_steps"]) != cfg["warmup_steps"] or cfg["warmup_steps"] < 0:
        raise ValueError(f"train.warmup_steps must be an integer >= 0, got {cfg['warmup_steps']!r}")
    return cfg


def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository (or ``$REPDIFF_COMMIT``, or ``"unknown"`` outside a clone)."""
    if os.environ.get("REPDIFF_COMMIT"):
        return os.environ["REPDIFF_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _worktree_dirty() -> bool | None:
    """Whether the code differed from the commit (``$REPDIFF_COMMIT_DIRTY`` or ``git status``); None if unknown."""
    if os.environ.get("REPDIFF_COMMIT_DIRTY") is not None:
        return os.environ["REPDIFF_COMMIT_DIRTY"] == "1"
    try:
        out = subprocess.run(["git", "status", "--porcelain", "src"], cwd=repo_root(), capture_output=True, text=True,
                             timeout=10)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _step_draws(seed: int, step: int, n: int, batch: int, shape: tuple[int, ...], T: int):
    """The random draws of one step for the global batch (indices ``(batch,)``, steps t ``(batch,)``, noise
    ``(batch, *shape)``): a function of (seed, step) only, whatever the number of processes."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 101)
    idx = torch.randint(0, n, (batch,), generator=g)
    t = torch.randint(0, T, (batch,), generator=g)
    noise = torch.randn((batch, *shape), generator=g)
    return idx, t, noise


def _process_share(draws: tuple[torch.Tensor, ...], process: int, num_processes: int) -> tuple[torch.Tensor, ...]:
    """Process ``process``'s contiguous N-th of a step's global draws (the union over processes is the batch)."""
    size = draws[0].shape[0] // num_processes
    return tuple(d[process * size:(process + 1) * size] for d in draws)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(
    recipe: dict[str, Any] | str | Path,
    *,
    output: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = True,
    progress: bool = True,
    cpu: bool = False,
) -> dict[str, Any]:
    """Train (or resume) one recipe; return the run record (also written to ``<output>/record.json``).

    Args:
        recipe: dict or path of a recipe JSON file.
        output: the run folder (default: the recipe's ``output``, relative to the repository root).
        max_steps: stop after this many steps in total, leaving a resumable checkpoint and no final pipeline
            (how the tests interrupt a run); ``None`` trains to the recipe's ``steps``.
        resume: continue from ``<output>/checkpoint/state.pt`` when it exists.
        progress: show a progress bar.
        cpu: force the CPU even when a GPU is present.

    Returns:
        the record: ``steps``, ``final_loss``, ``wall_time_s``, ``device``, ``commit``, ``loss_curve`` …;
        ``finished`` is False when ``max_steps`` stopped the run early.
    """
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    recipe = load_recipe(recipe)
    cfg = train_config(recipe)
    out = Path(output) if output is not None else None
    if out is None:
        if "output" not in recipe:
            raise ValueError("give an output folder (argument or the recipe's 'output' entry)")
        out = Path(recipe["output"])
        out = out if out.is_absolute() else repo_root() / out
    ckpt_dir = out / "checkpoint"

    use_gpu = torch.cuda.is_available() and not cpu
    mp = cfg["mixed_precision"]
    mp = ("bf16" if use_gpu else "no") if mp == "auto" else mp
    accelerator = Accelerator(mixed_precision=mp, cpu=not use_gpu)
    device = accelerator.device
    if cfg["batch_size"] % accelerator.num_processes:
        raise ValueError(f"train.batch_size = {cfg['batch_size']} (the global batch) must be a multiple of the "
                         f"number of processes, {accelerator.num_processes}")

    data = load_dataset(recipe["data"])  # (N, C, H, W) in [-1, 1]
    n, shape = data.shape[0], tuple(data.shape[1:])
    data = data.to(device)
    scheduler = build_scheduler(recipe)
    T = scheduler.config.num_train_timesteps
    abar = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)

    torch.manual_seed(cfg["seed"])
    model = build_unet(recipe, shape)
    n_params = count_parameters(model)
    channels_last = use_gpu if cfg["channels_last"] == "auto" else bool(cfg["channels_last"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    # the learning rate of step k is lr * min(1, k / warmup_steps); stepped once per optimizer step (not prepared
    # by Accelerate, whose scheduler wrapper would step it once per process)
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=int(cfg["warmup_steps"]))
    # EMA of the weights; its decay warms up as min(ema_decay, (1 + k) / (10 + k)) after the first step
    ema = EMAModel(model.parameters(), decay=cfg["ema_decay"], foreach=True)

    state = {"step": 0, "wall_time_s": 0.0, "loss_curve": [], "lr_curve": [], "sessions": 0}
    state_path = ckpt_dir / "state.pt"
    if resume and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        if saved["recipe"] != recipe:
            raise ValueError(f"{state_path} was written by a different recipe; delete it or use --no-resume")
        if "lr_schedule" not in saved:
            raise ValueError(f"{state_path} was written by an older repdiff.unets.train; delete it or use --no-resume")
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        lr_schedule.load_state_dict(saved["lr_schedule"])
        state = saved["state"]
        accelerator.print(f"Resuming {recipe.get('name', out.name)} from step {state['step']} ({state_path}).")
    ema.to(device)
    train_model = torch.compile(model) if (cfg["compile"] and use_gpu) else model
    train_model, optimizer = accelerator.prepare(train_model, optimizer)

    def save_state() -> None:
        if accelerator.is_main_process:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            _atomic_save(
                {
                    "recipe": recipe,
                    "model": accelerator.unwrap_model(model).state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_schedule": lr_schedule.state_dict(),
                    "state": state,
                },
                state_path,
            )
        accelerator.wait_for_everyone()  # no process goes on (or resumes) before the checkpoint is complete

    stop = cfg["steps"] if max_steps is None else min(cfg["steps"], max_steps)
    state["sessions"] += 1
    bar = tqdm(total=stop, initial=state["step"], desc=f"training {recipe.get('name', out.name)}",
               disable=not (progress and accelerator.is_local_main_process))
    t0, running, count = time.perf_counter(), 0.0, 0
    train_model.train()
    model_params = list(accelerator.unwrap_model(model).parameters())
    while state["step"] < stop:
        step = state["step"]
        draws = _step_draws(cfg["seed"], step, n, cfg["batch_size"], shape, T)
        idx, t, noise = _process_share(draws, accelerator.process_index, accelerator.num_processes)
        x0, t, noise = data[idx.to(device)], t.to(device), noise.to(device)
        xt = add_noise(x0, noise, per_sample(abar[t], x0))
        if channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        lr = lr_schedule.get_last_lr()[0]
        with accelerator.autocast():
            pred = train_model(xt, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg["grad_clip"]:
            accelerator.clip_grad_norm_(train_model.parameters(), cfg["grad_clip"])
        optimizer.step()
        lr_schedule.step()
        ema.step(model_params)
        state["step"] = step + 1
        running += float(accelerator.reduce(loss.detach(), reduction="mean"))  # the loss of the global batch
        count += 1
        if state["step"] % cfg["log_every"] == 0 or state["step"] == stop:
            state["loss_curve"].append([state["step"], running / count])
            state["lr_curve"].append([state["step"], lr])
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
        bar.update(1)
        if state["step"] % cfg["checkpoint_every"] == 0 and state["step"] < cfg["steps"]:
            state["wall_time_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            save_state()
    bar.close()
    state["wall_time_s"] += time.perf_counter() - t0
    finished = state["step"] >= cfg["steps"]

    record = {
        "name": recipe.get("name", out.name),
        "steps": state["step"],
        "finished": finished,
        "final_loss": state["loss_curve"][-1][1] if state["loss_curve"] else float("nan"),
        "loss_curve": state["loss_curve"],
        "lr_curve": state["lr_curve"],
        "wall_time_s": round(state["wall_time_s"], 2),
        "images_per_s": round(state["step"] * cfg["batch_size"] / max(state["wall_time_s"], 1e-9), 1),
        "sessions": state["sessions"],
        "device": _device_name(device),
        "num_processes": accelerator.num_processes,
        "batch_size": cfg["batch_size"],
        "mixed_precision": mp,
        "channels_last": channels_last,
        "compile": bool(cfg["compile"] and use_gpu),
        "n_train": n,
        "n_parameters": n_params,
        "commit": git_commit(),
        "uncommitted_changes": _worktree_dirty(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import diffusers

        record["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover - train() itself needs diffusers
        pass
    if not finished:
        save_state()
        return record
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return record
    final = copy.deepcopy(accelerator.unwrap_model(model)).to("cpu").float().to(memory_format=torch.contiguous_format)
    ema.copy_to(final.parameters())
    save_pipeline(final, scheduler, out)
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    if not cfg["keep_checkpoint"] and ckpt_dir.exists():
        state_path.unlink(missing_ok=True)
        try:
            ckpt_dir.rmdir()
        except OSError:
            pass
    accelerator.print(
        f"Saved {out} after {record['steps']} steps: final loss {record['final_loss']:.4f}, "
        f"{record['wall_time_s']:.0f} s on {record['device']}."
    )
    accelerator.wait_for_everyone()
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m repdiff.unets.train RECIPE.json [RECIPE.json ...] [--output DIR] [--max-steps K]``."""
    parser = argparse.ArgumentParser(prog="python -m repdiff.unets.train",
                                     description="Train U-Net recipes (Chapter 9).")
    parser.add_argument("recipes", nargs="+", help="recipe JSON file(s), trained one after the other")
    parser.add_argument("--output", help="run folder (only with one recipe; default: the recipe's 'output')")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps, leaving a resumable checkpoint")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.output and len(args.recipes) > 1:
        parser.error("--output works with a single recipe")
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.recipes:
        train(path, output=args.output, max_steps=args.max_steps, resume=not args.no_resume, cpu=args.cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

