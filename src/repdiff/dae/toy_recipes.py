"""What a toy diffusion model is made from: a recipe, its training data, the course's three configurations.

A *recipe* (:class:`Recipe`, stored as JSON) names the data, the architecture and the optimiser of a
:class:`repdiff.dae.toy_diffusion.TimeConditionedReLUDAE`; it fully determines the trained weights (same
seed, same numbers on one machine; :mod:`repdiff.dae.toy_training` trains it). The course's three recipes
are :data:`MEM_RECIPE`, :data:`GEN_RECIPE` (Chapters 7-8) and :data:`MOG_RECIPE` (Chapter 8).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from repdiff.data.synthetic import GaussianMixture, load_digits

__all__ = [
    "Recipe",
    "make_training_data",
    "mog_clusters",
    "mog_clusters_of",
    "MEM_RECIPE",
    "GEN_RECIPE",
    "MOG_RECIPE",
    "negatively_correlated_digits",
]


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
    with β < 0) scaled to norm ``norm``; each Σ_k has ``rank`` directions with variances ``spread``, plus
    ``floor`` times the identity. All K(1 + rank) directions come from one orthonormal basis, so each
    cluster's variance directions are orthogonal to all means *and to the other clusters'* variance
    directions: the clusters' Wiener blocks of Cor. 3.3 live in separate subspaces, which Chapter 8's block
    test needs. (:func:`repdiff.data.synthetic.low_rank_gaussian_mixture` builds means of the same
    geometry but draws each cluster's variance directions independently, orthogonal only to the means;
    in d = 32 the planes of two clusters then meet at principal cosines up to about 0.5, and the learned
    blocks mix.)
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


def mog_clusters_of(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mog_clusters` for a recipe's ``{"kind": "mog", ...}`` data entry (its keys are the arguments;
    ``n`` is the number of samples). Returns means ``(K, d)``, covariances and second moments ``(K, d, d)``.
    Chapter 8."""
    return mog_clusters(
        K=int(data.get("K", 4)), d=int(data.get("d", 32)), rank=int(data.get("rank", 2)),
        norm=float(data.get("norm", 3.0)), spread=tuple(data.get("spread", (0.5, 0.25))),
        floor=float(data.get("floor", 0.005)), seed=int(data.get("seed", 0)),
    )


def make_training_data(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The training set ``(n, d)`` a recipe's ``data`` entry names, and cluster labels ``(n,)`` (MoG only)."""
    kind = data.get("kind")
    if kind == "digits":
        if "indices" in data:
            return load_digits()[np.asarray(data["indices"], dtype=int)], None
        return load_digits(n=int(data["n"]), seed=int(data.get("seed", 0)), shuffle=True), None
    if kind == "mog":
        means, covs, _ = mog_clusters_of(data)
        K = len(means)
        gm = GaussianMixture(np.full(K, 1.0 / K), means, covs)
        X, labels = gm.sample(int(data["n"]), np.random.default_rng(int(data.get("seed", 0)) + 1))
        return X, labels
    raise ValueError(f"unknown data kind {kind!r}")


# ----------------------------------------------------------------------------------------------------------
# the course's configurations (Chapters 7-8)

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
    X = load_digits()
    Xc = X - X.mean(0)
    chosen = [0]
    for i in range(1, len(X)):
        if len(chosen) >= max_n:
            break
        if (Xc[chosen] @ Xc[i] < 0).all():
            chosen.append(i)
    return chosen
