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

__all__ = ["COLORS", "MEM_COLOR", "GEN_COLOR", "use_course_style", "show_images", "image_grid", "plot_denoiser_field"]

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
