"""The checks behind Chapter 4's claims: blocks per mode, their maps and limits, test losses, rates.

A chapter calls a check function and tests/test_negative_controls_ch04.py calls the *same* function on a
named wrong answer (untrained weights, the σ-typo limit, a memorizer, ...), which must raise CheckFailed.
"""

from __future__ import annotations

import numpy as np

from repdiff._arrays import ArrayLike
from repdiff.notebook import CheckResult, check, check_range

__all__ = [
    "check_blocks",
    "check_mode_maps",
    "check_test_loss",
    "check_printed_bound_low",
    "check_train_test_agree",
    "check_convergence_rates",
    "check_same_blocks",
    "check_residual_grows",
    "check_residual_systematic",
    "active_span_dimension",
    "check_active_span",
]


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


def check_residual_grows(R_norms: ArrayLike, floor: float, *, low: float = 2.0) -> CheckResult:
    """Check that Theorem 3.1's residual ‖R‖_F at the largest training σ exceeds ``low`` times the larger of the
    training floor and the residual at the smallest σ (Chapter 4: the residual grows when noise flips gates).

    ``R_norms``: residuals ordered by increasing σ. Rejects a residual that stays at the floor (the frozen-gate
    minimiser, which is the block form at every σ)."""
    R = np.asarray(R_norms, dtype=np.float64).ravel()
    if len(R) < 2:
        raise ValueError(f"need residuals at two or more sigma values, got {len(R)}")
    return check_range("|R|_F at the largest sigma over max(floor, |R|_F at the smallest sigma)",
                       float(R[-1] / max(float(floor), float(R[0]))), low=low)


def check_residual_systematic(R_mean: ArrayLike, spread: ArrayLike, *, low: float = 2.0,
                              high: float = 2.0) -> np.ndarray:
    """Check that Theorem 3.1's residual is training noise at the smallest σ and a real displacement at the
    largest (Chapter 4: the trained minimiser leaves the block form when gates flip, and only then).

    Per σ (increasing), two training runs from the same start W* with different seeds: ``R_mean`` is the
    residual ‖R‖_F of their average, ``spread`` the Procrustes distance between the two runs. If the runs were
    W* plus independent noise, the average would sit about spread/2 from W*; the ratio
    z = R_mean / (spread / 2) measures the displacement the two runs share. Checks: z at the largest σ ≥ ``low``
    and z at the smallest σ ≤ ``high``. Rejects a residual that is noise at every σ (the frozen-gate
    minimiser, which is the block form at every σ) and one displaced already at the smallest σ (training
    started from a wrong block, e.g. the σ-typo W*).

    Returns:
        z per σ.
    """
    Rm, sp = (np.asarray(a, dtype=np.float64).ravel() for a in (R_mean, spread))
    if Rm.shape != sp.shape or len(Rm) < 2:
        raise ValueError(f"need R_mean and spread at the same two or more sigma values, got {Rm.shape}, {sp.shape}")
    z = Rm / np.maximum(sp / 2, 1e-300)
    check_range("shared displacement of two seeds at the largest sigma, in units of spread/2", float(z[-1]),
                low=low)
    check_range("shared displacement of two seeds at the smallest sigma, in units of spread/2", float(z[0]),
                high=high)
    return z


def active_span_dimension(W1: ArrayLike, Y: ArrayLike) -> np.ndarray:
    """Per input y, the effective dimension of the span of the encoder vectors of the units on for y (Ch. 3-4).

    With A = W1[:, on(y)] (columns of the units with w_jᵀy > 0) and G = AᵀA, the value is
    tr(G)² / ‖G‖_F² = (Σ s²)² / Σ s⁴ over A's singular values s: 1 when the active units are parallel copies
    of one direction (a memorizer that splits a sample over several units), about q when they are q
    orthogonal directions of similar norm (a block of the generalizing solution), 0 when no unit is on.
    The participation ratio of h cannot tell these apart; this can.

    Args:
        W1: encoder ``(d, p)`` of a bias-free ReLU DAE. Y: inputs ``(m, d)``.

    Returns:
        ``(m,)`` effective dimensions.
    """
    A = np.asarray(W1, dtype=np.float64)
    Ya = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    if A.ndim != 2 or Ya.shape[1] != A.shape[0]:
        raise ValueError(f"need W1 (d, p) and Y (m, d) with the same d, got {A.shape} and {Ya.shape}")
    G = A.T @ A
    on = (Ya @ A > 0).astype(np.float64)
    tr = on @ np.diag(G)
    fro2 = np.einsum("ni,ij,nj->n", on, G**2, on)
    return np.where(fro2 > 0, tr**2 / np.where(fro2 > 0, fro2, 1.0), 0.0)


def check_active_span(what: str, W1: ArrayLike, Y: ArrayLike, *, low: float | None = None,
                      high: float | None = None) -> CheckResult:
    """Check the mean :func:`active_span_dimension` over inputs ``Y`` lies in [low, high] (Chapters 3-4).

    Chapter 4 (balanced block of width p_k = 2) asks ≥ 1.5: it rejects a memorizer that stores each sample in
    two parallel units, whose participation ratio is 2 but whose active units span one direction. Chapter 3
    (memorizer) asks ≤ 1.1: it rejects a block of the generalizing solution."""
    return check_range(what, float(active_span_dimension(W1, Y).mean()), low=low, high=high)
