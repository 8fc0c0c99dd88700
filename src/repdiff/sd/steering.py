"""Representation steering in a Stable Diffusion U-Net (Chapter 14; the paper's Eq. 11).

    f_steered(x_t, t, c) = g( h(x_t, t, c) + a·v ),   v = mean of h over a reference set of the concept.

``h`` is the output of chosen U-Net blocks (the "encoder" side of the split), ``g`` the rest of the network.
The vector ``v`` of each block is the **mean** spatially-averaged block output over images of the target
concept, re-noised at a small t̃ and conditioned on the concept prompt (not a difference of means). During
sampling, ``a·v`` is added to the block's output, broadcast over space, on the **conditional half** of the
classifier-free-guidance batch only, and only during a window of steps (the authors: late steps; Chapter 14
measures why a flat background needs the early ones too). Chapter 14 also keeps ``v`` as a map (a concept of
*where*, which pooling would erase) with each channel's spatial mean removed (:func:`without_channel_means`).

The paper's prediction (Cor. 3.3): a generalized sample sits in a balanced, low-dimensional representation
and moves smoothly toward the concept as ``a`` grows; a memorized sample is pinned to its stored
(spiky) representation and barely moves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from repdiff.metrics import mean_interval
from repdiff.notebook import check_range
from repdiff.representations import count_calls, edit_outputs
from repdiff.sd import cache
from repdiff.sd.pipeline import encode_images, features_at_t, generate

__all__ = [
    "STEERING_SITES",
    "PCA_SITE",
    "authors_window",
    "SteeringResult",
    "steering_result",
    "check_sweep_claims",
    "sweep",
    "Moves",
    "representation_moves",
    "check_moves_claims",
    "concept_vectors",
    "without_channel_means",
    "steer",
    "attribute_slopes",
    "brightness",
    "horizontal_moment",
    "pixel_change",
    "pca_2d",
]

#: the block outputs the course steers (SD v1.4: all 1280-channel, as in the authors' demo)
STEERING_SITES = ("up_blocks.0.resnets.0", "up_blocks.0.resnets.1", "up_blocks.0.resnets.2",
                  "up_blocks.1.resnets.0", "up_blocks.1.resnets.1")
#: the layer of the authors' PCA trajectory: the first GroupNorm of ``up_blocks.0.resnets.1`` (skip included)
PCA_SITE = "up_blocks.0.resnets.1.norm1"


def authors_window(steps: int) -> tuple[int, int]:
    """The authors' steering window scaled to ``steps`` sampling steps: U-Net calls ``start ≤ k < stop``.

    Their code steers the last 20 of 40 steps but the last 2 (calls 18-37, t ≈ 526 down to 51 on SD v1.4's
    schedule); with 30 steps that is calls 13-27 (t = 529 down to 67). Chapter 14.
    """
    if steps < 4:
        raise ValueError(f"need at least 4 sampling steps, got {steps}")
    stop = steps - max(1, round(2 * steps / 40))
    return stop - round(steps / 2), stop


def concept_vectors(pipe, images, concept_prompt: str, sites: Sequence[str] = STEERING_SITES, *,
                    t: int = 10, seed: int = 0, spatial: bool = False,
                    value_range: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """v per site: the mean over the reference images of the block output, spatially mean-pooled or not.

    Args:
        images: ``(N, 3, H, W)`` in [-1, 1], images of the target concept (or diffusers' [0, 1] images with
            ``value_range=(0, 1)``, uint8 or PIL images: :func:`repdiff.sd.pipeline.as_model_images`).
        concept_prompt: the condition c̄ used while reading the representations.
        spatial: keep the map (the mean feature map of the set; Chapter 14's position concept) instead of
            pooling it to one value per channel (the authors' code).
    Returns:
        ``{site: (C,)}``, or ``{site: (C, h, w)}`` with ``spatial``.
    """
    if len(images) < 1:
        raise ValueError("the reference set is empty")
    pooling = "none" if spatial else "mean"
    z = encode_images(pipe, images, generator=torch.Generator().manual_seed(seed), value_range=value_range)
    reps = features_at_t(pipe, z, list(sites), t=t, prompt=concept_prompt, pooling=pooling, seed=seed)
    return {s: reps[(s, pooling)].mean(0) for s in sites}


def without_channel_means(vectors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Spatial steering vectors with each channel's mean over space removed: ``{site: (C, h, w)}``, same shapes.

    The removed part is exactly the pooled vector of the same set (the authors' kind of ``v``), which in the
    tiny model moves the colour of every sample, stored or not (Chapter 14; much of such a push falls in the
    blind spot of its one-channel GroupNorms). What is left is the spatial pattern of the concept.
    """
    out = {}
    for site, v in vectors.items():
        if v.ndim != 3:
            raise ValueError(f"{site}: need a spatial vector (C, h, w), got shape {tuple(v.shape)}")
        out[site] = v - v.mean(dim=(1, 2), keepdim=True)
    return out


@contextmanager
def steer(unet: torch.nn.Module, vectors: dict[str, torch.Tensor], a: float, *, start: int, stop: int,
          conditional_half: bool = True, first_call: int = 0) -> Iterator[dict[str, int]]:
    """Add ``a·v`` to the outputs of the given blocks during U-Net calls ``start ≤ k < stop``.

    ``v`` of a site is ``(C,)`` (broadcast over space, as in the authors' code) or a map ``(C, h, w)`` of the
    block's output size (:func:`concept_vectors` with ``spatial=True``).

    Calls are counted from ``first_call`` when the ``with`` block opens (one per sampling step when the guided
    batch is evaluated in one call, as :func:`repdiff.sd.pipeline.generate` and ``StableDiffusionPipeline`` do;
    pass ``first_call=k`` when sampling resumes at step ``k``, ``generate(..., start_step=k)``). With
    ``conditional_half`` only the second half of the batch (the conditional branch) is changed. Hooks
    (:func:`repdiff.representations.edit_outputs`, :func:`~repdiff.representations.count_calls`) are removed
    on exit, always. Yields a dict holding the call counter.
    """
    if not np.isfinite(a):
        raise ValueError(f"a must be finite, got {a}")
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")

    def edit(out: torch.Tensor, site: str, v: torch.Tensor, state: dict[str, int]) -> torch.Tensor | None:
        k = state["calls"] - 1
        if a == 0 or not start <= k < stop:
            return None
        add = (a * v).to(out.device, out.dtype)
        if add.ndim == 1:
            add = add.view(1, -1, 1, 1)  # one value per channel, broadcast over space
        elif add.shape == out.shape[1:]:
            add = add.unsqueeze(0)  # a map: added where it was measured
        else:
            raise ValueError(f"{site}: v has shape {tuple(v.shape)}; the block outputs "
                             f"{tuple(out.shape[1:])} (need (C,) or (C, h, w))")
        out = out.clone()
        if conditional_half:
            half = out.shape[0] // 2
            out[half:] += add
        else:
            out += add
        return out

    with count_calls(unet, first_call) as state:
        edits = {site: functools.partial(edit, site=site, v=v, state=state) for site, v in vectors.items()}
        with edit_outputs(unet, edits):
            yield state


def attribute_slopes(a_values: Sequence[float], attribute: np.ndarray) -> np.ndarray:
    """Least-squares slope of an attribute against ``a`` for each prompt.

    Args:
        a_values: ``(K,)`` steering strengths.
        attribute: ``(K, P)`` the measured attribute of prompt ``p`` at strength ``a_k``.
    Returns:
        ``(P,)`` slopes (attribute units per unit ``a``).
    """
    a = np.asarray(a_values, dtype=np.float64)
    y = np.asarray(attribute, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != len(a):
        raise ValueError(f"attribute must have shape (len(a_values), P) = ({len(a)}, P), got {y.shape}")
    if len(a) < 2 or np.ptp(a) == 0:
        raise ValueError("need at least two distinct values of a")
    if not np.isfinite(y).all():
        raise ValueError("attribute contains NaN or infinity")
    ac = a - a.mean()
    return (ac @ (y - y.mean(0))) / (ac @ ac)


def brightness(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Mean brightness of each image ``(N, C, H, W)`` in [-1, 1], on a 0 (black) to 1 (white) scale: ``(N,)``.

    Chapter 14's attribute for the "white background" concept, and the quantity
    :func:`repdiff.sd.retention.push_retention` follows.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    return ((x + 1) / 2).mean(dim=(1, 2, 3)).cpu().numpy()


def horizontal_moment(images: torch.Tensor | np.ndarray, backgrounds: torch.Tensor | np.ndarray) -> np.ndarray:
    """How far right of the image's middle the things that differ from the background lie: ``(N,)``.

    The first horizontal moment of each pixel's distance from its background, mean over pixels of
    ``d(x, y) · u(x)``, with ``d`` the largest absolute channel difference in [0, 1] units and ``u`` running
    from −1 at the left edge to +1 at the right edge. A background alone gives 0, a shape on the right a
    positive value, its mirror image the negative of it. Chapter 14's attribute for the "shapes on the
    right" concept; unlike a centroid it does not need the shapes to be found first.

    Args:
        images: ``(N, C, H, W)`` in [-1, 1].
        backgrounds: ``(N, C, H, W)`` or ``(C, H, W)``, what each image would be without its shapes.
    """
    x = torch.as_tensor(images).float()
    bg = torch.as_tensor(backgrounds).float()
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if bg.shape not in (x.shape, x.shape[1:]):
        raise ValueError(f"backgrounds must have shape {tuple(x.shape)} or {tuple(x.shape[1:])}, "
                         f"got {tuple(bg.shape)}")
    d = (x - bg).abs().amax(dim=1) / 2  # (N, H, W)
    w = x.shape[-1]
    u = torch.linspace(-1.0, 1.0, w) if w > 1 else torch.zeros(1)
    return (d * u).mean(dim=(1, 2)).cpu().numpy()


def pixel_change(images: Sequence[torch.Tensor]) -> np.ndarray:
    """Root-mean-square pixel change of each prompt's image from its first (unsteered) version.

    Args:
        images: ``K`` tensors ``(P, C, H, W)``, the same ``P`` prompts and seeds at ``K`` strengths ``a``,
            the first at ``a = 0``.
    Returns:
        ``(K, P)`` RMS change (0 for the first row), in the images' units (Chapter 14: [-1, 1], so 2 is the
        largest possible). Unlike an attribute's slope it also sees changes that do not go the concept's way.
    """
    if len(images) < 2:
        raise ValueError(f"need images at two or more strengths, got {len(images)}")
    per_a = [torch.as_tensor(im).float() for im in images]
    shapes = {tuple(im.shape) for im in per_a}
    if len(shapes) != 1:
        raise ValueError(f"all strengths need images of the same shape (same prompts), got {sorted(shapes)}")
    x = torch.stack(per_a)
    if x.ndim < 3:
        raise ValueError(f"each entry must be (P, ...) images, got shape {tuple(x.shape[1:])}")
    return (x - x[:1]).flatten(2).square().mean(2).sqrt().numpy()


def pca_2d(x: np.ndarray, fit_on: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` ``(N, C)`` on the top-2 principal axes of ``fit_on`` (default ``x``).

    Returns ``(coordinates (N, 2), explained variance ratio (2,))``.
    """
    x = np.asarray(x, dtype=np.float64)
    f = x if fit_on is None else np.asarray(fit_on, dtype=np.float64)
    if x.ndim != 2 or f.ndim != 2 or x.shape[1] != f.shape[1]:
        raise ValueError(f"need 2-D arrays with the same number of columns, got {x.shape} and {f.shape}")
    mu = f.mean(0)
    _, s, vt = np.linalg.svd(f - mu, full_matrices=False)
    ratio = s**2 / np.sum(s**2)
    return (x - mu) @ vt[:2].T, ratio[:2]


@dataclass
class SteeringResult:
    """Chapter 14's summary of a steering sweep of two groups (held-out prompts and copies).

    ``*_slope`` are mean per-prompt slopes of the attribute against ``a`` with 95 % bootstrap bounds
    ``*_lo``/``*_hi``; ``ratio`` = held-out slope / |copies' slope|; ``n`` prompts per group (the smaller
    group); ``a_change`` the smallest strength at which the held-out samples' mean attribute change has a
    95 % interval that excludes 0 (the largest strength if none does; ``moved`` says whether one does);
    ``copies_kept`` the share of the copies that are still copies there; ``separated`` whether the two slope
    intervals are apart.
    """

    ratio: float
    heldout_slope: float
    heldout_lo: float
    heldout_hi: float
    copies_slope: float
    copies_lo: float
    copies_hi: float
    n: int
    a_change: float
    moved: bool
    copies_kept: float
    separated: bool


def steering_result(a_values: Sequence[float], held_attr: np.ndarray, copies_attr: np.ndarray,
                    still_copies: np.ndarray, *, seed: int = 0) -> SteeringResult:
    """Slopes, intervals and kept copies of a sweep (Chapter 14).

    Args:
        a_values: ``(K,)`` strengths, the first 0.
        held_attr: ``(K, P)`` attribute of the held-out samples at each strength.
        copies_attr: ``(K, Q)`` attribute of the copies.
        still_copies: ``(K, Q)`` booleans, is copy ``q`` still a copy of its training image at strength ``k``.
    """
    a = np.asarray(a_values, dtype=np.float64)
    still = np.asarray(still_copies, dtype=bool)
    if a[0] != 0 or still.shape != np.shape(copies_attr):
        raise ValueError(f"need a_values starting at 0 and still_copies of shape {np.shape(copies_attr)}, "
                         f"got a[0] = {a[0]} and {still.shape}")
    held, cop = attribute_slopes(a, held_attr), attribute_slopes(a, copies_attr)
    h_mean, h_lo, h_hi = mean_interval(held, seed=seed)
    c_mean, c_lo, c_hi = mean_interval(cop, seed=seed)
    k_change, moved = len(a) - 1, False
    for k in range(1, len(a)):
        _, lo, hi = mean_interval(np.asarray(held_attr)[k] - np.asarray(held_attr)[0], seed=seed)
        if lo > 0 or hi < 0:
            k_change, moved = k, True
            break
    kept = float(still[k_change].sum() / max(1, still[0].sum()))
    return SteeringResult(ratio=h_mean / max(abs(c_mean), 1e-12), heldout_slope=h_mean, heldout_lo=h_lo,
                          heldout_hi=h_hi, copies_slope=c_mean, copies_lo=c_lo, copies_hi=c_hi,
                          n=int(min(len(held), len(cop))), a_change=float(a[k_change]), moved=moved,
                          copies_kept=kept,
                          separated=bool(h_lo > c_hi or c_lo > h_hi))


def check_sweep_claims(r: SteeringResult, change_held: np.ndarray, change_copies: np.ndarray, *,
                       kept_low: float = 0.9, seed: int = 0) -> None:
    """Check Chapter 14's reading of a sweep; prints each check, raises ``repdiff.CheckFailed`` at a miss.

    The claims and the wrong answer each rejects: the two slope intervals overlap (a sweep with the paper's
    contrast, ``r.separated``); the held-out slope's interval contains 0 (held-out samples that clearly move);
    the copies' lower bound is above 1e-6 (copies that do not brighten; a sweep that changes nothing gives 0);
    at least ``kept_low`` of the copies are still copies at ``r.a_change`` (copies that break); the held-out
    images' mean RMS change there (``change_held`` ``(P,)``, ``change_copies`` ``(Q,)``) has a 95 % lower
    bound above the copies' upper bound (groups that change alike).
    """
    overlap = min(r.heldout_hi, r.copies_hi) - max(r.heldout_lo, r.copies_lo)
    if (overlap >= 0) == r.separated:
        raise ValueError(f"the bounds (overlap {overlap:.3g}) contradict separated = {r.separated}")
    check_range("slope intervals overlap: smaller upper bound minus larger lower bound", overlap, low=0)
    check_range("held-out slope: lower 95 % bound (interval contains 0)", r.heldout_lo, high=0)
    check_range("held-out slope: upper 95 % bound (interval contains 0)", r.heldout_hi, low=0)
    check_range("copies' slope: lower 95 % bound (interval excludes 0)", r.copies_lo, low=1e-6)
    check_range(f"share of copies still copies at a = {r.a_change:g}", r.copies_kept, low=kept_low)
    gap = mean_interval(change_held, seed=seed)[1] - mean_interval(change_copies, seed=seed)[2]
    check_range("RMS change: held-out lower bound minus copies' upper bound", gap, low=0)


def sweep(pipe, vectors: dict[str, torch.Tensor], a_values: Sequence[float], prompts: Sequence[str],
          latents_at: torch.Tensor, *, from_step: int, window: tuple[int, int], steps: int = 30,
          guidance: float = 7.5, use_cache: bool = True) -> list[torch.Tensor]:
    """Steered samples at each strength: ``K`` tensors ``(P, 3, H, W)`` in [-1, 1] (Chapter 14, Assignment 3).

    Sampling resumes at step ``from_step`` from ``latents_at`` (the latents entering that step of an unsteered
    run, :attr:`repdiff.sd.pipeline.Generation.latents_at`): steps before the window are the same at every
    strength, so they are run once. ``a = 0`` is sampled too (it reproduces the unsteered run). The samples are
    kept on disk (:func:`repdiff.sd.cache.cached`, keyed by the pipeline and every argument): a second run with
    the same arguments, such as Assignment 3's student notebook graded after its solutions, reads them.
    """
    if not 0 <= from_step <= window[0] <= window[1] <= steps:
        raise ValueError(f"need 0 <= from_step <= window start <= window stop <= steps, got {from_step}, "
                         f"{window}, {steps}")

    def run() -> list[torch.Tensor]:
        out = []
        for a in a_values:
            with steer(pipe.unet, vectors, a, start=window[0], stop=window[1], first_call=from_step):
                out.append(generate(pipe, list(prompts), steps=steps, guidance=guidance, latents=latents_at,
                                    start_step=from_step).images)
        return out

    key = [cache.fingerprint(pipe), vectors, [float(a) for a in a_values], list(prompts), latents_at, from_step,
           list(window), steps, guidance]
    return cache.cached("sweep", key, run, use=use_cache)


@dataclass
class Moves:
    """How far steered samples move in a representation space (Chapter 14), means over samples.

    ``total``: ‖r(a) − r(0)‖; ``along``: the part along the unit concept axis ⟨r(a) − r(0), u⟩;
    ``across``: the rest, √(total² − along²) per sample; ``of_mean``: ‖mean r(a) − mean r(0)‖, how far the
    group's mean moves (what a plot of mean paths shows). All in the units of ``scale`` (1: raw).
    """

    total: float
    along: float
    across: float
    of_mean: float


def representation_moves(r0: np.ndarray, r1: np.ndarray, axis: np.ndarray, scale: float = 1.0) -> Moves:
    """:class:`Moves` from representations ``r0, r1`` ``(P, C)`` of the same samples before and after steering,
    along ``axis`` ``(C,)`` (e.g. the concept set's mean minus the opposite set's mean)."""
    r0, r1, axis = (np.asarray(x, dtype=np.float64) for x in (r0, r1, axis))
    if r0.shape != r1.shape or r0.ndim != 2 or axis.shape != (r0.shape[1],):
        raise ValueError(f"need r0, r1 of one shape (P, C) and axis (C,), got {r0.shape}, {r1.shape}, {axis.shape}")
    u = axis / np.linalg.norm(axis)
    d = r1 - r0
    total = np.linalg.norm(d, axis=1)
    along = d @ u
    across = np.sqrt(np.maximum(total**2 - along**2, 0))
    return Moves(total=float(total.mean() / scale), along=float(along.mean() / scale),
                 across=float(across.mean() / scale), of_mean=float(np.linalg.norm(d.mean(0)) / scale))


def check_moves_claims(held: Moves, copies: Moves, *, hardly: float = 0.25) -> None:
    """Check Chapter 14's reading of :class:`Moves`: the copies hardly move (their mean move at most
    ``hardly`` times the held-out samples'; copies that move like them fail) and the held-out samples move
    mostly across the concept axis (across part above the |along| part; a move toward the concept fails)."""
    check_range("copies' move / held-out samples' move", copies.total / held.total, high=hardly)
    check_range("held-out move: across part minus |along| part", held.across - abs(held.along), low=0)
