"""Input checks and conversions shared by the closed forms of the DAE (Chapters 2-5).

Every closed-form function of :mod:`repdiff.theory` takes numpy arrays or torch tensors (COURSE.md §5):
these helpers validate a data matrix ``(n, d)``, a width, a pair of weight matrices ``(d, p)`` or a second
moment ``(d, d)``, do the work in float64 torch, and give back the kind the caller passed in. They also hold
the eigen-decompositions the closed forms share (:func:`top_eig`, :func:`sorted_eig`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from repdiff._arrays import ArrayLike, like_input, require_finite, to_tensor

__all__ = [
    "nonneg",
    "width",
    "data_matrix",
    "output_like",
    "scalar_out",
    "top_eig",
    "weights_pair",
    "data_like",
    "loss_inputs",
    "second_moment",
    "sorted_eig",
]


def nonneg(value: float, name: str) -> float:
    """``float(value)`` if it is finite and >= 0, else ``ValueError`` naming ``name``."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def width(p: int, name: str = "p") -> int:
    """``int(p)`` if it is a positive integer (a number of hidden units), else ``ValueError``."""
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
        raise ValueError(f"{name} must be a positive integer (a number of hidden units), got {p!r}")
    return int(p)


def data_matrix(X: ArrayLike, name: str = "X") -> tuple[torch.Tensor, bool, torch.dtype]:
    """Validate a data matrix ``(n, d)``; return it in float64, whether it was numpy, and its dtype."""
    t, was_np = to_tensor(X, name)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (n, d) with n, d >= 1 (rows are samples), got {tuple(t.shape)}"
        )
    require_finite(t, name)
    return t.double(), was_np, t.dtype


def output_like(t: torch.Tensor, was_np: bool, dtype: torch.dtype) -> ArrayLike:
    """A float64 result in the caller's kind: numpy (float64), or a tensor of the caller's ``dtype``."""
    return like_input(t if was_np else t.to(dtype), was_np)


def scalar_out(t: torch.Tensor, was_np: bool) -> float | torch.Tensor:
    """Losses: a Python float for numpy inputs, a 0-d (differentiable) tensor for torch inputs."""
    return float(t.detach()) if was_np else t


def top_eig(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenpairs of the Gram matrix XᵀX ``(d, d)``, from the SVD of ``X`` (more accurate).

    Returns ``(eigvals (k,), U (d, k))``, eigenvalues in decreasing order; when ``k`` exceeds the rank
    bound min(n, d) the missing eigenvalues are 0 with eigenvectors completing an orthonormal set.
    Eigenvector signs are fixed so that ⟨u_j, Σ_i x_i⟩ >= 0 (else the largest |entry| is positive), which
    makes the output deterministic and puts the columns on the data's side of the ReLU.
    """
    n, d = X.shape
    if k > d:
        raise ValueError(f"cannot take {k} eigenvectors in dimension d = {d}: need p <= d")
    # full_matrices only when n < d (then Vh still spans R^d); for tall X the reduced SVD already does
    _, S, Vh = torch.linalg.svd(X, full_matrices=n < d)
    eig = torch.zeros(d, dtype=X.dtype)
    eig[: S.shape[0]] = S.square()
    U = Vh.T[:, :k].clone()
    total = X.sum(0)
    for j in range(k):
        proj = float(U[:, j] @ total)
        if abs(proj) > 1e-12 * (float(total.norm()) + 1e-300):
            flip = proj < 0
        else:
            flip = float(U[int(U[:, j].abs().argmax()), j]) < 0
        if flip:
            U[:, j] = -U[:, j]
    return eig[:k], U


def weights_pair(W1: ArrayLike, W2: ArrayLike, d: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate two weight matrices ``(d, p)`` of the same shape; return them (W2 cast like W1) and whether
    W1 was numpy."""
    A, was_np = to_tensor(W1, "W1")
    B, _ = to_tensor(W2, "W2")
    if A.ndim != 2 or B.shape != A.shape:
        raise ValueError(f"W1 and W2 must both have shape (d, p); got {tuple(A.shape)} and {tuple(B.shape)}")
    if A.shape[0] != d:
        raise ValueError(f"W1 and W2 have {A.shape[0]} rows but the data dimension is d = {d}")
    require_finite(A, "W1")
    require_finite(B, "W2")
    return A, B.to(A), was_np


def data_like(X: ArrayLike, ref: torch.Tensor) -> torch.Tensor:
    """Validate a data matrix ``(n, d)`` and cast it to the dtype and device of ``ref``."""
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2 or Xt.shape[0] == 0:
        raise ValueError(f"X must have shape (n, d) with n >= 1, got {tuple(Xt.shape)}")
    require_finite(Xt, "X")
    return Xt.to(ref)


def loss_inputs(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float, bool]:
    """Validate and convert the inputs every DAE loss takes: ``(W1, W2, X, sigma, lam, was_numpy)``."""
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(Xt.shape)}")
    A, B, was_np = weights_pair(W1, W2, Xt.shape[1])
    return A, B, data_like(Xt, A), nonneg(sigma, "sigma"), nonneg(lam, "lam"), was_np


def second_moment(S: ArrayLike, name: str = "S") -> tuple[torch.Tensor, bool]:
    """Validate a symmetric ``(d, d)`` matrix; return it symmetrised in float64 and whether it was numpy."""
    St, was_np = to_tensor(S, name)
    if St.ndim != 2 or St.shape[0] != St.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix, got shape {tuple(St.shape)}")
    require_finite(St, name)
    St = St.double()
    if float((St - St.T).abs().max()) > 1e-8 * max(1.0, float(St.abs().max())):
        raise ValueError(f"{name} must be symmetric")
    return 0.5 * (St + St.T), was_np


def sorted_eig(S: torch.Tensor, name: str = "S") -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of a positive semi-definite ``S (d, d)`` in decreasing order, ``((d,), (d, d))``;
    ``ValueError`` if ``S`` has a clearly negative eigenvalue."""
    s, U = torch.linalg.eigh(S)
    s, U = s.flip(0), U.flip(1)
    if float(s[-1]) < -1e-10 * max(1.0, float(s[0])):
        raise ValueError(
            f"{name} must be positive semi-definite (a second-moment matrix); "
            f"min eigenvalue {float(s[-1]):.3g}"
        )
    return s.clamp_min(0.0), U
