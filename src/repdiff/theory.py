"""Closed forms of the course: optimal denoisers and the two-layer ReLU DAE's minimisers.

Chapter 1 uses :func:`empirical_denoiser`, :func:`empirical_log_density` and :func:`wiener_denoiser`.
Chapters 2-5 add the closed-form minimisers of the DAE (COURSE.md §5), further down this file.

Conventions: rows are samples, ``X`` has shape ``(n, d)``; functions accept numpy arrays or torch
tensors and return the same kind.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from repdiff._arrays import ArrayLike, like_input, require_finite, require_positive, to_tensor
from repdiff.notebook import CheckResult, check, check_range

__all__ = [
    "empirical_denoiser",
    "empirical_log_density",
    "wiener_denoiser",
    # Chapters 2-5: the two-layer (ReLU) DAE
    "shrinkage_factors",
    "linear_dae_solution",
    "cluster_block",
    "memorization_solution",
    "generalization_solution",
    "linear_dae_loss",
    "relu_dae_loss_mc",
    "relu_dae_loss_gated",
    "memorization_loss",
    "linear_map_population_loss",
    "wiener_block_test_loss",
    "printed_test_loss_bound",
    "limit_block",
]


def _check_query_and_data(y: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validate shapes; return ``y`` as a 2-D batch and whether it was a single vector."""
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError("the training set X is empty (n = 0): the empirical denoiser needs n >= 1 points")
    single = y.ndim == 1
    y2 = y.unsqueeze(0) if single else y
    if y2.ndim != 2 or y2.shape[1] != X.shape[1]:
        raise ValueError(
            f"y must have shape (d,) or (m, d) with d = {X.shape[1]} (the data dimension of X), "
            f"got {tuple(y.shape)}"
        )
    require_finite(y2, "y")
    require_finite(X, "X")
    return y2, single


def empirical_denoiser(y: ArrayLike, X: ArrayLike, sigma: float, *, chunk_size: int = 2048) -> ArrayLike:
    """The optimal denoiser of the empirical distribution of ``X`` (the posterior mean, paper Eq. 3).

    f_emp(y) = Σ_i w_i(y) x_i with w(y) = softmax_i(−‖y − x_i‖² / (2σ²)).

    The softmax is evaluated as a running log-sum-exp over chunks of training points, so it neither
    overflows for tiny σ (where it tends to the nearest training point) nor needs an ``(m, n)`` matrix
    in memory for large ``n``.

    Args:
        y: noisy points, shape ``(d,)`` or ``(m, d)``.
        X: training set, shape ``(n, d)``.
        sigma: noise level σ > 0.
        chunk_size: training points handled at once.

    Returns:
        f_emp(y), same shape and kind (numpy/torch) as ``y``.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(device=yt.device, dtype=yt.dtype)
    y2, single = _check_query_and_data(yt, Xt)

    m = y2.shape[0]
    run_max = torch.full((m,), -math.inf, dtype=y2.dtype, device=y2.device)
    run_sum = torch.zeros(m, dtype=y2.dtype, device=y2.device)
    acc = torch.zeros_like(y2)
    for start in range(0, Xt.shape[0], chunk_size):
        Xc = Xt[start : start + chunk_size]
        sq_dist = torch.cdist(y2, Xc, compute_mode="donot_use_mm_for_euclid_dist").square()
        logits = -sq_dist / (2.0 * sigma**2)  # (m, c)
        new_max = torch.maximum(run_max, logits.max(dim=1).values)
        rescale = torch.exp(run_max - new_max)  # exp(-inf) = 0 on the first chunk
        weights = torch.exp(logits - new_max[:, None])
        run_sum = run_sum * rescale + weights.sum(dim=1)
        acc = acc * rescale[:, None] + weights @ Xc
        run_max = new_max
    out = acc / run_sum[:, None]
    return like_input(out[0] if single else out, y_np)


def empirical_log_density(y: ArrayLike, X: ArrayLike, sigma: float) -> ArrayLike:
    """log p_σ(y) for the empirical distribution of ``X`` blurred by N(0, σ²I).

    p_σ(y) = (1/n) Σ_i N(y; x_i, σ²I). Differentiable in ``y`` (torch), which is how Chapter 1 checks
    Tweedie's formula f(y) = y + σ² ∇ log p_σ(y) against :func:`empirical_denoiser`.

    Returns:
        shape ``()`` for ``y`` of shape ``(d,)``, ``(m,)`` for ``(m, d)``.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    Xt, _ = to_tensor(X, "X")
    Xt = Xt.to(device=yt.device, dtype=yt.dtype)
    y2, single = _check_query_and_data(yt, Xt)
    n, d = Xt.shape
    sq_dist = ((y2[:, None, :] - Xt[None, :, :]) ** 2).sum(-1)
    log_p = (
        torch.logsumexp(-sq_dist / (2 * sigma**2), dim=1)
        - math.log(n)
        - 0.5 * d * math.log(2 * math.pi * sigma**2)
    )
    return like_input(log_p[0] if single else log_p, y_np)


def wiener_denoiser(y: ArrayLike, mean: ArrayLike, cov: ArrayLike, sigma: float) -> ArrayLike:
    """The optimal denoiser of a Gaussian N(μ, Σ): the linear (Wiener) map μ + Σ(Σ + σ²I)⁻¹(y − μ).

    Args:
        y: ``(d,)`` or ``(m, d)``; mean: ``(d,)``; cov: ``(d, d)`` symmetric positive semi-definite.
    """
    sigma = require_positive(sigma, "sigma")
    yt, y_np = to_tensor(y, "y")
    mu, _ = to_tensor(mean, "mean")
    S, _ = to_tensor(cov, "cov")
    mu, S = mu.to(yt), S.to(yt)
    d = mu.shape[-1]
    if mu.ndim != 1 or S.shape != (d, d):
        raise ValueError(f"mean must be (d,) and cov (d, d); got {tuple(mu.shape)} and {tuple(S.shape)}")
    if yt.shape[-1] != d or yt.ndim not in (1, 2):
        raise ValueError(f"y must have shape (d,) or (m, d) with d = {d}, got {tuple(yt.shape)}")
    require_finite(yt, "y")
    gain = torch.linalg.solve(S + sigma**2 * torch.eye(d, dtype=S.dtype, device=S.device), S)  # (Σ+σ²I)⁻¹Σ
    out = mu + (yt - mu) @ gain  # row form of μ + Σ(Σ+σ²I)⁻¹(y−μ); the two matrices commute
    return like_input(out, y_np)


# ---------------------------------------------------------------------------------------------------------
# Chapters 2-5: the two-layer DAE f(x) = W2 relu(W1ᵀ x) and its closed-form minimisers.
#
# Loss (paper Eq. 6), rows are samples, X is (n, d), W1 and W2 are (d, p):
#     L(W1, W2) = (1/n) Σ_i E_ε ‖f(x_i + σε) − x_i‖² + λ (‖W1‖²_F + ‖W2‖²_F)
# (squared error summed over the d coordinates, averaged over the n samples; λ multiplies both norms).
# ---------------------------------------------------------------------------------------------------------


