"""Training the DAEs of Part I on the paper's objective (Eq. 6), with the λ-term written out explicitly.

- :func:`train_dae`: a :class:`~repdiff.dae.models.ReLUDAE` trained by Adam, RMSprop or SGD on
  (1/m) Σ_batch ‖f(x_i + σε) − x_i‖² + λ(‖W1‖²_F + ‖W2‖²_F), fresh noise every step (Chapters 3-6).
- :func:`fit_linear_dae`: the *linear* DAE trained on its exact expected loss
  (:func:`repdiff.theory.linear_dae_loss`) from a random start, Adam then L-BFGS (Chapter 2).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from repdiff._arrays import ArrayLike, to_tensor
from repdiff.dae.linear_solutions import linear_dae_loss
from repdiff.dae.models import ReLUDAE

__all__ = ["train_dae", "fit_linear_dae"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}


def train_dae(
    model: ReLUDAE,
    X: ArrayLike,
    sigma: float,
    lam: float,
    *,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    batch_size: int | None = None,
    noise_draws: int = 1,
    seed: int = 0,
    progress: bool = True,
    record_every: int | None = None,
    schedule: str = "constant",
) -> dict[str, Any]:
    """Train ``model`` on the paper's DAE objective (Eq. 6) and return the loss history (Chapters 3-6).

    Each step draws a batch (all of ``X`` when ``batch_size`` is None), ``noise_draws`` fresh noise vectors
    per sample, and takes one optimizer step on

        (1/(m·D)) Σ_i Σ_s ‖f(x_i + σ ε_is) − x_i‖²  +  λ (‖W1‖²_F + ‖W2‖²_F),

    the squared error *summed* over the d coordinates. The λ-term is part of the loss (the optimizer has
    no weight_decay). How this maps to the usual PyTorch recipe: ``nn.MSELoss()`` averages over the d
    coordinates too, so ``MSELoss + weight_decay=wd`` (coupled L2, not AdamW) has the same stationary
    points as Eq. 6 with λ = d·wd/2 for untied weights, and λ = d·wd/4 for tied ones (the shared tensor
    is decayed once but appears in both norms).

    Args:
        model: the DAE (its parameters' dtype and device are used).
        X: training set ``(n, d)``. sigma: noise level σ >= 0. lam: λ >= 0.
        steps: optimizer steps. lr: learning rate.
        optimizer: ``"adam"``, ``"rmsprop"`` or ``"sgd"`` (plain, no momentum).
        batch_size: samples per step (drawn without replacement within a step); None = full batch.
        noise_draws: noise draws per sample per step.
        seed: seeds the batches and the noise (a private generator: same seed, same run).
        progress: show a tqdm progress bar.
        record_every: record the objective every this many steps (default: about 200 records).
        schedule: ``"constant"`` or ``"cosine"`` (lr decays to 0 at the last step, which removes most of
            the noise that fresh ε leaves in the final weights).

    Returns:
        dict with ``steps`` (np.ndarray), ``losses`` (np.ndarray: the objective averaged over the steps since
        the previous record), ``final_loss`` (float), ``seconds`` (float) and the settings used.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. repdiff.dae.models.ReLUDAE), "
                        f"got {type(model).__name__}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if int(noise_draws) != noise_draws or noise_draws < 1:
        raise ValueError(f"noise_draws must be a positive integer, got {noise_draws!r}")
    sigma, lam, lr = float(sigma), float(lam), float(lr)
    for name, v in (("sigma", sigma), ("lam", lam)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    param = next(model.parameters())
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(dtype=param.dtype, device=param.device)
    if Xt.ndim != 2 or Xt.shape[1] != model.W1.shape[0]:
        raise ValueError(f"X must have shape (n, {model.W1.shape[0]}) to match the model, got {tuple(Xt.shape)}")
    if not torch.isfinite(Xt).all():
        raise ValueError("X contains NaN or infinite values")
    n = Xt.shape[0]
    if batch_size is not None and not (1 <= int(batch_size) <= n):
        raise ValueError(f"batch_size must be None or between 1 and n = {n}, got {batch_size!r}")
    record_every = max(1, steps // 200) if record_every is None else int(record_every)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")

    params = list(dict.fromkeys(model.parameters()))  # a tied weight is listed once
    opt = _OPTIMIZERS[optimizer](params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine" else None
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    hist_steps, hist_losses = [], []
    running, count = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(range(1, steps + 1), disable=not progress, desc=f"{optimizer} training", leave=False)
    for step in bar:
        if batch_size is None:
            xb = Xt
        else:
            idx = torch.randperm(n, generator=gen)[: int(batch_size)].to(Xt.device)
            xb = Xt[idx]
        xb = xb.repeat(int(noise_draws), 1)
        eps = torch.randn(xb.shape, generator=gen, dtype=torch.float64).to(xb)
        out = model(xb + sigma * eps)
        data_term = (out - xb).square().sum(dim=1).mean()
        loss = data_term + lam * (model.W1.square().sum() + model.W2.square().sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        running += float(loss.detach())
        count += 1
        if step % record_every == 0 or step == steps:
            hist_steps.append(step)
            hist_losses.append(running / count)
            running, count = 0.0, 0
            if progress:
                bar.set_postfix(loss=f"{hist_losses[-1]:.4g}")
    if not math.isfinite(hist_losses[-1]):
        raise FloatingPointError(f"training diverged (loss {hist_losses[-1]}): lower lr (now {lr})")
    return {
        "steps": np.asarray(hist_steps),
        "losses": np.asarray(hist_losses),
        "final_loss": float(hist_losses[-1]),
        "seconds": time.perf_counter() - t0,
        "optimizer": optimizer,
        "lr": lr,
        "sigma": sigma,
        "lam": lam,
        "schedule": schedule,
    }


def fit_linear_dae(
    X: ArrayLike,
    p: int,
    sigma: float,
    lam: float,
    *,
    seed: int = 0,
    init_std: float = 0.1,
    adam_steps: int = 500,
    adam_lr: float = 1e-2,
    lbfgs_iters: int = 2000,
    newton_steps: int = 2,
) -> dict[str, Any]:
    """Train the linear DAE x ↦ W2 W1ᵀ x on its exact expected loss from a random start (Chapter 2).

    W1, W2 ``(d, p)`` start as independent N(0, init_std²) matrices (float64), take ``adam_steps`` Adam
    steps on :func:`repdiff.theory.linear_dae_loss`, then L-BFGS (strong-Wolfe line search) until the
    gradient vanishes to machine precision or ``lbfgs_iters`` iterations are spent, then ``newton_steps``
    Newton steps (gradients and Hessian-vector products only, no loss differences, so they keep
    converging where round-off in the loss stalls a line search).

    Returns:
        dict with ``W1``, ``W2`` (numpy ``(d, p)``), ``loss`` (final value), ``grad_norm`` (final gradient
        norm), ``history`` (np.ndarray of losses: every Adam step, then every L-BFGS iteration).
    """
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.double()
    if Xt.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(Xt.shape)}")
    d, p = Xt.shape[1], int(p)
    gen = torch.Generator().manual_seed(int(seed))
    W1 = (init_std * torch.randn(d, int(p), generator=gen, dtype=torch.float64)).requires_grad_()
    W2 = (init_std * torch.randn(d, int(p), generator=gen, dtype=torch.float64)).requires_grad_()
    history: list[float] = []
    opt = torch.optim.Adam([W1, W2], lr=adam_lr)
    for _ in range(int(adam_steps)):
        loss = linear_dae_loss(W1, W2, Xt, sigma, lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    lbfgs = torch.optim.LBFGS(
        [W1, W2],
        lr=1.0,
        max_iter=int(lbfgs_iters),
        history_size=50,
        tolerance_grad=1e-13,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        value = linear_dae_loss(W1, W2, Xt, sigma, lam)
        value.backward()
        history.append(float(value.detach()))
        return value

    if lbfgs_iters > 0:
        lbfgs.step(closure)
    # Near the minimum, loss differences hit float64 round-off (~1e-16 of the loss) before the gradient
    # does, and a line search stalls there. Finish with Newton steps, which need only gradients and
    # Hessian-vector products (solved by conjugate gradients; the Hessian is singular along the rotations
    # W -> W O, which change nothing, and CG stays in its range).
    for _ in range(int(newton_steps)):
        z = torch.cat([W1.detach().ravel(), W2.detach().ravel()]).requires_grad_()

        def flat_loss(v: torch.Tensor) -> torch.Tensor:
            return linear_dae_loss(v[: d * p].view(d, p), v[d * p :].view(d, p), Xt, sigma, lam)

        (g,) = torch.autograd.grad(flat_loss(z), z, create_graph=True)

        def hvp(v: torch.Tensor, g: torch.Tensor = g, z: torch.Tensor = z) -> torch.Tensor:
            return torch.autograd.grad(g, z, grad_outputs=v, retain_graph=True)[0]

        probe = torch.randn(z.shape, generator=gen, dtype=z.dtype)
        damping = 1e-9 * float(hvp(probe).norm() / probe.norm())  # keeps CG away from the flat rotations
        step = _conjugate_gradient(lambda v, mu=damping: hvp(v) + mu * v, g.detach())
        z = z.detach()
        before = float(flat_loss(z))
        for _halving in range(20):  # backtrack: a Newton step may only polish, never make worse
            after = float(flat_loss(z - step))
            if after <= before + 1e-12 * abs(before):
                break
            step = step / 2
        else:
            break
        with torch.no_grad():
            W1 -= step[: d * p].view(d, p)
            W2 -= step[d * p :].view(d, p)
        history.append(after)
    final = linear_dae_loss(W1, W2, Xt, sigma, lam)
    g1, g2 = torch.autograd.grad(final, [W1, W2])
    return {
        "W1": W1.detach().numpy().copy(),
        "W2": W2.detach().numpy().copy(),
        "loss": float(final.detach()),
        "grad_norm": float(torch.sqrt(g1.square().sum() + g2.square().sum())),
        "history": np.asarray(history),
    }


def _conjugate_gradient(hvp: Any, b: torch.Tensor, *, max_iter: int = 300, rtol: float = 1e-12) -> torch.Tensor:
    """Solve H x = b for a symmetric positive semi-definite H given as ``hvp(v) = H v`` (b in range(H))."""
    x = torch.zeros_like(b)
    r = b.clone()
    q = r.clone()
    rr = r @ r
    stop = (rtol * b.norm()) ** 2
    for _ in range(max_iter):
        if rr <= stop:
            break
        Hq = hvp(q)
        curv = q @ Hq
        if curv <= 0:
            break
        alpha = rr / curv
        x = x + alpha * q
        r = r - alpha * Hq
        rr_new = r @ r
        q = r + (rr_new / rr) * q
        rr = rr_new
    return x
