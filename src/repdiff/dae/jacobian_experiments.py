"""What Chapter 8 measures with denoiser Jacobians on a Gaussian mixture with known clusters (paper Cor. 3.3).

- :func:`wiener_comparison`: Jacobians at noisy points of each cluster against the cluster's rank-2 Wiener map
  and the plain rank-2 projector, one :class:`WienerRow` per (σ, cluster), summarised by
  :func:`wiener_summary`;
- :func:`cluster_gains`: the learned gains along the top two eigen-directions of each cluster at clean points,
  over σ, and :func:`gain_table` to print learned gains beside the three candidate formulas.

The building blocks (Jacobians, Wiener maps, gains) are in :mod:`repdiff.dae.jacobians`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from repdiff.dae.jacobians import (
    candidate_separation,
    denoiser_jacobian,
    gain_along,
    gain_candidates,
    relative_error,
    subspace_cosines,
    wiener_map,
)
from repdiff.dae.toy_diffusion import TimeConditionedReLUDAE

__all__ = ["WienerRow", "wiener_comparison", "wiener_summary", "wiener_table", "ClusterGains", "cluster_gains",
           "gain_table"]


@dataclass
class WienerRow:
    """Medians over the points of one cluster at one σ (Chapter 8).

    ``err``, ``err_proj``: relative Frobenius error of J against the rank-2 Wiener map and the rank-2
    projector; ``cos2``: cosine of the larger principal angle between the top-2 singular subspace of J and
    the top-2 eigen-directions of S_k; ``n_active``: mean number of active units; ``gain1``/``gain2``: u_jᵀ J u_j
    along the eigen-directions u_1, u_2, beside the Wiener map's ``wgain1``/``wgain2``.
    """

    sigma: float
    cluster: int
    err: float
    cos2: float
    n_active: float
    gain1: float
    wgain1: float
    gain2: float
    wgain2: float
    err_proj: float


def _cluster_points(X: torch.Tensor, labels: np.ndarray, c: int, n: int) -> torch.Tensor:
    return X[torch.as_tensor(labels == c)][:n]


def wiener_comparison(
    model: TimeConditionedReLUDAE, X: torch.Tensor, labels: np.ndarray, S: torch.Tensor,
    sigmas: Sequence[float], generator: torch.Generator, *, n: int = 32,
) -> list[WienerRow]:
    """Compare the Jacobian at ``n`` noisy points of each cluster with the cluster's Wiener map (Cor. 3.3).

    Args:
        model: the MoG model; X: its training set ``(N, d)``; labels: cluster labels ``(N,)``;
        S: second moments ``(K, d, d)``; sigmas: noise levels; generator: draws the noise (σ outer, cluster
        inner loop, so the result depends on the generator's state).

    Returns:
        one :class:`WienerRow` per (σ, cluster), σ-major. Chapter 8.
    """
    rows = []
    for sig in sigmas:
        for c in range(S.shape[0]):
            xs = _cluster_points(X, labels, c, n)
            y = xs + sig * torch.randn(xs.shape, generator=generator)
            J = denoiser_jacobian(model, y, sig)
            W = wiener_map(S[c], sig, rank=2)
            err = relative_error(J, W.expand_as(J))
            P = wiener_map(S[c], 1e-6, rank=2)  # the plain rank-2 projector (gains 1)
            err_p = relative_error(J, P.expand_as(J))
            top2 = torch.linalg.svd(J)[0][:, :, :2]  # (n, d, 2)
            evecs = torch.linalg.eigh(S[c])[1].flip(1)[:, :2]
            cosines = torch.stack([subspace_cosines(t, evecs) for t in top2])
            with torch.no_grad():
                n_active = (model.preactivation(y) > 0).sum(1).float()
            gains = torch.einsum("ia,nij,ja->na", evecs, J, evecs).median(0).values  # u_jᵀ J u_j, j = 1, 2
            wgains = torch.einsum("ia,ij,ja->a", evecs, W, evecs)
            rows.append(WienerRow(sig, c, err.median().item(), cosines[:, 1].median().item(), n_active.mean().item(),
                                  gains[0].item(), wgains[0].item(), gains[1].item(), wgains[1].item(),
                                  err_p.median().item()))
    return rows


def wiener_summary(rows: list[WienerRow], *, small: float = 0.1, large: float = 0.5) -> dict[str, float]:
    """The numbers Chapter 8 quotes from :func:`wiener_comparison` (worst cluster at σ ≤ ``small``, at ``large``).

    Keys: ``err_max_small``, ``errp_max_small``, ``wmin_small``, ``cos_min_small``, ``err_max_05``,
    ``active_05``, ``gain1_small``, ``gain2_small``, ``wgain2_small``.
    """
    lo = [r for r in rows if r.sigma <= small]
    hi = [r for r in rows if r.sigma == large]
    return {
        "err_max_small": max(r.err for r in lo),
        "errp_max_small": max(r.err_proj for r in lo),
        "wmin_small": min(min(r.wgain1, r.wgain2) for r in lo),
        "cos_min_small": min(r.cos2 for r in lo),
        "err_max_05": max(r.err for r in hi),
        "active_05": np.mean([r.n_active for r in hi]),
        "gain1_small": np.median([r.gain1 for r in lo]),
        "gain2_small": np.median([r.gain2 for r in lo]),
        "wgain2_small": np.median([r.wgain2 for r in lo]),
    }


@dataclass
class ClusterGains:
    """Learned gains along the top two eigen-directions u_1, u_2 of each cluster's S_k (Chapter 8).

    ``gain[j][σ]``: ``(K,)`` the median over the cluster's points of u_jᵀ J u_j (j = 1, 2);
    ``s_u``: ``(K, 2)`` the eigenvalues s_1, s_2 of each S_k.
    """

    gain: dict[int, dict[float, torch.Tensor]]
    s_u: torch.Tensor


def cluster_gains(
    model: TimeConditionedReLUDAE, X: torch.Tensor, labels: np.ndarray, S: torch.Tensor, sigmas: Sequence[float],
    *, n: int = 32,
) -> ClusterGains:
    """Jacobians at ``n`` *clean* points of each cluster with noise level σ given to the model: the mask is the
    cluster's, the per-unit gains those of σ. Arguments as :func:`wiener_comparison`. Chapter 8."""
    gain: dict[int, dict[float, torch.Tensor]] = {1: {}, 2: {}}
    evals_all = []
    for sg in sigmas:
        per_cluster: dict[int, list[torch.Tensor]] = {1: [], 2: []}
        for c in range(S.shape[0]):
            J = denoiser_jacobian(model, _cluster_points(X, labels, c, n), sg)
            ev, E = torch.linalg.eigh(S[c])
            for j in (1, 2):
                per_cluster[j].append(gain_along(J, E[:, -j]).median())
            if sg == sigmas[0]:
                evals_all.append(ev.flip(0)[:2])
        for j in (1, 2):
            gain[j][sg] = torch.stack(per_cluster[j]).double()  # (K,) one median per cluster
    return ClusterGains(gain=gain, s_u=torch.stack(evals_all).double())


def gain_table(learned: dict[float, torch.Tensor], s: torch.Tensor, n_lam: float = 0.0) -> str:
    """A table of the learned gain (median) beside the three candidate formulas and their separation, one row
    per σ in ``learned`` (``{σ: gains}``); ``s``: the matching second moments. Chapter 8."""
    lines = [" sigma  learned   Wiener  sigma-typo  projector  separation"]
    for sg, g in learned.items():
        c = gain_candidates(s, sg, n_lam)
        lines.append(f"{sg:6.2f}  {g.median():7.3f}  {c['wiener'].median():7.3f}  {c['sigma typo'].median():10.3f}"
                     f"  {c['projector'].median():9.3f}  {candidate_separation(c):10.3f}")
    return "\n".join(lines)


def wiener_table(rows: list[WienerRow]) -> str:
    """The rows of :func:`wiener_comparison` as a printed table (Chapter 8)."""
    lines = [" sigma  cluster  rel. error vs Wiener / vs projector  2nd principal cosine  active units"
             "  gain u1: J / Wiener  gain u2: J / Wiener"]
    for r in rows:
        lines.append(f"{r.sigma:6.2f}  {r.cluster:7d}  {r.err:19.3f} / {r.err_proj:.3f}  {r.cos2:20.3f}  "
                     f"{r.n_active:12.2f}  {r.gain1:9.3f} / {r.wgain1:.3f}  {r.gain2:9.3f} / {r.wgain2:.3f}")
    return "\n".join(lines)
