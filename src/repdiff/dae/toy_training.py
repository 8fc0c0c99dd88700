"""Training, saving and loading the toy diffusion model of Chapters 7-8.

:func:`train` minimises the x0-prediction error with σ drawn log-uniformly in [``sigma_min``, ``sigma_max``]
for every training example and step (VE noise x_σ = x₀ + σ ε), plus weight decay λ on W1 and W2 as in paper
Eq. 6: mean over the batch of ‖x̂0 − x0‖² + λ(‖W1‖²_F + ‖W2‖²_F) (2λ‖W‖²_F when tied).

The course's recipes (:mod:`repdiff.dae.toy_recipes`) train in seconds on a CPU, so no checkpoint is
shipped; to store one (``data/toy_diffusion/<name>/``, loaded by :func:`load_or_train`)::

    python -m repdiff.dae.toy_training data/toy_diffusion/mem/recipe.json

which trains from the recipe file and writes ``model.safetensors`` next to it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from repdiff.dae.toy_diffusion import TimeConditionedReLUDAE
from repdiff.dae.toy_recipes import Recipe, make_training_data
from repdiff.paths import data_path

__all__ = ["train", "save", "load", "load_or_train", "main"]


def train(recipe: Recipe, *, progress: bool = True, device: str | torch.device = "cpu") -> tuple[
    TimeConditionedReLUDAE, dict[str, Any]
]:
    """Train the model a recipe describes. Returns ``(model, info)``.

    Each step draws ``batch_size`` training points (all of them, in a fixed order, when the set is that
    small or smaller, repeated to fill the batch), one σ per example log-uniform in
    [``sigma_min``, ``sigma_max``], fresh Gaussian noise, and takes an Adam step on
    mean ‖x̂0 − x0‖² + λ(‖W1‖²_F + ‖W2‖²_F) with λ = ``weight_decay``.
    ``info`` holds the loss history (every 50 steps), the final loss and the training time in seconds.
    """
    X_np, _ = make_training_data(recipe.data)
    X = torch.as_tensor(X_np, dtype=torch.float32, device=device)
    n, d = X.shape
    model = TimeConditionedReLUDAE(
        d, recipe.p, tied=recipe.tied, skip=recipe.skip, gain_hidden=recipe.gain_hidden,
        init_scale=recipe.init_scale, seed=recipe.seed, center=X.mean(0) if recipe.center else None,
        bias=recipe.bias,
    ).to(device)
    g = torch.Generator(device=device).manual_seed(recipe.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    log_lo, log_hi = math.log(recipe.sigma_min), math.log(recipe.sigma_max)
    lam = recipe.weight_decay
    B = recipe.batch_size
    history: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc=f"training {recipe.name}", disable=not progress, leave=False, mininterval=0.5)
    running = 0.0
    for step in bar:
        if n <= B:
            idx = torch.arange(B, device=device) % n
        else:
            idx = torch.randint(0, n, (B,), generator=g, device=device)
        x0 = X[idx]
        sig = torch.exp(torch.rand(B, generator=g, device=device) * (log_hi - log_lo) + log_lo)
        xt = x0 + sig[:, None] * torch.randn(x0.shape, generator=g, device=device)
        err = (model(xt, sig) - x0).square().sum(1)
        mse = err.mean()
        if recipe.sigma_data is not None:  # EDM weighting: every noise level contributes about equally
            sd2 = recipe.sigma_data**2
            err = err * (sig.square() + sd2) / (sig.square() * sd2) * sd2
        fit = err.mean()
        reg = model.W1.square().sum() + (0 if recipe.tied else model.W2.square().sum())
        loss = fit + lam * (reg if not recipe.tied else 2 * reg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(mse.detach())
        if (step + 1) % 50 == 0:
            history.append((step + 1, running / 50))
            bar.set_postfix(mse=f"{running / 50:.4f}", refresh=False)
            running = 0.0
    model.eval()
    info = {
        "history": history,
        "final_mse": history[-1][1] if history else float("nan"),
        "seconds": time.perf_counter() - t0,
        "n": n,
        "d": d,
    }
    return model, info


def save(model: TimeConditionedReLUDAE, recipe: Recipe, folder: str | Path) -> Path:
    """Write ``model.safetensors`` and ``recipe.json`` into ``folder`` (created if needed); return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"recipe": recipe.to_json()})
    (folder / "recipe.json").write_text(recipe.to_json() + "\n")
    return folder


