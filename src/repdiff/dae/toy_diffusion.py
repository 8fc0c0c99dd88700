"""A time-conditioned two-layer ReLU DAE trained across noise levels: the course's toy diffusion model.

Chapters 7 and 8 use it. The network is the DAE of Part I, f(x) = W2 relu(W1ᵀ x), made to work at every
noise level of a diffusion model by a per-unit gain that depends on σ (and optionally a skip term):

    h(x)      = relu(W1ᵀ (x − c))                      (p,)   the representation (before the gain)
    a(σ)      = exp(MLP(log σ))                        (p,)   a positive gain per hidden unit
    x̂0(x, σ)  = c + W2 (a(σ) ⊙ h(x)) + s · (x − c)     (d,)

with W1, W2 of shape ``(d, p)`` (COURSE.md §5 convention), tied (W2 = W1) by default, no biases, a
learnable scalar skip ``s`` (initialised at 0) that can be switched off, and a fixed centre ``c`` (the mean
of the training set when the recipe centres the data, else 0). The MLP is Linear(1, m) – ReLU –
Linear(m, p) with its last layer at zero, so a(σ) = 1 at the start.

This follows the paper's public toy code (``DAECond``: tied weights, gain exp(MLP(log σ)), scalar skip,
x0-prediction, σ log-uniform); the course's version differs in stated ways: the data are centred (raw
digits in [−1, 1] are all positively correlated, so bias-free units could not single out one image), the
skip can be disabled (so the Jacobian is exactly the DAE's W2 diag(a ⊙ 1[W1ᵀ(x − c) > 0]) W1ᵀ of
Chapter 8), and an optional σ-dependent bias b(σ) inside the ReLU (``bias=True``, an exercise of
Chapter 7) makes the network non-homogeneous.

Training (:func:`train`) minimises the x0-prediction error with σ drawn log-uniformly in
[``sigma_min``, ``sigma_max``] for every training example and step, plus weight decay λ on W1 and W2 as in
paper Eq. 6: mean over the batch of ‖x̂0 − x0‖² + λ(‖W1‖²_F + ‖W2‖²_F) (2λ‖W‖²_F when tied).

A *recipe* (:class:`Recipe`, stored as JSON) names the data, the architecture and the optimiser; it fully
determines the trained weights (same seed, same numbers on one machine). The course's three recipes are
:data:`MEM_RECIPE`, :data:`GEN_RECIPE` and :data:`MOG_RECIPE`. They train in seconds on a CPU, so no
checkpoint is shipped; to store one (``data/toy_diffusion/<name>/``, loaded by :func:`load_or_train`)::

    python -m repdiff.dae.toy_diffusion data/toy_diffusion/mem/recipe.json

which trains from the recipe file and writes ``model.safetensors`` next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from repdiff.notebook import check_range

__all__ = [
    "Recipe",
    "TimeConditionedReLUDAE",
    "make_training_data",
    "mog_clusters",
    "train",
    "save",
    "load",
    "load_or_train",
    "MEM_RECIPE",
    "GEN_RECIPE",
    "MOG_RECIPE",
    "check_median_larger",
    "negatively_correlated_digits",
    "directions",
    "trajectory_spikiness",
    "unit_groups",
    "grouped_participation_ratio",
]


# ----------------------------------------------------------------------------------------------------------
# the model


class TimeConditionedReLUDAE(nn.Module):
    """x̂0(x, σ) = W2 (exp(MLP(log σ)) ⊙ relu(W1ᵀ x)) + s·x, with W1, W2 of shape ``(d, p)``.

    Args:
        d: data dimension.
        p: number of hidden units (the width of the representation).
        tied: use one matrix for both layers (W2 = W1), as in the paper's constructed minimisers.
        skip: include the learnable scalar skip ``s`` (initialised at 0).
        gain_hidden: hidden width of the gain MLP a(σ) = exp(MLP(log σ)).
        init_scale: the columns of W1 (and W2) start as Gaussian vectors of norm about ``init_scale``.
        seed: seed of the initialisation (the module's own generator: global RNG state is not touched).

    Used in Chapter 7 (training and sampling) and Chapter 8 (Jacobians).
    """

    def __init__(
        self,
        d: int,
        p: int,
        *,
        tied: bool = True,
        skip: bool = True,
        gain_hidden: int = 64,
        init_scale: float = 0.5,
        seed: int = 0,
        center: torch.Tensor | np.ndarray | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if d < 1 or p < 1 or gain_hidden < 1:
            raise ValueError(f"d, p and gain_hidden must be >= 1, got d={d}, p={p}, gain_hidden={gain_hidden}")
        self.d, self.p, self.tied, self.has_skip = int(d), int(p), bool(tied), bool(skip)
        g = torch.Generator().manual_seed(int(seed))
        self.W1 = nn.Parameter(torch.randn(d, p, generator=g) * (init_scale / math.sqrt(d)))
        self.W2_free = None if tied else nn.Parameter(torch.randn(d, p, generator=g) * (init_scale / math.sqrt(d)))
        self.gain_in = nn.Linear(1, gain_hidden)
        self.has_bias = bool(bias)
        self.gain_out = nn.Linear(gain_hidden, 2 * p if bias else p)
        with torch.no_grad():
            bound = 1.0  # fan_in = 1: uniform init of the first gain layer from the module's generator
            self.gain_in.weight.copy_(torch.empty(gain_hidden, 1).uniform_(-bound, bound, generator=g))
            self.gain_in.bias.copy_(torch.empty(gain_hidden).uniform_(-bound, bound, generator=g))
            self.gain_out.weight.zero_()
            self.gain_out.bias.zero_()
        self.s = nn.Parameter(torch.zeros(())) if skip else None
        mu = torch.zeros(d) if center is None else torch.as_tensor(center, dtype=torch.float32).flatten()
        if mu.shape != (d,):
            raise ValueError(f"center must have shape ({d},), got {tuple(mu.shape)}")
        self.register_buffer("center", mu.clone())

    # -- pieces -------------------------------------------------------------------------------------------
    @property
    def W2(self) -> torch.Tensor:
        """The decoder matrix ``(d, p)`` (the same tensor as ``W1`` when tied)."""
        return self.W1 if self.W2_free is None else self.W2_free

    @property
    def skip_value(self) -> float:
        """The learned skip s (0.0 for a model without skip)."""
        return 0.0 if self.s is None else float(self.s.detach())

    def _sigma_tensor(self, sigma: float | torch.Tensor, n: int) -> torch.Tensor:
        dev, dt = self.W1.device, self.W1.dtype
        sig = torch.as_tensor(sigma, dtype=dt, device=dev)
        if sig.ndim == 0:
            sig = sig.expand(n)
        if sig.shape != (n,):
            raise ValueError(f"sigma must be a number or have shape ({n},), got shape {tuple(sig.shape)}")
        if not torch.isfinite(sig).all() or (sig <= 0).any():
            raise ValueError("sigma must be finite and > 0 (the gain is a function of log σ)")
        return sig

    def _time_terms(self, sig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gain a(σ) ``(N, p)`` and, for a model with biases, the pre-activation bias b(σ) ``(N, p)``."""
        z = self.gain_out(torch.relu(self.gain_in(torch.log(sig)[:, None])))
        if self.has_bias:
            return torch.exp(z[:, : self.p]), z[:, self.p :]
        return torch.exp(z), None

    def gain(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """a(σ) = exp(MLP(log σ)) > 0: shape ``(p,)`` for a number σ, ``(N, p)`` for σ of shape ``(N,)``."""
        single = not (isinstance(sigma, torch.Tensor) and sigma.ndim > 0)
        sig = self._sigma_tensor(sigma, 1) if single else self._sigma_tensor(sigma, len(sigma))
        a, _ = self._time_terms(sig)
        return a[0] if single else a

    def preactivation(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """W1ᵀ(x − c) (+ b(σ) for a model with biases): ``(N, d)`` → ``(N, p)``; its sign pattern is the mask."""
        x = self._check_x(x)
        z = (x - self.center) @ self.W1
        if self.has_bias:
            if sigma is None:
                raise ValueError("this model has σ-dependent biases: pass sigma")
            _, b = self._time_terms(self._sigma_tensor(sigma, x.shape[0]))
            z = z + b
        return z

    def representation(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """h(x) = relu(W1ᵀ(x − c)), the representation before the gain: ``(N, d)`` → ``(N, p)``.

        ``c`` is the stored centre (zero unless the recipe centres the data); ``sigma`` is needed only by
        a model with biases.
        """
        return torch.relu(self.preactivation(x, sigma))

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (N, {self.d}), got {tuple(x.shape)}")
        if x.device != self.W1.device:
            raise RuntimeError(f"x is on {x.device} but the model is on {self.W1.device}; move one of them")
        return x.to(self.W1.dtype)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x̂0 for noisy inputs ``x`` ``(N, d)`` at level ``sigma`` (a number or ``(N,)``) → ``(N, d)``."""
        x = self._check_x(x)
        a, b = self._time_terms(self._sigma_tensor(sigma, x.shape[0]))
        xc = x - self.center
        z = xc @ self.W1 if b is None else xc @ self.W1 + b
        out = self.center + (a * torch.relu(z)) @ self.W2.T
        if self.s is not None:
            out = out + self.s * xc
        return out


# ----------------------------------------------------------------------------------------------------------
# recipes and data


@dataclass
class Recipe:
    """Everything that determines a trained toy diffusion model (stored as ``recipe.json``).

    ``data`` is ``{"kind": "digits", "n": ..., "seed": ...}`` (the first ``n`` of scikit-learn's digits
    after a shuffle with ``seed``, in [−1, 1]), ``{"kind": "digits", "indices": [...]}`` (chosen digits),
    or ``{"kind": "mog", "n": ..., ...}`` (see :func:`mog_clusters` for the other keys).
    ``center``: subtract the training mean inside the model; ``bias``: σ-dependent biases inside the ReLU;
    ``sigma_data``: if set, weight the loss per example by (σ² + σ_data²)/σ² (EDM-style, every noise level
    counts about equally) instead of uniformly.
    """

    name: str
    data: dict[str, Any]
    p: int
    tied: bool = True
    skip: bool = True
    gain_hidden: int = 64
    init_scale: float = 0.5
    sigma_min: float = 0.02
    sigma_max: float = 3.0
    steps: int = 3000
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    center: bool = True
    bias: bool = False
    sigma_data: float | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.steps < 1 or self.batch_size < 1 or self.p < 1:
            raise ValueError("steps, batch_size and p must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0 and weight_decay >= 0")
        if self.data.get("kind") not in {"digits", "mog"}:
            raise ValueError(f"data['kind'] must be 'digits' or 'mog', got {self.data.get('kind')!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls(**json.loads(text))


def mog_clusters(
    K: int = 4, d: int = 32, rank: int = 2, *, norm: float = 3.0, spread: tuple[float, ...] = (0.5, 0.25),
    floor: float = 0.005, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means ``(K, d)``, covariances ``(K, d, d)`` and second moments S_k = μ_kμ_kᵀ + Σ_k ``(K, d, d)``.

    The means are a centred simplex (pairwise cosine −1/(K−1) < 0: the separability of paper Def. 3.1
    with β < 0) scaled to norm ``norm``; each Σ_k has ``rank`` directions orthogonal to all means with
    variances ``spread`` plus ``floor`` times the identity. Chapter 8 uses it for the Cor. 3.3 check.
    """
    if K < 2 or K > d or rank < 1 or len(spread) != rank:
        raise ValueError(f"need 2 <= K <= d, rank >= 1 and len(spread) == rank; got K={K}, d={d}, rank={rank}")
    if K + K * rank > d:
        raise ValueError(f"d = {d} is too small for K(1 + rank) = {K * (1 + rank)} orthogonal directions")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    E = Q[:, :K].T  # K orthonormal vectors
    means = E - E.mean(0)
    means *= norm / np.linalg.norm(means, axis=1, keepdims=True)
    covs = np.empty((K, d, d))
    for k in range(K):
        U = Q[:, K + k * rank : K + (k + 1) * rank]
        covs[k] = U @ np.diag(spread) @ U.T + floor * np.eye(d)
    S = covs + means[:, :, None] * means[:, None, :]
    return means, covs, S


def make_training_data(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The training set ``(n, d)`` a recipe's ``data`` entry names, and cluster labels ``(n,)`` (MoG only)."""
    kind = data.get("kind")
    if kind == "digits":
        from repdiff.data.synthetic import load_digits

        if "indices" in data:
            return load_digits()[np.asarray(data["indices"], dtype=int)], None
        return load_digits(n=int(data["n"]), seed=int(data.get("seed", 0)), shuffle=True), None
    if kind == "mog":
        from repdiff.data.synthetic import GaussianMixture

        means, covs, _ = mog_clusters(
            K=int(data.get("K", 4)), d=int(data.get("d", 32)), rank=int(data.get("rank", 2)),
            norm=float(data.get("norm", 3.0)), spread=tuple(data.get("spread", (0.5, 0.25))),
            floor=float(data.get("floor", 0.005)), seed=int(data.get("seed", 0)),
        )
        K = len(means)
        gm = GaussianMixture(np.full(K, 1.0 / K), means, covs)
        X, labels = gm.sample(int(data["n"]), np.random.default_rng(int(data.get("seed", 0)) + 1))
        return X, labels
    raise ValueError(f"unknown data kind {kind!r}")


# ----------------------------------------------------------------------------------------------------------
# training


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


# ----------------------------------------------------------------------------------------------------------
# saving and loading


def save(model: TimeConditionedReLUDAE, recipe: Recipe, folder: str | Path) -> Path:
    """Write ``model.safetensors`` and ``recipe.json`` into ``folder`` (created if needed); return it."""
    from safetensors.torch import save_file

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
    from safetensors import safe_open
    from safetensors.torch import load_file

    folder = Path(folder)
    rpath, wpath = folder / "recipe.json", folder / "model.safetensors"
    if not rpath.is_file():
        raise FileNotFoundError(f"{rpath} is missing: a checkpoint folder needs its recipe.json")
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath} is missing; recreate it with: python -m repdiff.dae.toy_diffusion {rpath}")
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
    ``python -m repdiff.dae.toy_diffusion data/toy_diffusion/<name>/recipe.json`` writes a checkpoint.
    A checkpoint made from a different recipe is ignored (the model is trained instead).

    Returns ``(model, how)`` with ``how`` a one-line description ("loaded …" or "trained … in N s").
    """
    if folder is None:
        from repdiff.paths import data_path

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


# ----------------------------------------------------------------------------------------------------------
# the course's configurations and the measurements Chapters 7-8 make with them

#: Seven digits whose centred versions are pairwise negatively correlated (the β < 0 of paper Def. 3.1),
#: found by :func:`negatively_correlated_digits`; n = 7 ≤ p = 32: the memorizing configuration.
MEM_RECIPE = Recipe(
    name="mem",
    data={"kind": "digits", "indices": [0, 1, 8, 19, 32, 108, 351]},
    p=32,
    steps=8000,
    batch_size=64,
    lr=5e-3,
    notes="memorizing configuration of Chapter 7: n = 7 <= p = 32",
)

#: 1,500 of the 1,797 digits (the other 297 are a test set), p = 16 ≪ n: the generalizing configuration.
GEN_RECIPE = Recipe(
    name="gen",
    data={"kind": "digits", "n": 1500, "seed": 0},
    p=16,
    steps=3000,
    notes="generalizing configuration of Chapter 7: n = 1500 >> p = 16",
)

#: A 4-cluster Gaussian mixture in d = 32 with rank-2 covariances, p = 8 (two units per cluster), no skip
#: and no centring, so the learned Jacobian can be compared with paper Cor. 3.3's Wiener blocks (Chapter 8).
MOG_RECIPE = Recipe(
    name="mog",
    data={"kind": "mog", "n": 4000, "K": 4, "d": 32, "rank": 2, "norm": 3.0, "spread": [0.5, 0.25],
          "floor": 0.005, "seed": 0},
    p=8,
    skip=False,
    center=False,
    steps=3000,
    weight_decay=0.0,
    notes="Chapter 8: MoG data, n = 4000 >> p = 8",
)


def negatively_correlated_digits(max_n: int = 7) -> list[int]:
    """Greedy choice of digit indices whose versions centred by the mean of all digits have pairwise
    negative inner products (at most ``max_n``; scanning the 1,797 digits in order). Chapter 7."""
    from repdiff.data.synthetic import load_digits

    X = load_digits()
    Xc = X - X.mean(0)
    chosen = [0]
    for i in range(1, len(X)):
        if len(chosen) >= max_n:
            break
        if (Xc[chosen] @ Xc[i] < 0).all():
            chosen.append(i)
    return chosen


def directions(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(x − c)/‖x − c‖ row by row: ``(N, d)`` → ``(N, d)``. Chapter 7's scale-free comparison.

    Raises ``ValueError`` for a row equal to the centre (no direction).
    """
    v = x - center
    nrm = v.norm(dim=1, keepdim=True)
    if (nrm == 0).any():
        raise ValueError("a row equals the centre: its direction is undefined")
    return v / nrm


@torch.no_grad()
def trajectory_spikiness(
    model: TimeConditionedReLUDAE, trajectory: list[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """Representation std and participation ratio of h = relu(W1ᵀ(x − c)) at every iterate.

    ``trajectory`` is the list that :func:`repdiff.sampling.sample` returns (``T + 1`` tensors ``(N, d)``).
    Returns two arrays ``(T + 1, N)``. Chapter 7's figure.
    """
    from repdiff.metrics import participation_ratio, representation_std

    if model.has_bias:
        raise ValueError("trajectory_spikiness needs a model without σ-dependent biases")
    stds, prs = [], []
    for x in trajectory:
        h = model.representation(x.to(model.W1.device, model.W1.dtype))
        stds.append(representation_std(h).cpu().numpy())
        prs.append(participation_ratio(h).cpu().numpy())
    return np.stack(stds), np.stack(prs)


@torch.no_grad()
def unit_groups(model: TimeConditionedReLUDAE, X: torch.Tensor, *, min_norm: float = 0.25) -> torch.Tensor:
    """Which stored sample each hidden unit serves: ``(p,)`` indices into ``X`` ``(n, d)``, −1 for a unit
    whose column of W1 is shorter than ``min_norm`` (unused).

    A unit is assigned to the training point whose centred version has the largest cosine with its column.
    Optimizers often *split* one stored sample over several units (Chapter 3); grouping the units undoes
    the split. Chapter 7.
    """
    X = X.to(model.W1)
    if X.ndim != 2 or X.shape[1] != model.d:
        raise ValueError(f"X must have shape (n, {model.d}), got {tuple(X.shape)}")
    cols = model.W1.T  # (p, d)
    U = directions(X, model.center)
    groups = (cols @ U.T).argmax(1)
    groups[cols.norm(dim=1) < min_norm] = -1
    return groups


def grouped_participation_ratio(h: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Participation ratio over *groups* of units: the energy of a group is Σ_{j in group} h_j².

    ``h`` ``(N, p)``, ``groups`` ``(p,)`` from :func:`unit_groups` (units in group −1 are left out).
    1 when all the energy sits in one group (one stored sample), G for G equally active groups.
    Returns ``(N,)`` (0 for a vector with no energy). Chapter 7.
    """
    if h.ndim != 2 or groups.shape != (h.shape[1],):
        raise ValueError(f"h must be (N, p) and groups (p,), got {tuple(h.shape)} and {tuple(groups.shape)}")
    keep = groups >= 0
    G = int(groups[keep].max()) + 1 if keep.any() else 0
    if G == 0:
        raise ValueError("no unit belongs to a group")
    e = torch.zeros(h.shape[0], G, dtype=h.dtype, device=h.device)
    e.index_add_(1, groups[keep], h[:, keep].square())
    num = e.sum(1).square()
    den = e.square().sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(h.dtype).tiny), torch.zeros_like(den))


def check_median_larger(what: str, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, *,
                        n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Check that median(a) > median(b): the 95 % bootstrap interval of the difference lies above 0.

    ``a`` ``(N,)`` and ``b`` ``(M,)`` are per-sample values (e.g. final participation ratios of two models,
    Chapter 7), resampled independently with replacement (seeded). Prints the difference and its interval
    and raises :class:`repdiff.CheckFailed` unless the interval's lower end is > 0 (so equal or swapped
    inputs fail). Returns ``(difference, low, high)``.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"need at least 2 values on each side, got {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(a, (n_boot, a.size)), 1) - np.median(rng.choice(b, (n_boot, b.size)), 1)
    diff = float(np.median(a) - np.median(b))
    lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
    print(f"{what}: median difference {diff:.3g}, 95 % bootstrap interval [{lo:.3g}, {hi:.3g}]")
    check_range(f"{what}: lower end of the 95 % interval of the median difference", lo, low=1e-12)
    return diff, lo, hi


def main(argv: list[str] | None = None) -> None:
    """``python -m repdiff.dae.toy_diffusion RECIPE.json``: train and write model.safetensors beside it."""
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