def _nonneg(value: float, name: str) -> float:
    """``float(value)`` if it is finite and >= 0, else ``ValueError`` naming ``name``."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _width(p: int, name: str = "p") -> int:
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
        raise ValueError(f"{name} must be a positive integer (a number of hidden units), got {p!r}")
    return int(p)


def _data(X: ArrayLike, name: str = "X") -> tuple[torch.Tensor, bool, torch.dtype]:
    """Validate a data matrix ``(n, d)``; return it in float64, whether it was numpy, and its dtype."""
    t, was_np = to_tensor(X, name)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (n, d) with n, d >= 1 (rows are samples), got {tuple(t.shape)}"
        )
    require_finite(t, name)
    return t.double(), was_np, t.dtype


def _out(t: torch.Tensor, was_np: bool, dtype: torch.dtype) -> ArrayLike:
    return like_input(t if was_np else t.to(dtype), was_np)


def _scalar_out(t: torch.Tensor, was_np: bool) -> float | torch.Tensor:
    """Losses: a Python float for numpy inputs, a 0-d (differentiable) tensor for torch inputs."""
    return float(t.detach()) if was_np else t


def _top_eig(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def shrinkage_factors(eigvals: ArrayLike, n_noise: float, sigma: float, n_lam: float) -> ArrayLike:
    """The eigen-shrinkage of the linear DAE: a_j = max(0, (λ_j − nλ) / (λ_j + n σ²)) (Chapter 2).

    Args:
        eigvals: Gram eigenvalues λ_j of XᵀX, any shape.
        n_noise: the sample count multiplying σ² (n for a whole set, n_k for one cluster in Eq. 8).
        sigma: noise level σ >= 0.
        n_lam: the regularisation term nλ (n = size of the *whole* training set).

    Returns:
        a_j in [0, 1], same shape and kind as ``eigvals``; 0 where λ_j <= nλ (the direction is switched
        off: keeping it would cost more weight decay than it saves in reconstruction); a_j < 1 whenever
        n σ² + nλ > 0, and a_j = 1 exactly when σ = 0 (or ``n_noise`` = 0) and nλ = 0 (a plain projector).
    """
    lam_t, was_np = to_tensor(eigvals, "eigvals")
    sigma = _nonneg(sigma, "sigma")
    n_lam = _nonneg(n_lam, "n_lam")
    n_noise = _nonneg(n_noise, "n_noise")
    require_finite(lam_t, "eigvals")
    denom = lam_t + n_noise * sigma**2
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    a = torch.where(lam_t > n_lam, (lam_t - n_lam) / safe, torch.zeros_like(lam_t))
    return like_input(a, was_np)


def linear_dae_solution(X: ArrayLike, p: int, sigma: float, lam: float) -> ArrayLike:
    """Global minimiser (W1 = W2 = W) of the regularised *linear* DAE f(x) = W2 W1ᵀ x (Chapter 2).

    With XᵀX = U diag(λ_j) Uᵀ (λ_1 >= λ_2 >= ...), the minimiser keeps the top-``p`` eigen-directions
    and shrinks them:

        W = U_p diag(sqrt(a_j)),   a_j = (λ_j − nλ) / (λ_j + nσ²),   so   W Wᵀ = U_p diag(a_j) U_pᵀ.

    Columns with λ_j <= nλ are exactly zero (a_j = 0: such a direction is not worth its weight decay),
    as are columns beyond the rank of X. Any W O with O orthogonal (p × p) is an equally good minimiser;
    this function returns the one with O = I (signs fixed so every column points to the data's side).

    Args:
        X: training set ``(n, d)``; p: hidden width (1 <= p <= d); sigma: σ >= 0; lam: λ >= 0.

    Returns:
        W ``(d, p)``, same kind as ``X``.
    """
    Xt, was_np, dtype = _data(X)
    n, d = Xt.shape
    p = _width(p)
    if p > d:
        raise ValueError(f"p = {p} hidden units exceed the data dimension d = {d}: need p <= d")
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    eig, U = _top_eig(Xt, p)
    a = shrinkage_factors(eig, n, sigma, n * lam)
    return _out(U * a.sqrt(), was_np, dtype)


def _rotate_balanced(W: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Right-multiply ``W (d, q)`` by a Householder reflection H so that every column of W H has the same
    positive inner product ‖Wᵀv‖/sqrt(q) with ``direction`` v. W H Hᵀ Wᵀ = W Wᵀ is unchanged."""
    q = W.shape[1]
    v = W.T @ direction
    if float(v.norm()) == 0.0:
        return W
    vhat = v / v.norm()
    target = torch.full_like(vhat, 1.0 / math.sqrt(q))
    u = vhat - target
    if float(u.norm()) < 1e-14:
        return W
    u = u / u.norm()
    H = torch.eye(q, dtype=W.dtype) - 2.0 * torch.outer(u, u)
    return W @ H


def cluster_block(
    X_k: ArrayLike, n: int, p_k: int, sigma: float, lam: float, *, rotation: str = "identity"
) -> ArrayLike:
    """One block of the paper's local minimiser (Theorem 3.1, Eq. 8) for cluster ``X_k`` (Chapters 3-5).

        W_k = U_k diag( sqrt( (λ_j − nλ) / (λ_j + n_k σ²) ) ) O_kᵀ,   j = 1..p_k,

    with λ_j, U_k the top-``p_k`` eigenpairs of X_kᵀX_k, n_k = len(X_k) in the noise term and the size ``n``
    of the *whole* training set in nλ (the weight decay is shared by all samples). W_k W_kᵀ does not depend
    on the orthogonal O_k.

    Args:
        X_k: the cluster, ``(n_k, d)``. n: size of the whole training set (n >= n_k).
        p_k: width of the block. sigma: σ >= 0. lam: λ >= 0.
        rotation: ``"identity"`` (O_k = I, eigenvector signs pointing to the cluster) or ``"balanced"``
            (O_k a reflection giving every column the same positive inner product with the cluster mean,
            the choice under which a ReLU unit of the block is "on" for the whole cluster).

    Returns:
        ``(d, p_k)``, same kind as ``X_k``.

    Raises:
        ValueError: if nλ >= λ_{p_k} (Theorem 3.1 needs nλ < λ_min(Λ_k^(p_k)) for real square roots; this
            includes p_k larger than the rank of the cluster), or on bad shapes / values.
    """
    Xt, was_np, dtype = _data(X_k, "X_k")
    n_k, d = Xt.shape
    p_k = _width(p_k, "p_k")
    if int(n) != n or n < n_k:
        raise ValueError(f"n (size of the whole training set) must be an integer >= n_k = {n_k}, got {n!r}")
    if p_k > d:
        raise ValueError(f"p_k = {p_k} exceeds the data dimension d = {d}: need p_k <= d")
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    if rotation not in ("identity", "balanced"):
        raise ValueError(f"rotation must be 'identity' or 'balanced', got {rotation!r}")
    eig, U = _top_eig(Xt, p_k)
    n_lam = n * lam
    if float(eig[-1]) <= n_lam:
        raise ValueError(
            f"Theorem 3.1 needs n*lam < the smallest of the top-{p_k} Gram eigenvalues of the cluster "
            f"(n*lam < lambda_min(Lambda_k^(p_k))), but n*lam = {n_lam:.4g} and "
            f"lambda_{p_k} = {float(eig[-1]):.4g}"
            + (" (p_k exceeds the rank of the cluster)" if float(eig[-1]) <= 1e-12 * float(eig[0]) else "")
            + ": lower lam or p_k"
        )
    W = U * ((eig - n_lam) / (eig + n_k * sigma**2)).sqrt()
    if rotation == "balanced":
        W = _rotate_balanced(W, Xt.mean(0))
    return _out(W, was_np, dtype)


def memorization_solution(
    X: ArrayLike, p: int, sigma: float, lam: float, *, require_separable: bool = False
) -> ArrayLike:
    """The memorizing local minimiser of Corollary 3.2 (Chapter 3): W = (r_1 x_1 … r_n x_n 0 … 0).

        r_i = sqrt( (‖x_i‖² − nλ) / (‖x_i‖⁴ + σ² ‖x_i‖²) ),   so column i has norm
        r_i ‖x_i‖ = sqrt( (‖x_i‖² − nλ) / (‖x_i‖² + σ²) ).

    This is Eq. 8 with every sample its own cluster (n_k = 1, p_k = 1). The corollary also assumes the
    samples are pairwise negatively correlated ((0, β)-separable with β < 0), which is what makes every
    other unit's ReLU "off" for a given training point; pass ``require_separable=True`` to enforce it.

    Args:
        X: ``(n, d)``; p: width, p >= n; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        ``(d, p)``, same kind as ``X``.

    Raises:
        ValueError: p < n (not enough units to store every sample); nλ >= ‖x_i‖² for some i (λ too large
            for a real solution); with ``require_separable``, a pair with ⟨x_i, x_j⟩ >= 0.
    """
    Xt, was_np, dtype = _data(X)
    n, d = Xt.shape
    p = _width(p)
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    if p < n:
        raise ValueError(
            f"Corollary 3.2 needs p >= n (one hidden unit per training sample), got p = {p} < n = {n}"
        )
    sq = Xt.square().sum(1)
    n_lam = n * lam
    bad = torch.nonzero(sq <= n_lam).flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"lam too large for a real solution: Corollary 3.2 needs n*lam < min_i ||x_i||^2, but "
            f"n*lam = {n_lam:.4g} >= ||x_{i}||^2 = {float(sq[i]):.4g}"
        )
    if require_separable and n > 1:
        G = Xt @ Xt.T
        off = G - torch.diag(torch.diag(G))
        off.fill_diagonal_(-math.inf)
        if float(off.max()) >= 0:
            i, j = divmod(int(off.argmax()), n)
            raise ValueError(
                f"Corollary 3.2 assumes pairwise negatively correlated samples (beta < 0), but "
                f"<x_{i}, x_{j}> = {float(G[i, j]):.4g} >= 0"
            )
    r = ((sq - n_lam) / (sq.square() + sigma**2 * sq)).sqrt()
    W = torch.zeros(d, p, dtype=Xt.dtype)
    W[:, :n] = (Xt * r[:, None]).T
    return _out(W, was_np, dtype)


