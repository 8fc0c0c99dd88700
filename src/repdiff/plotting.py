"""One figure style for the whole book, and the image grids several chapters draw.

White backgrounds (figures stay readable when the site is in dark mode), readable font sizes,
a colour-blind-safe cycle. Chapters call :func:`use_course_style` through ``setup_notebook``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["COLORS", "MEM_COLOR", "GEN_COLOR", "use_course_style", "show_images", "image_grid", "plot_denoiser_field",
           "plot_representations", "plot_steering_sweep"]

# Okabe-Ito palette: distinguishable under the common forms of colour blindness.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MEM_COLOR = "#D55E00"  # memorization: vermillion, everywhere in the book
GEN_COLOR = "#0072B2"  # generalization: blue, everywhere in the book


def use_course_style() -> None:
    """Set the book's matplotlib style (white background, grid, colour cycle, sizes)."""
    mpl.rcParams.update(
        {
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.figsize": (6.4, 4.0),
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(color=COLORS),
            "image.cmap": "gray",
        }
    )


def _to_images(images: np.ndarray | torch.Tensor, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if shape is not None:
        arr = arr.reshape(len(arr), *shape)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):  # (N, C, H, W) -> (N, H, W, C)
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"expected images of shape (N, H, W), (N, C, H, W) or flat (N, d) with shape=(H, W); got {arr.shape}"
        )
    return arr


def image_grid(
    images: np.ndarray | torch.Tensor,
    *,
    shape: tuple[int, ...] | None = None,
    ncols: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    titles: Sequence[str] | None = None,
    ax_size: float = 1.0,
    suptitle: str | None = None,
) -> plt.Figure:
    """Draw images in a grid and return the figure.

    Args:
        images: ``(N, H, W)``, ``(N, C, H, W)``, or flat ``(N, d)`` together with ``shape=(H, W)``.
        value_range: the values mapped to black and white (the course stores images in [-1, 1]).
        titles: one short title per image (e.g. a distance), optional.
    """
    arr = _to_images(images, shape)
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    ax_size = min(ax_size, 7.0 / ncols)  # the grid fits the book's ~7 in column
    fig, axes = plt.subplots(nrows, ncols, figsize=(ax_size * ncols, ax_size * nrows + (0.3 if suptitle else 0)))
    axes = np.atleast_1d(axes).ravel()
    lo, hi = value_range
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            img = np.clip((arr[i] - lo) / (hi - lo), 0, 1)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_images(images: np.ndarray | torch.Tensor, **kwargs) -> plt.Figure:
    """Like :func:`image_grid`, then ``plt.show()``."""
    fig = image_grid(images, **kwargs)
    plt.show()
    return fig