def load(folder: str | Path, *, device: str | torch.device = "cpu") -> tuple[TimeConditionedReLUDAE, Recipe]:
    """Load ``model.safetensors`` with the ``recipe.json`` beside it. Returns ``(model, recipe)``.

    Raises:
        FileNotFoundError: a file is missing (the message says how to recreate it).
        ValueError: the checkpoint was trained from a different recipe than the JSON file says.
    """
    folder = Path(folder)
    rpath, wpath = folder / "recipe.json", folder / "model.safetensors"
    if not rpath.is_file():
        raise FileNotFoundError(f"{rpath} is missing: a checkpoint folder needs its recipe.json")
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath} is missing; recreate it with: python -m repdiff.dae.toy_training {rpath}")
    recipe = Recipe.from_json(rpath.read_text())
    with safe_open(str(wpath), framework="pt") as fh:
        stored = (fh.metadata() or {}).get("recipe")
    if stored is not None and Recipe.from_json(stored) != recipe:
        raise ValueError(f"{wpath} was trained from a different recipe than {rpath}; retrain or restore it")
    model = TimeConditionedReLUDAE(
        int(load_file(str(wpath))["W1"].shape[0]), recipe.p, tied=recipe.tied, skip=recipe.skip,
        gain_hidden=recipe.gain_hidden, init_scale=recipe.init_scale, seed=recipe.seed, bias=recipe.bias,
    )
    model.load_state_dict(load_file(str(wpath)))
    model.eval()
    return model.to(device), recipe


def load_or_train(
    recipe: Recipe,
    folder: str | Path | None = None,
    *,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[TimeConditionedReLUDAE, str]:
    """Load the checkpoint in ``folder`` if it exists and was made from ``recipe``; else train from scratch.

    ``folder`` defaults to ``data/toy_diffusion/<recipe.name>/`` in the repository, where
    ``python -m repdiff.dae.toy_training data/toy_diffusion/<name>/recipe.json`` writes a checkpoint.
    A checkpoint made from a different recipe is ignored (the model is trained instead).

    Returns ``(model, how)`` with ``how`` a one-line description ("loaded …" or "trained … in N s").
    """
    if folder is None:
        folder = data_path("toy_diffusion", recipe.name, must_exist=False)
    if folder is not None:
        folder = Path(folder)
        if (folder / "model.safetensors").is_file() and (folder / "recipe.json").is_file():
            model, stored = load(folder, device=device)
            if stored == recipe:
                return model, f"loaded the shipped checkpoint {folder.name}/model.safetensors"
    model, info = train(recipe, progress=progress, device=device)
    secs, mse = info["seconds"], info["final_mse"]
    return model, f"trained '{recipe.name}' in {secs:.1f} s (final training MSE {mse:.4f})"


def main(argv: list[str] | None = None) -> None:
    """``python -m repdiff.dae.toy_training RECIPE.json``: train and write model.safetensors beside it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("recipe", type=Path, help="path of a recipe.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recipe = Recipe.from_json(args.recipe.read_text())
    model, info = train(recipe)
    save(model, recipe, args.recipe.parent)
    print(f"trained {recipe.name} in {info['seconds']:.1f} s, final MSE {info['final_mse']:.4f}; "
          f"wrote {args.recipe.parent / 'model.safetensors'}")


if __name__ == "__main__":
    main()
