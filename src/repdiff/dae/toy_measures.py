"""What Chapter 7 measures on the toy diffusion model: copies, lengths, directions and spikiness.

- :func:`paper_sampler_variants`: the memorized fraction with the paper's sampler choices, one at a time;
- :func:`directions`, :func:`direction_copies`: the scale-free comparison (a bias-free ReLU denoiser is
  positively homogeneous, so it stores directions, not lengths);
- :func:`trajectory_spikiness`, :func:`unit_groups`, :func:`grouped_participation_ratio`,
  :func:`spikiness_along`: the representation along the sampling trajectory;
- :func:`check_median_larger`: a bootstrap check that one median exceeds another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from repdiff.dae.toy_diffusion import TimeConditionedReLUDAE
from repdiff.metrics import memorization_fraction, participation_ratio, representation_std
from repdiff.notebook import check_range
from repdiff.sampling import sample

__all__ = [
    "SamplerVariants",
    "paper_sampler_variants",
    "directions",
    "DirectionCopies",
    "direction_copies",
    "trajectory_spikiness",
    "unit_groups",
    "grouped_participation_ratio",
    "Spikiness",
    "spikiness_along",
    "column_rms",
    "check_median_larger",
]


@dataclass
class SamplerVariants:
    """Memorized fractions and sample lengths of the paper's sampler choices (Chapter 7).

    ``frac``: ``"em_x0_mem"`` (Euler–Maruyama steps, x̂₀ clipped), ``"anc_it_mem"`` (ancestral steps, the
    iterate clamped), ``"em_mem"``, ``"em_gen"`` (Euler–Maruyama, iterate clamped: the paper's toy code).
    ``length``: median ‖x − c‖ of the memorizing model's samples for ``"em_x0"``, ``"anc_it"``, ``"em"``.
    """

    frac: dict[str, float]
    length: dict[str, float]


_VARIANTS = {"em_x0": ("euler_maruyama", {"clamp": (-1.0, 1.0)}),
             "anc_it": ("ancestral", {"clamp_iterate": (-1.0, 1.0)}),
             "em": ("euler_maruyama", {"clamp_iterate": (-1.0, 1.0)})}


def paper_sampler_variants(
    model_mem: TimeConditionedReLUDAE, model_gen: TimeConditionedReLUDAE, X_mem: torch.Tensor,
    X_gen: torch.Tensor, x_init: torch.Tensor, sigmas: torch.Tensor, *, seed: int = 2, batch_size: int = 128,
) -> SamplerVariants:
    """Sample with the paper's toy-code choices (Euler–Maruyama steps, iterate clamped to [−1, 1]) and with
    each change alone, from the same starting noise ``x_init`` ``(N, d)`` and stochastic seed. Chapter 7.

    ``X_mem`` ``(n, d)`` and ``X_gen`` ``(m, d)`` are the two training sets (for the memorized fractions).
    """
    frac, length = {}, {}
    for key, (step, kw) in _VARIANTS.items():
        for name, den, tr in (("mem", model_mem, X_mem), ("gen", model_gen, X_gen)):
            if name == "gen" and key != "em":
                continue
            out = sample(den, x_init, sigmas, stochastic=True, stochastic_step=step, batch_size=batch_size,
                         generator=torch.Generator().manual_seed(seed), progress=False, **kw)
            frac[f"{key}_{name}"] = memorization_fraction(out, tr)
            if name == "mem":
                length[key] = float((out - model_mem.center).norm(dim=1).median())
    return SamplerVariants(frac=frac, length=length)


def directions(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(x − c)/‖x − c‖ row by row: ``(N, d)`` → ``(N, d)``. Chapter 7's scale-free comparison.

    Raises ``ValueError`` for a row equal to the centre (no direction).
    """
    v = x - center
    nrm = v.norm(dim=1, keepdim=True)
    if (nrm == 0).any():
        raise ValueError("a row equals the centre: its direction is undefined")
    return v / nrm


@dataclass
class DirectionCopies:
    """Chapter 7's scale-free comparison of samples with the training set.

    ``frac_mem``, ``frac_gen``: memorized fractions of the *directions* (x − c)/‖x − c‖ of each model's
    samples among the directions of its training set; ``scale`` ``(N,)``: the length of each memorizing
    sample along its nearest stored direction, ⟨x − c, x_i − c⟩/‖x_i − c‖² (1 for an exact copy), with its
    10th and 90th percentiles ``scale_q10``, ``scale_q90``.
    """

    frac_mem: float
    frac_gen: float
    scale: torch.Tensor
    scale_q10: float
    scale_q90: float


def direction_copies(
    samples_mem: torch.Tensor, samples_gen: torch.Tensor, X_mem: torch.Tensor, X_gen: torch.Tensor,
    center_mem: torch.Tensor, center_gen: torch.Tensor,
) -> DirectionCopies:
    """Copies measured by direction, and the lengths of the memorizing samples (Chapter 7).

    Samples ``(N, d)``, training sets ``(n, d)``, centres ``(d,)`` of the memorizing and generalizing model.
    """
    d_mem, d_train = directions(samples_mem, center_mem), directions(X_mem, center_mem)
    nn_idx = (d_mem @ d_train.T).argmax(1)
    U = X_mem[nn_idx] - center_mem
    scale = ((samples_mem - center_mem) * U).sum(1) / U.square().sum(1)
    frac_gen = memorization_fraction(directions(samples_gen, center_gen), directions(X_gen, center_gen))
    return DirectionCopies(frac_mem=memorization_fraction(d_mem, d_train), frac_gen=frac_gen, scale=scale,
                           scale_q10=float(scale.quantile(0.1)), scale_q90=float(scale.quantile(0.9)))


@torch.no_grad()
def trajectory_spikiness(
    model: TimeConditionedReLUDAE, trajectory: list[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """Representation std and participation ratio of h = relu(W1ᵀ(x − c)) at every iterate.

    ``trajectory`` is the list that :func:`repdiff.sampling.sample` returns (``T + 1`` tensors ``(N, d)``).
    Returns two arrays ``(T + 1, N)``. Chapter 7's figure.
    """
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


@dataclass
class Spikiness:
    """Representation statistics along sampling trajectories of the two models (Chapter 7).

    ``std`` and ``pr`` map ``"mem"`` and ``"gen"`` to arrays ``(T + 1, N)`` (representation std and
    participation ratio over units at every iterate); ``gpr_mem`` ``(T + 1, N)`` is the memorizing model's
    participation ratio over the stored digits its units serve (``groups`` ``(p,)``, :func:`unit_groups`).
    """

    std: dict[str, np.ndarray]
    pr: dict[str, np.ndarray]
    gpr_mem: np.ndarray
    groups: torch.Tensor

    def end_medians(self) -> dict[str, float]:
        """Median over the samples at the last iterate: ``std_mem``, ``std_gen``, ``pr_mem``, ``pr_gen``,
        ``gpr_mem``."""
        vals = {"std_mem": self.std["mem"], "std_gen": self.std["gen"], "pr_mem": self.pr["mem"],
                "pr_gen": self.pr["gen"], "gpr_mem": self.gpr_mem}
        return {k: float(np.median(v[-1])) for k, v in vals.items()}


@torch.no_grad()
def spikiness_along(
    model_mem: TimeConditionedReLUDAE, model_gen: TimeConditionedReLUDAE, traj_mem: list[torch.Tensor],
    traj_gen: list[torch.Tensor], X_mem: torch.Tensor,
) -> Spikiness:
    """:func:`trajectory_spikiness` of both models, and the memorizing model's grouped participation ratio
    (units grouped by the stored digit of ``X_mem`` ``(n, d)`` they serve). Trajectories as
    :func:`repdiff.sampling.sample` returns them. Chapter 7."""
    std_m, pr_m = trajectory_spikiness(model_mem, traj_mem)
    std_g, pr_g = trajectory_spikiness(model_gen, traj_gen)
    groups = unit_groups(model_mem, X_mem)
    gpr_m = np.stack([grouped_participation_ratio(model_mem.representation(x), groups).numpy() for x in traj_mem])
    return Spikiness(std={"mem": std_m, "gen": std_g}, pr={"mem": pr_m, "gen": pr_g}, gpr_mem=gpr_m, groups=groups)


def column_rms(model: TimeConditionedReLUDAE) -> float:
    """Root-mean-square length of the columns of W1: the scale of the representation on pure noise
    (Chapter 7)."""
    return float(model.W1.detach().norm(dim=0).square().mean().sqrt())


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