def generalization_solution(
    clusters: list[ArrayLike], widths: list[int], sigma: float, lam: float, *, rotation: str = "identity"
) -> ArrayLike:
    """The block-wise local minimiser of Corollaries 3.3 / 3.4 (Chapters 4-5): (W_1 | W_2 | … | W_M).

    Block k is :func:`cluster_block` ``(clusters[k], n, widths[k], σ, λ)`` with n = Σ_k n_k. A cluster of
    n_ℓ identical copies of x_ℓ with width 1 gives the hybrid regime's memorizing column r_ℓ x_ℓ of
    Corollary 3.4, i.e. Eq. 9 with nλ replaced by nλ / n_ℓ.

    Args:
        clusters: list of ``(n_k, d)`` arrays (same d). widths: list of p_k (same length).
        sigma: σ >= 0. lam: λ >= 0. rotation: see :func:`cluster_block`.

    Returns:
        ``(d, Σ_k p_k)``, same kind as ``clusters[0]``.
    """
    if len(clusters) == 0 or len(clusters) != len(widths):
        raise ValueError(
            f"need one width per cluster and at least one cluster, got {len(clusters)} clusters and "
            f"{len(widths)} widths"
        )
    data = [_data(c, f"clusters[{k}]") for k, c in enumerate(clusters)]
    d = data[0][0].shape[1]
    for k, (c, _, _) in enumerate(data):
        if c.shape[1] != d:
            raise ValueError(f"clusters[{k}] has dimension {c.shape[1]}, clusters[0] has {d}: all must match")
    n = sum(c.shape[0] for c, _, _ in data)
    blocks = [
        cluster_block(c, n, w, sigma, lam, rotation=rotation)
        for (c, _, _), w in zip(data, widths, strict=True)
    ]
    W = torch.cat(blocks, dim=1)
    _, was_np, dtype = data[0]
    return _out(W, was_np, dtype)


def _weights_pair(W1: ArrayLike, W2: ArrayLike, d: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    A, was_np = to_tensor(W1, "W1")
    B, _ = to_tensor(W2, "W2")
    if A.ndim != 2 or B.shape != A.shape:
        raise ValueError(f"W1 and W2 must both have shape (d, p); got {tuple(A.shape)} and {tuple(B.shape)}")
    if A.shape[0] != d:
        raise ValueError(f"W1 and W2 have {A.shape[0]} rows but the data dimension is d = {d}")
    require_finite(A, "W1")
    require_finite(B, "W2")
    return A, B.to(A), was_np


def _data_like(X: ArrayLike, ref: torch.Tensor) -> torch.Tensor:
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2 or Xt.shape[0] == 0:
        raise ValueError(f"X must have shape (n, d) with n >= 1, got {tuple(Xt.shape)}")
    require_finite(Xt, "X")
    return Xt.to(ref)


def _loss_inputs(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float, bool]:
    """Validate and convert the inputs every DAE loss takes: ``(W1, W2, X, sigma, lam, was_numpy)``."""
    Xt, _ = to_tensor(X, "X")
    if Xt.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(Xt.shape)}")
    A, B, was_np = _weights_pair(W1, W2, Xt.shape[1])
    return A, B, _data_like(Xt, A), _nonneg(sigma, "sigma"), _nonneg(lam, "lam"), was_np