def plot_steering_sweep(a_values: Sequence[float], attribute: dict[str, np.ndarray], change: dict[str, np.ndarray],
                        copies: Sequence[int], images: dict[str, Sequence[torch.Tensor]], *,
                        attribute_label: str, n_examples: int = 3) -> plt.Figure:
    """Chapter 14's steering figure: attribute (top left) and RMS change (top right) against ``a``, and example
    images across the bottom.

    Args:
        a_values: ``K`` strengths.
        attribute, change: ``{"gen": (K, P), "mem": (K, P)}``, per prompt (mean ± standard error drawn).
        copies: ``K`` counts of memorized samples that are still copies, written next to their change.
        images: ``{"gen": K tensors (P, 3, H, W), "mem": ...}`` in [-1, 1]; the first ``n_examples`` prompts of
            each group are drawn, one row each with ``a`` growing to the right, or, with fewer strengths than
            drawn prompts, one column each with ``a`` growing downward.
    """
    if set(attribute) != {"gen", "mem"} or set(change) != {"gen", "mem"} or set(images) != {"gen", "mem"}:
        raise ValueError("attribute, change and images need the keys 'gen' and 'mem'")
    k = len(a_values)
    if len(copies) != k or any(len(images[g]) != k or np.shape(attribute[g])[0] != k for g in ("gen", "mem")):
        raise ValueError(f"need one entry per strength ({k}) in attribute, copies and images")
    fig = plt.figure(figsize=(7, 6.2))  # the two curves on top, the example images across the bottom
    grid_spec = fig.add_gridspec(2, 2, height_ratios=[1, 1.15])
    axes = [fig.add_subplot(grid_spec[0, 0]), fig.add_subplot(grid_spec[0, 1]), fig.add_subplot(grid_spec[1, :])]
    for key, col, lab in (("gen", GEN_COLOR, "held-out (generalized)"), ("mem", MEM_COLOR, "planted (memorized)")):
        for ax, y in ((axes[0], np.asarray(attribute[key])), (axes[1], np.asarray(change[key]))):
            ax.errorbar(a_values, y.mean(1), yerr=y.std(1) / np.sqrt(y.shape[1]), color=col, marker="o",
                        capsize=3, label=lab)
    for a, c, y in zip(a_values, copies, np.asarray(change["mem"]).mean(1), strict=True):
        axes[1].annotate(f"copies: {c}", (a, y), textcoords="offset points", xytext=(-10, 8), fontsize=7,
                         color=MEM_COLOR)
    axes[0].set_ylabel(attribute_label)
    axes[1].set_ylabel("RMS pixel change from a = 0")
    for ax in axes[:2]:
        ax.set_xlabel("steering strength a")
    axes[0].legend(fontsize=7)
    tiles = [[torch.as_tensor(images[key][j])[i].float() for j in range(k)]  # [prompt][strength] (3, H, W)
             for key in ("gen", "mem") for i in range(n_examples)]
    labels = ["gen"] * n_examples + ["mem"] * n_examples
    by_row = k >= len(tiles)  # one row per prompt, or (few strengths) one row per strength
    if not by_row:
        tiles = [list(col) for col in zip(*tiles, strict=True)]  # [strength][prompt]
    grid = torch.cat([torch.cat(row, dim=2) for row in tiles], dim=1)
    side = tiles[0][0].shape[-1]
    axes[2].imshow(((grid.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1), interpolation="nearest")
    a_ticks = [side / 2 + side * j for j in range(k)], [f"{a:g}" for a in a_values]
    prompt_ticks = [side / 2 + side * r for r in range(len(labels))], labels
    if by_row:
        axes[2].set_xticks(*a_ticks)
        axes[2].set_xlabel("steering strength a")
        axes[2].set_yticks(*prompt_ticks)
    else:
        axes[2].set_yticks(*a_ticks)
        axes[2].set_ylabel("steering strength a")
        axes[2].set_xticks(*prompt_ticks)
    fig.tight_layout()
    return fig


def plot_score_distributions(scores: dict[str, np.ndarray], colors: dict[str, str], *, xlabel: str,
                             title: str = "") -> plt.Figure:
    """Chapter 13's figure in the manner of the paper's Fig. 5: one smoothed density per class of scores.

    Args:
        scores: ``{label: (N,) scores}``, drawn in order (a Gaussian kernel density with Scott's bandwidth,
            and a rug of the scores themselves underneath).
        colors: ``{label: colour}``.
    """
    if not scores or set(scores) - set(colors):
        raise ValueError("need a colour for every class of scores")
    allv = np.concatenate([np.asarray(v, dtype=np.float64) for v in scores.values()])
    pad = 0.1 * (allv.max() - allv.min() + 1e-12)
    grid = np.linspace(allv.min() - pad, allv.max() + pad, 400)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for j, (label, v) in enumerate(scores.items()):
        v = np.asarray(v, dtype=np.float64)
        bw = 1.06 * max(v.std(), 1e-3 * (allv.std() + 1e-12)) * len(v) ** (-1 / 5)
        dens = np.exp(-0.5 * ((grid[:, None] - v[None]) / bw) ** 2).sum(1) / (len(v) * bw * np.sqrt(2 * np.pi))
        ax.fill_between(grid, dens, color=colors[label], alpha=0.25)
        ax.plot(grid, dens, color=colors[label], label=f"{label} ({len(v)})")
        ax.plot(v, np.full(len(v), -0.04 * (j + 1)), "|", color=colors[label], ms=6,
                transform=ax.get_xaxis_transform(), clip_on=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_denoiser_field(
    ax: plt.Axes,
    denoiser,
    points: np.ndarray,
    sigma: float,
    *,
    lim: float = 3.0,
    grid: int = 15,
    title: str | None = None,
) -> None:
    """Draw a 2-D denoiser as arrows y → f(y) on a grid, over the data ``points`` ``(n, 2)``.

    ``denoiser(y, sigma)`` takes an ``(m, 2)`` array. Used by Chapter 1 (static grid and σ slider).
    """
    g = np.linspace(-lim, lim, grid)
    yy = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    f = np.asarray(denoiser(yy, sigma))
    ax.quiver(yy[:, 0], yy[:, 1], f[:, 0] - yy[:, 0], f[:, 1] - yy[:, 1], angles="xy", scale_units="xy",
              scale=1, width=0.004, color=COLORS[0], alpha=0.8)
    ax.scatter(points[:, 0], points[:, 1], s=18, color=MEM_COLOR, zorder=3, label="training points")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="$y_1$", ylabel="$y_2$")
    ax.set_title(title if title is not None else f"σ = {sigma:g}")


def plot_representations(reps: dict[str, np.ndarray], colors: dict[str, str], *,
                         width: float = 7.0) -> plt.Figure:
    """One bar chart per representation ``h`` ``(p,)``, side by side on a shared y axis (landing page).

    ``reps`` maps a panel title (e.g. "memorizing network: spiky") to the hidden-unit activations of one
    input; ``colors`` gives each panel's bar colour. Each panel's x axis numbers the hidden units.
    """
    if not reps or set(reps) != set(colors):
        raise ValueError("reps and colors must name the same, non-empty set of panels")
    fig, axes = plt.subplots(1, len(reps), figsize=(width, 2.6), sharey=True, squeeze=False)
    for ax, (title, h) in zip(axes[0], reps.items(), strict=True):
        h = np.asarray(h, dtype=np.float64).ravel()
        ax.bar(np.arange(1, len(h) + 1), h, color=colors[title])
        ax.set_xticks(np.arange(1, len(h) + 1))
        ax.set(xlabel="hidden unit", title=title)
    axes[0, 0].set_ylabel("activation $h_j$")
    fig.tight_layout()
    return fig