def linear_dae_loss(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float
) -> float | torch.Tensor:
    """Exact expected loss of the *linear* DAE f(x) = W2 W1ᵀ x (Chapter 2).

        L = (1/n) ‖X W1 W2ᵀ − X‖²_F + σ² ‖W2 W1ᵀ‖²_F + λ (‖W1‖²_F + ‖W2‖²_F)

    (the noise averages out exactly: E‖M(x + σε) − x‖² = ‖Mx − x‖² + σ²‖M‖²_F).

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor (differentiable in W1, W2) for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = _loss_inputs(W1, W2, X, sigma, lam)
    n = Xt.shape[0]
    M = A @ B.T  # row form: x ↦ x W1 W2ᵀ
    loss = (
        (Xt @ M - Xt).square().sum() / n
        + sigma**2 * M.square().sum()
        + lam * (A.square().sum() + B.square().sum())
    )
    return _scalar_out(loss, was_np)


def relu_dae_loss_mc(
    W1: ArrayLike,
    W2: ArrayLike,
    X: ArrayLike,
    sigma: float,
    lam: float,
    *,
    n_draws: int = 256,
    seed: int = 0,
    chunk_draws: int = 64,
) -> float | torch.Tensor:
    """Monte-Carlo estimate of the ReLU DAE loss (paper Eq. 6) with fixed noise draws (Chapters 3-5).

        (1/n) Σ_i (1/D) Σ_{s=1..D} ‖W2 relu(W1ᵀ(x_i + σ ε_is)) − x_i‖² + λ(‖W1‖²_F + ‖W2‖²_F)

    The same ``seed`` gives the same ε, so two weight matrices are compared on identical noise.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0; n_draws: D >= 1 noise draws per sample.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = _loss_inputs(W1, W2, X, sigma, lam)
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    gen = torch.Generator().manual_seed(int(seed))
    n, d = Xt.shape
    # work in blocks of at most ~4M numbers (32 MB), whatever n, d and n_draws are; the block sizes depend
    # only on (n, d, chunk_draws), so the same call always draws the same noise
    budget = 1 << 22
    c_draws = max(1, min(int(chunk_draws), budget // max(1, n * d)))
    c_rows = max(1, min(n, budget // max(1, c_draws * d)))
    total = torch.zeros((), dtype=A.dtype, device=A.device)
    done = 0
    while done < n_draws:
        c = min(c_draws, n_draws - done)
        for start in range(0, n, c_rows):
            Xb = Xt[start : start + c_rows]
            eps = torch.randn(c, Xb.shape[0], d, generator=gen, dtype=torch.float64).to(A)
            out = torch.relu((Xb[None] + sigma * eps) @ A) @ B.T
            total = total + (out - Xb[None]).square().sum()
        done += c
    loss = total / (n * n_draws) + lam * (A.square().sum() + B.square().sum())
    return _scalar_out(loss, was_np)


def relu_dae_loss_gated(
    W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, *, masks: ArrayLike | None = None
) -> float | torch.Tensor:
    """ReLU DAE loss computed exactly under the assumption that the ReLU pattern does not move with the noise.

    If sample i switches on the units in ``masks[i]`` (default: the units with wᵀx_i > 0 at the clean input)
    for every noisy copy x_i + σε, the DAE is the linear map M_i = W2 D_i W1ᵀ on it and

        L = (1/n) Σ_i [ ‖M_i x_i − x_i‖² + σ² ‖M_i‖²_F ] + λ(‖W1‖²_F + ‖W2‖²_F).

    Under a margin (Definition 3.1) the masks are fixed except with probability ~exp(−γ²/2σ²), which is how
    the paper reduces the ReLU loss to per-cluster linear losses (Chapters 3-4). Compare with
    :func:`relu_dae_loss_mc` to see how small the difference is.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; masks: optional boolean ``(n, p)``.

    Returns:
        a Python float for numpy ``W1``; a 0-d tensor for torch ``W1``.
    """
    A, B, Xt, sigma, lam, was_np = _loss_inputs(W1, W2, X, sigma, lam)
    n, p = Xt.shape[0], A.shape[1]
    if masks is None:
        D = (Xt @ A > 0).to(A.dtype)
    else:
        D, _ = to_tensor(masks, "masks")
        if D.shape != (n, p):
            raise ValueError(f"masks must have shape (n, p) = {(n, p)}, got {tuple(D.shape)}")
        D = (D != 0).to(A)
    # bias: ‖W2 D_i W1ᵀ x_i − x_i‖²
    out = (Xt @ A * D) @ B.T
    bias = (out - Xt).square().sum()
    # variance: σ² ‖W2 D_i W1ᵀ‖²_F = σ² tr(D_i (W1ᵀW1) D_i (W2ᵀW2)) = σ² D_iᵀ (G1 ∘ G2) D_i
    G = (A.T @ A) * (B.T @ B)
    var = ((D @ G) * D).sum()
    loss = (bias + sigma**2 * var) / n + lam * (A.square().sum() + B.square().sum())
    return _scalar_out(loss, was_np)


def memorization_loss(X: ArrayLike, sigma: float, lam: float = 0.0) -> float:
    """Loss (Eq. 6) of the memorizing solution of Corollary 3.2, computed with fixed ReLU masks (Chapter 3).

    With a_i = r_i² ‖x_i‖² = (‖x_i‖² − nλ)/(‖x_i‖² + σ²):

        L = (1/n) Σ_i [ (1 − a_i)² ‖x_i‖² + σ² a_i² ] + 2λ Σ_i a_i,

    which at λ = 0 is (1/n) Σ_i σ²‖x_i‖² / (σ² + ‖x_i‖²) < σ² (the paper's dimension-free value).
    Exact for the ReLU DAE up to the ReLU pattern moving with the noise (probability ~exp(−γ²/2σ²)).

    Args:
        X: ``(n, d)``; sigma: σ >= 0; lam: λ >= 0 with nλ < min_i ‖x_i‖².
    """
    Xt, _, _ = _data(X)
    n = Xt.shape[0]
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    sq = Xt.square().sum(1)
    if float(sq.min()) <= n * lam:
        raise ValueError(
            f"lam too large for a real solution: need n*lam < min_i ||x_i||^2, got n*lam = {n * lam:.4g} "
            f">= {float(sq.min()):.4g}"
        )
    a = (sq - n * lam) / (sq + sigma**2)
    return float(((1 - a).square() * sq + sigma**2 * a.square()).mean() + 2 * lam * a.sum())


def _second_moment(S: ArrayLike, name: str = "S") -> tuple[torch.Tensor, bool]:
    St, was_np = to_tensor(S, name)
    if St.ndim != 2 or St.shape[0] != St.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix, got shape {tuple(St.shape)}")
    require_finite(St, name)
    St = St.double()
    if float((St - St.T).abs().max()) > 1e-8 * max(1.0, float(St.abs().max())):
        raise ValueError(f"{name} must be symmetric")
    return 0.5 * (St + St.T), was_np


def _sorted_eig(S: torch.Tensor, name: str = "S") -> tuple[torch.Tensor, torch.Tensor]:
    s, U = torch.linalg.eigh(S)
    s, U = s.flip(0), U.flip(1)
    if float(s[-1]) < -1e-10 * max(1.0, float(s[0])):
        raise ValueError(
            f"{name} must be positive semi-definite (a second-moment matrix); "
            f"min eigenvalue {float(s[-1]):.3g}"
        )
    return s.clamp_min(0.0), U


def linear_map_population_loss(M: ArrayLike, S: ArrayLike, sigma: float) -> float:
    """Population denoising error of the linear map x ↦ M x on data with second moment S = E[x xᵀ].

        E‖M(x + σε) − x‖² = tr((M − I) S (M − I)ᵀ) + σ² ‖M‖²_F

    (Chapter 4: the test loss of one cluster's block, exactly, without sampling). ``M``, ``S``: ``(d, d)``.
    """
    St, _ = _second_moment(S)
    Mt, _ = to_tensor(M, "M")
    if Mt.shape != St.shape:
        raise ValueError(f"M must have the shape of S, {tuple(St.shape)}; got {tuple(Mt.shape)}")
    require_finite(Mt, "M")
    sigma = _nonneg(sigma, "sigma")
    Mt = Mt.double()
    E = Mt - torch.eye(St.shape[0], dtype=St.dtype)
    return float(torch.trace(E @ St @ E.T) + sigma**2 * Mt.square().sum())


def wiener_block_test_loss(S: ArrayLike, p_k: int, sigma: float) -> float:
    """Exact population loss of the rank-p_k Wiener block U_p diag(s_j/(s_j+σ²)) U_pᵀ on second moment S.

        Σ_{j <= p_k} σ² s_j / (s_j + σ²)  +  Σ_{j > p_k} s_j,      s_j = eig_j(S), decreasing

    Each kept direction costs its bias s_jσ⁴/(s_j+σ²)² *plus* its noise variance σ²s_j²/(s_j+σ²)²; each
    dropped direction costs its whole energy (Chapter 4).
    """
    St, _ = _second_moment(S)
    p_k = _width(p_k, "p_k")
    sigma = _nonneg(sigma, "sigma")
    s, _ = _sorted_eig(St)
    if p_k > len(s):
        raise ValueError(f"p_k = {p_k} exceeds the dimension d = {len(s)}")
    kept, dropped = s[:p_k], s[p_k:]
    if sigma == 0:
        return float(dropped.sum())
    return float((sigma**2 * kept / (kept + sigma**2)).sum() + dropped.sum())


def printed_test_loss_bound(S: ArrayLike, p_k: int, sigma: float) -> float:
    """The leading terms of the test-loss bound as printed after Corollary 3.3 (one cluster, λ → 0):

        Σ_{j <= p_k} s_j σ⁴ / (s_j + σ²)²  +  Σ_{j > p_k} s_j

    It keeps only the squared-bias part of each kept direction and drops the noise-variance part
    σ² s_j² / (s_j + σ²)², so it *underestimates* :func:`wiener_block_test_loss` (Chapter 4 shows by how
    much). The finite-sample term C_k p_k / (σ² n_k) is not included (its constant is not given).
    """
    St, _ = _second_moment(S)
    p_k = _width(p_k, "p_k")
    sigma = _nonneg(sigma, "sigma")
    s, _ = _sorted_eig(St)
    if p_k > len(s):
        raise ValueError(f"p_k = {p_k} exceeds the dimension d = {len(s)}")
    kept, dropped = s[:p_k], s[p_k:]
    if sigma == 0:
        return float(dropped.sum())
    return float((kept * sigma**4 / (kept + sigma**2) ** 2).sum() + dropped.sum())


def limit_block(
    S: ArrayLike, rho: float, p_k: int, sigma: float, lam: float, *, printed_typo: bool = False
) -> ArrayLike:
    """Population limit of a cluster's block map W_k W_kᵀ (Corollary 3.3, Chapter 4):

        [ (S − (λ/ρ) I) (S + σ² I)⁻¹ ]_rank-p_k  =  U_p diag( (s_j − λ/ρ) / (s_j + σ²) ) U_pᵀ

    with s_j, U_p the top-``p_k`` eigenpairs of the mode's second moment S = μμᵀ + Σ and ρ its mixture
    weight (Eq. 8 with Λ_k ≈ n_k S and n_k ≈ ρ n). ``printed_typo=True`` uses (S + σ I)⁻¹, as the
    camera-ready prints it, so a chapter can show numerically that σ² is right.

    Args:
        S: ``(d, d)`` second moment; rho: mixture weight in (0, 1]; p_k: rank; sigma: σ >= 0; lam: λ >= 0.

    Returns:
        ``(d, d)``, same kind as ``S``.

    Raises:
        ValueError: if λ/ρ >= s_{p_k} (no real block, cf. Theorem 3.1's condition).
    """
    St, was_np = _second_moment(S)
    p_k = _width(p_k, "p_k")
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    rho = float(rho)
    if not (0 < rho <= 1):
        raise ValueError(f"rho (the mixture weight) must lie in (0, 1], got {rho!r}")
    s, U = _sorted_eig(St)
    if p_k > len(s):
        raise ValueError(f"p_k = {p_k} exceeds the dimension d = {len(s)}")
    s, U = s[:p_k], U[:, :p_k]
    if float(s[-1]) <= lam / rho:
        raise ValueError(
            f"need lam/rho < s_{p_k} (the p_k-th eigenvalue of S), got lam/rho = {lam / rho:.4g} "
            f">= {float(s[-1]):.4g}"
        )
    noise = sigma if printed_typo else sigma**2
    a = (s - lam / rho) / (s + noise)
    return like_input((U * a) @ U.T, was_np)


# ---------------------------------------------------------------------------------------------------------
# Chapters 1-4: the computations behind the chapters' claims, and the checks themselves. A chapter calls the
# check function and tests/test_negative_controls_part1a.py calls the *same* function on a named wrong answer
# (identity map, σ for σ², untrained weights, ...), which must raise CheckFailed.
# ---------------------------------------------------------------------------------------------------------


def tweedie_denoiser(log_density, y: ArrayLike, sigma: float) -> np.ndarray:
    """Tweedie's formula by automatic differentiation (Chapter 1): y + σ² ∇_y log p_σ(y).

    Args:
        log_density: callable ``(y: torch.Tensor (m, d), sigma) -> (m,)`` tensor, log p_σ(y), differentiable.
        y: ``(m, d)`` noisy points. sigma: σ > 0.

    Returns:
        ``(m, d)`` numpy array, the posterior mean E[x | y] by Tweedie's formula.
    """
    require_positive(sigma, "sigma")
    yt, _ = to_tensor(y, "y")
    if yt.ndim != 2:
        raise ValueError(f"y must have shape (m, d), got {tuple(yt.shape)}")
    yq = yt.detach().double().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(log_density(yq, sigma).sum(), yq)
    return (yq + sigma**2 * g).detach().numpy()


def check_tweedie(what: str, log_density, y: ArrayLike, sigma: float, estimate: ArrayLike, tol: float) -> CheckResult:
    """Check a posterior-mean estimate ``(m, d)`` against Tweedie's formula for ``log_density`` (Chapter 1).

    The chapter runs it on a Monte-Carlo estimate, on the mixture's responsibility-weighted Wiener formula,
    on :func:`empirical_denoiser` and on :func:`wiener_denoiser`. Wrong answers it rejects: the identity map
    f(y) = y, and a denoiser with σ in place of σ² (tests/test_negative_controls_part1a.py).
    """
    return check(what, estimate, tweedie_denoiser(log_density, y, sigma), tol=tol)


def check_dsm_minimiser(x: ArrayLike, outputs: dict[str, ArrayLike], best: str) -> dict[str, float]:
    """DSM losses E‖f(y) − x‖² of several denoisers on the same pairs, and a check that ``best`` wins (Ch. 1).

    Args:
        x: ``(m, d)`` clean points. outputs: name → ``(m, d)`` outputs f(y) on their noisy versions.
        best: the name claimed to have the lowest loss (Theorem: the posterior mean).

    Returns:
        name → DSM loss. Raises CheckFailed if another denoiser has a lower loss than ``best``.
    """
    xt = np.asarray(x, dtype=np.float64)
    if best not in outputs or len(outputs) < 2:
        raise ValueError(f"outputs must contain {best!r} and at least one competitor, got {sorted(outputs)}")
    losses = {}
    for name, f in outputs.items():
        fa = np.asarray(f, dtype=np.float64)
        if fa.shape != xt.shape:
            raise ValueError(f"outputs[{name!r}] has shape {fa.shape}, x has {xt.shape}")
        losses[name] = float(((fa - xt) ** 2).sum(1).mean())
    margin = min(v for k, v in losses.items() if k != best) - losses[best]
    check_range(f"DSM loss margin of the best competitor over {best}", margin, low=0.0)
    return losses


def linearity_defect(f, X: ArrayLike, sigma: float, *, n_pairs: int = 400, seed: int = 0) -> float:
    """Median distance of a denoiser from affine along random segments between noisy training points (Ch. 1).

    For pairs y1, y2 = x_a + σε, x_b + σε' and t ~ U(0, 1): ‖f(t y1 + (1−t) y2) − (t f(y1) + (1−t) f(y2))‖
    divided by ‖y1 − y2‖; 0 for an affine f.

    Args:
        f: ``(m, d) array, sigma -> (m, d) array``. X: ``(n, d)`` training points. sigma: σ > 0.
    """
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {Xa.shape}")
    require_positive(sigma, "sigma")
    g = np.random.default_rng(seed)
    n, d = Xa.shape
    idx = g.integers(0, n, size=(n_pairs, 2))
    y1 = Xa[idx[:, 0]] + sigma * g.standard_normal((n_pairs, d))
    y2 = Xa[idx[:, 1]] + sigma * g.standard_normal((n_pairs, d))
    t = g.uniform(size=(n_pairs, 1))
    f1, f2, fm = f(y1, sigma), f(y2, sigma), f(t * y1 + (1 - t) * y2, sigma)
    return float(np.median(np.linalg.norm(fm - (t * f1 + (1 - t) * f2), axis=1) / np.linalg.norm(y1 - y2, axis=1)))


def check_not_affine(what: str, defects: ArrayLike, *, low: float = 0.1) -> CheckResult:
    """Check that the largest linearity defect over a σ grid is at least ``low`` (Chapter 1: f_emp is not
    affine). The natural wrong answer, the Wiener filter, is affine and has defect 0 (to rounding)."""
    return check_range(what, float(np.max(np.asarray(defects, dtype=np.float64))), low=low)


def check_monte_carlo(what: str, draws: ArrayLike, expected: float, *, n_se: float = 4.0) -> dict[str, float]:
    """Check an exact value against the mean of independent Monte-Carlo draws, in standard errors (Ch. 2-3).

    Args:
        draws: ``(D,)`` i.i.d. estimates (one per noise draw or per batch of draws), D >= 2.
        expected: the exact (closed-form) value. n_se: how many standard errors are allowed.

    Returns:
        dict with ``mean``, ``se`` (standard error of the mean) and ``z`` = |mean − expected| / se.
    """
    a = np.asarray(draws, dtype=np.float64).ravel()
    if len(a) < 2:
        raise ValueError(f"need at least two Monte-Carlo draws, got {len(a)}")
    mean, se = float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a)))
    z = abs(mean - float(expected)) / se
    check_range(what, z, high=n_se)
    return {"mean": mean, "se": se, "z": z}


def linear_dae_min_loss(X: ArrayLike, p: int, sigma: float, lam: float) -> float:
    """Minimum value of the linear DAE loss from the eigenbasis formula of Chapter 2 (proof, Step 3):

        (1/n) [ Σ_{j<=p} ( λ_j (a_j − 1)² + n σ² a_j² + 2nλ a_j ) + Σ_{j>p} λ_j ],
        a_j = (λ_j − nλ)_+ / (λ_j + nσ²),  λ_j the eigenvalues of XᵀX.
    """
    Xt, _, _ = _data(X)
    n = Xt.shape[0]
    p = _width(p)
    sigma, lam = _nonneg(sigma, "sigma"), _nonneg(lam, "lam")
    eig = torch.linalg.svdvals(Xt.double()) ** 2
    eig = torch.cat([eig, torch.zeros(max(0, Xt.shape[1] - len(eig)), dtype=eig.dtype)])
    top = eig[:p]
    a = ((top - n * lam).clamp_min(0) / (top + n * sigma**2))
    val = (top * (a - 1) ** 2 + n * sigma**2 * a**2 + 2 * n * lam * a).sum() + eig[p:].sum()
    return float(val / n)


def check_linear_dae_minimum(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, p: int, sigma: float, lam: float, *,
                             tol: float = 1e-10) -> CheckResult:
    """Check that (W1, W2) ``(d, p)`` attains the eigenbasis minimum :func:`linear_dae_min_loss` (Chapter 2).

    Rejects a closed form with σ in place of σ² or without the weight-decay threshold."""
    return check("loss of W* vs the eigenbasis formula", linear_dae_loss(W1, W2, X, sigma, lam),
                 linear_dae_min_loss(X, p, sigma, lam), tol=tol)


def check_linear_dae_fit(W1: ArrayLike, W2: ArrayLike, W_star: ArrayLike, *, tol: float = 1e-6,
                         label: str = "") -> tuple[CheckResult, CheckResult]:
    """Check a trained linear DAE (W1, W2) ``(d, p)`` against the closed form W* (Chapter 2).

    Two checks: W2 W1ᵀ = W* W*ᵀ (the map, independent of the rotation O), and W1 = W2 (weight decay ties
    the layers). Rejects an untrained start, and the λ = 0 factorisation (W1 C, W2 C⁻ᵀ) for the tie.

    Returns:
        (relative error of the map, relative error of W1 vs W2).
    """
    A, B, Ws = (np.asarray(w, dtype=np.float64) for w in (W1, W2, W_star))
    err_map = check(f"{label}W2 W1^T vs closed form", B @ A.T, Ws @ Ws.T, tol=tol)
    err_tie = check(f"{label}W1 vs W2", A, B, tol=tol)
    return err_map, err_tie


def check_no_lower_loss(losses: ArrayLike, reference: float, *, slack: float = 1e-12) -> CheckResult:
    """Check that no loss found by training is below the claimed global minimum ``reference`` (Chapter 2).

    Rejects a wrong closed form (e.g. σ for σ²), whose loss trained runs beat."""
    return check_range("smallest loss found minus closed-form loss (never below 0)",
                       float(np.min(np.asarray(losses, dtype=np.float64))) - float(reference), low=-slack)


def check_separable(clusters: list[ArrayLike], sigma: float, *, min_margin: float = 3.0) -> dict[str, float]:
    """Check the separability assumption of Definition 3.1 for a partition of the training set (Ch. 3-4):
    β < 0 (negatively correlated cluster means) and margin ≥ ``min_margin`` noise standard deviations.

    Returns :func:`repdiff.data.synthetic.separability`'s dict. Rejects positively correlated data (e.g. X + 1)."""
    from repdiff.data.synthetic import (
        separability,  # data does not import theory; kept local to leave the top imports alone
    )

    sep = separability([np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in clusters])
    check_range("beta (largest cosine between cluster means) is negative", sep["beta"], high=-1e-6)
    check_range("margin / sigma", sep["margin"] / sigma, low=min_margin)
    return sep


def gated_loss_hessian(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float,
                       masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Exact gradient and Hessian of :func:`relu_dae_loss_gated` in (W1, W2) with the ReLU pattern fixed.

    Chapter 3 uses it at the memorizing solution (Corollary 3.2): with the gates frozen, as in the paper's
    argument, the loss is a polynomial in the weights, and its Hessian decides local minimality.

    Args:
        W1, W2: ``(d, p)``; X: ``(n, d)``; masks: boolean ``(n, p)``, unit j on for sample i.

    Returns:
        (gradient ``(2dp,)``, Hessian ``(2dp, 2dp)``), parameters ordered as (vec W1, vec W2), row-major.
    """
    A, B, Xt, sigma, lam, _ = _loss_inputs(W1, W2, X, sigma, lam)
    A, B, Xt = A.double(), B.double(), Xt.double()
    D, _ = to_tensor(masks, "masks")

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return relu_dae_loss_gated(a, b, Xt, sigma, lam, masks=D)

    a0, b0 = A.detach().clone().requires_grad_(True), B.detach().clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(f(a0, b0), (a0, b0))
    H = torch.autograd.functional.hessian(f, (A.detach(), B.detach()), vectorize=True)
    m = A.numel()
    Hm = torch.cat([torch.cat([H[i][j].reshape(m, m) for j in range(2)], 1) for i in range(2)], 0)
    return torch.cat([ga.flatten(), gb.flatten()]).numpy(), (0.5 * (Hm + Hm.T)).numpy()


def check_local_minimum(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, masks: ArrayLike,
                        *, n_flat: int = 0, grad_tol: float = 1e-10, eig_tol: float = 1e-9) -> dict:
    """Check that (W1, W2) is a local minimum of the gated loss with pattern ``masks`` (Chapter 3).

    Three checks on the exact gradient g and Hessian H (:func:`gated_loss_hessian`): ‖g‖ ≤ ``grad_tol``
    (stationary); the ``n_flat`` smallest eigenvalues are zero to ``eig_tol`` (the flat directions the
    chapter explains, e.g. a sample split over two units); every other eigenvalue is > ``eig_tol``.
    Rejects a saddle (W = 0, or a memorizer that dropped a sample: negative eigenvalues) and a closed form
    with wrong r_i (nonzero gradient).

    Returns:
        dict with ``grad_norm``, ``eigvals`` (ascending, ``(2dp,)``) and ``hessian`` (``(2dp, 2dp)``).
    """
    g, H = gated_loss_hessian(W1, W2, X, sigma, lam, masks)
    ev = np.linalg.eigvalsh(H)
    gn = float(np.linalg.norm(g))
    check_range("gradient norm of the gated loss", gn, high=grad_tol)
    if n_flat:
        check_range(f"largest |eigenvalue| among the {n_flat} flat directions", float(np.abs(ev[:n_flat]).max()),
                    high=eig_tol)
    check_range("smallest Hessian eigenvalue outside the flat directions", float(ev[n_flat]), low=eig_tol)
    return {"grad_norm": gn, "eigvals": ev, "hessian": H}


def storage_shares(W1: ArrayLike, W2: ArrayLike, X: ArrayLike) -> np.ndarray:
    """Unit j's share of storing sample i, (x̂_iᵀ w_{1,j})(x̂_iᵀ w_{2,j}) if unit j is on for x_i (Ch. 3).

    ``W1, W2``: ``(d, p)``; ``X``: ``(n, d)`` → ``(n, p)``. Row i sums to x̂_iᵀ W2 D_i W1ᵀ x̂_i."""
    A, B, Xa = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X))
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    return (Xhat @ A) * (Xhat @ B) * (Xa @ A > 0)


def check_memorizer(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, sigma: float, lam: float, W_mem: ArrayLike, *,
                    tol: float = 0.02, loss_tol: float = 0.01, min_cos: float = 0.98,
                    n_draws: int = 20000) -> dict[str, float]:
    """Check a trained ReLU DAE (W1, W2) ``(d, p)`` against the memorizing closed form ``W_mem`` (Chapter 3).

    Four checks: W2 W1ᵀ vs W_mem W_memᵀ (relative, ``tol``); the Monte-Carlo loss vs W_mem's on the same
    noise (``loss_tol``); the weight stored along each sample (row sums of :func:`storage_shares`) vs
    r_i²‖x_i‖² (``tol``); every unit holding ≥ 10% of a sample points along it (|cos| ≥ ``min_cos``).
    Rejects an untrained network, the linear DAE of Chapter 2 and r_i with σ for σ².

    Returns:
        dict with ``err_M``, ``err_L``, ``err_a``, ``L_trained``, ``min_cos`` and ``active`` ((n, p) bool).
    """
    A, B, Xa, Wm = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X, W_mem))
    n = len(Xa)
    err_M = check("trained W2 W1^T vs W_mem W_mem^T", B @ A.T, Wm @ Wm.T, tol=tol)
    L_trained = relu_dae_loss_mc(A, B, Xa, sigma, lam, n_draws=n_draws, seed=1)
    L_ref = relu_dae_loss_mc(Wm, Wm, Xa, sigma, lam, n_draws=n_draws, seed=1)
    err_L = check("trained loss vs loss of W_mem (Monte Carlo, same noise)", L_trained, L_ref, tol=loss_tol)
    share = storage_shares(A, B, Xa)
    a_theory = np.linalg.norm(Wm[:, :n], axis=0) ** 2
    err_a = check("weight stored along each sample (sum of unit shares) vs r_i^2 |x_i|^2", share.sum(1),
                  a_theory, tol=tol)
    active = share > 0.1 * a_theory[:, None]
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    cos = np.abs(Xhat @ A) / np.maximum(np.linalg.norm(A, axis=0), 1e-300)
    mc = min(cos[i, active[i]].min() for i in range(n))
    check_range("smallest |cosine| between an active unit and the sample it stores", mc, low=min_cos)
    return {"err_M": float(err_M), "err_L": float(err_L), "err_a": float(err_a), "L_trained": L_trained,
            "min_cos": float(mc), "active": active}


def memorization_errors(W1: ArrayLike, W2: ArrayLike, X: ArrayLike, W_mem: ArrayLike) -> dict[str, float]:
    """How far a network's map W2 W1ᵀ is from W_mem W_memᵀ (Chapter 3): ``err`` (relative Frobenius, whole
    space) and ``err_span`` (both maps compressed to the span of the training data, relative to W_mem's)."""
    A, B, Xa, Wm = (np.asarray(w, dtype=np.float64) for w in (W1, W2, X, W_mem))
    Xhat = Xa / np.linalg.norm(Xa, axis=1, keepdims=True)
    P = Xhat.T @ np.linalg.pinv(Xhat.T)
    M, M0 = B @ A.T, Wm @ Wm.T
    return {"err": float(np.linalg.norm(M - M0) / np.linalg.norm(M0)),
            "err_span": float(np.linalg.norm(P @ (M - M0) @ P) / np.linalg.norm(M0))}


def check_all_memorize(errs_span: ArrayLike, loss_gaps: ArrayLike, *, span_tol: float = 0.05,
                       loss_tol: float = 0.03) -> tuple[CheckResult, CheckResult]:
    """Check that every training variant memorizes (Chapter 3): the worst error of W2W1ᵀ inside the data
    span ≤ ``span_tol`` and the worst relative loss gap to the closed form ≤ ``loss_tol``.
    Rejects a variant that is the linear DAE of Chapter 2 or an untrained network."""
    w_span = check_range("every variant: error of W2W1^T inside the data span",
                         float(np.max(np.asarray(errs_span, dtype=np.float64))), high=span_tol)
    w_loss = check_range("every variant: relative loss gap to the closed form",
                         float(np.max(np.abs(np.asarray(loss_gaps, dtype=np.float64)))), high=loss_tol)
    return w_span, w_loss


def check_blocks(freq: ArrayLike, p_k: int, *, leak_max: float = 0.01) -> tuple[list[np.ndarray], float]:
    """Check that the units split into one block of ``p_k`` units per mode (Chapter 4).

    Args:
        freq: ``(K, p)`` activation frequency of each unit on noisy samples of each mode.

    Returns:
        (the units of each mode (frequency > 1/2), the largest frequency of a unit outside its mode's block).
        Rejects an untrained network (its random units fire for both modes).
    """
    F = np.asarray(freq, dtype=np.float64)
    K, p = F.shape
    units = [np.nonzero(F[k] > 0.5)[0] for k in range(K)]
    check_range("units per mode (smallest)", min(len(u) for u in units), low=p_k)
    check_range("units per mode (largest)", max(len(u) for u in units), high=p_k)
    leak = max(F[k, np.setdiff1d(np.arange(p), units[k])].max(initial=0.0) for k in range(K))
    check_range("largest activation frequency of a unit outside its mode's block", leak, high=leak_max)
    return units, float(leak)


def check_mode_maps(maps: list[ArrayLike], blocks: list[ArrayLike], limits: list[ArrayLike],
                    typos: list[ArrayLike], *, tol: float = 0.03, typo_ratio: float = 5.0) -> dict[str, list]:
    """Check each mode's learned linear map ``(d, d)`` against Eq. 8 and the Cor. 3.3 limit (Chapter 4).

    Per mode k: M_k vs ``blocks[k]`` (Eq. 8 on the training cluster, W_k W_kᵀ) and vs ``limits[k]`` (the
    population limit), relative error ≤ ``tol``; then the error against the printed limit with σ in place of
    σ² (``typos[k]``) must be at least ``typo_ratio`` times the largest error against the σ² limit.
    Rejects a network that learned the σ-typo block, or the Chapter 2 linear DAE of the pooled data.

    Returns:
        dict with lists ``eq8``, ``limit``, ``typo`` of relative errors.
    """
    e8, el, et = [], [], []
    for k, (M, B, L, T) in enumerate(zip(maps, blocks, limits, typos, strict=True)):
        M, L, T = (np.asarray(a, dtype=np.float64) for a in (M, L, T))
        e8.append(float(check(f"mode {k}: trained on-mode map vs Eq. 8 (training cluster)", M, B, tol=tol)))
        el.append(float(check(f"mode {k}: trained on-mode map vs population limit", M, L, tol=tol)))
        et.append(float(np.linalg.norm(M - T) / np.linalg.norm(T)))
    check_range("error against the printed (S + sigma I)^-1 over error against (S + sigma^2 I)^-1",
                min(et) / max(max(el), 1e-300), low=typo_ratio)
    return {"eq8": e8, "limit": el, "typo": et}


def check_test_loss(test_mc: float, trained_exact: float, exact: float, *, mc_tol: float = 0.03,
                    exact_tol: float = 0.01) -> tuple[CheckResult, CheckResult]:
    """Check the network's test loss against the exact expression of Proposition prop-wiener-loss (Ch. 4):
    the Monte-Carlo test loss (``mc_tol``) and the exact population loss of its per-mode maps
    (``exact_tol``). Rejects the identity map (loss dσ²) and a block with σ for σ²."""
    a = check("trained network's test loss (Monte Carlo) vs the exact expression", test_mc, exact, tol=mc_tol)
    b = check("trained network's population loss (its per-mode maps, exact) vs the exact expression",
              trained_exact, exact, tol=exact_tol)
    return a, b


def check_printed_bound_low(printed: float, exact: float, *, high: float = 0.95) -> CheckResult:
    """Check that the bound printed after Cor. 3.3 is below the exact test loss it should bound (Chapter 4):
    printed / exact ≤ ``high``. A bound that kept the noise-variance term (ratio 1) would fail."""
    return check_range("printed leading terms / exact expression", printed / exact, high=high)


def check_train_test_agree(train_loss: float, test_loss: float, *, tol: float = 0.03) -> CheckResult:
    """Check that training and test losses agree (the network generalizes, Chapter 4): relative gap
    |train − test| / test ≤ ``tol``. Rejects a memorizer (the empirical denoiser: train loss ≪ test loss)."""
    return check("training loss vs test loss", train_loss, test_loss, tol=tol)


def check_convergence_rates(sizes: ArrayLike, block_err: ArrayLike, excess: ArrayLike) -> tuple[float, float]:
    """Fit log-log slopes of the block error and the excess test loss against the cluster size (Chapter 4)
    and check them: about −1/2 (in [−0.65, −0.35]) and −1 (in [−1.2, −0.8]).
    Rejects errors measured against the σ-typo limit (they plateau: slope near 0).

    Returns:
        (slope of the block error, slope of the excess loss).
    """
    ls = np.log(np.asarray(sizes, dtype=np.float64))
    s_err = float(np.polyfit(ls, np.log(np.asarray(block_err, dtype=np.float64)), 1)[0])
    s_loss = float(np.polyfit(ls, np.log(np.asarray(excess, dtype=np.float64)), 1)[0])
    check_range("log-log slope of the block error vs n_k (1/sqrt(n_k) predicts -0.5)", s_err, low=-0.65, high=-0.35)
    check_range("log-log slope of the excess test loss vs n_k (1/n_k predicts -1)", s_loss, low=-1.2, high=-0.8)
    return s_err, s_loss


def subspace_angles_deg(M_a: ArrayLike, M_b: ArrayLike, rank: int) -> np.ndarray:
    """Principal angles in degrees between the top-``rank`` eigenspaces of two symmetric maps ``(d, d)``
    (Chapter 4: do two networks use the same directions for a mode?). Returns ``(rank,)``, ascending."""
    Ua = np.linalg.eigh(0.5 * (np.asarray(M_a) + np.asarray(M_a).T))[1][:, ::-1][:, :rank]
    Ub = np.linalg.eigh(0.5 * (np.asarray(M_b) + np.asarray(M_b).T))[1][:, ::-1][:, :rank]
    c = np.clip(np.linalg.svd(Ua.T @ Ub, compute_uv=False), -1.0, 1.0)
    return np.sort(np.degrees(np.arccos(c)))


def check_same_blocks(maps_a: list[ArrayLike], maps_b: list[ArrayLike], *, tol: float = 0.05) -> list[float]:
    """Check that two networks learned the same per-mode maps (Chapter 4, reproducibility across disjoint
    halves of the training set): relative Frobenius distance ≤ ``tol`` for every mode. Rejects the maps of
    a network trained on a different mixture, or the two modes swapped.

    Returns:
        the relative distance of each mode's maps, ‖M_a − M_b‖ / ‖M_b‖.
    """
    out = []
    for k, (a, b) in enumerate(zip(maps_a, maps_b, strict=True)):
        out.append(float(check(f"mode {k}: map of network A vs map of network B", a, b, tol=tol)))
    return out


def block_residual(W: ArrayLike, W_star: ArrayLike) -> float:
    """‖R‖_F of Theorem 3.1 up to rotation: min over orthogonal O ``(p, p)`` of ‖W − W* O‖_F (Chapter 4).

    The minimum over all orthogonal O (orthogonal Procrustes) is a lower bound on the minimum over the
    block-diagonal O = diag(O_k) the theorem allows. ``W``, ``W_star``: ``(d, p)``.
    """
    A, B = np.asarray(W, dtype=np.float64), np.asarray(W_star, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ValueError(f"W and W_star must have the same (d, p) shape, got {A.shape} and {B.shape}")
    U, _, Vt = np.linalg.svd(B.T @ A)
    return float(np.linalg.norm(A - B @ (U @ Vt)))


def check_residual_grows(R_norms: ArrayLike, floor: float, *, low: float = 2.0) -> CheckResult:
    """Check that Theorem 3.1's residual ‖R‖_F at the largest training σ exceeds ``low`` times the larger of the
    training floor and the residual at the smallest σ (Chapter 4: the residual grows when noise flips gates).

    ``R_norms``: residuals ordered by increasing σ. Rejects a residual that stays at the floor (the frozen-gate
    minimiser, which is the block form at every σ)."""
    R = np.asarray(R_norms, dtype=np.float64).ravel()
    if len(R) < 2:
        raise ValueError(f"need residuals at two or more sigma values, got {len(R)}")
    return check_range("|R|_F at the largest sigma over the floor (the residual grows when gates flip)",
                       float(R[-1] / max(float(floor), float(R[0]))), low=low)
