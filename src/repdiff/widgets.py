"""Interactive explorers (ipywidgets) that sit next to a static figure of the same thing (Chapter 5).

The website cannot move sliders, so every explorer here redraws a figure the chapter also shows
statically. ``ipywidgets`` is imported only when an explorer is built.

- :func:`phase_explorer`: heat map of one measure of the phase diagram, for a chosen noise level.
- :func:`draw_phase_map`: the drawing both the static figure and the explorer use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["draw_phase_map", "phase_explorer"]


def _grid_values(values: np.ndarray, shape: tuple[int, int, int], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"measure {name!r} has {arr.size} values, the grid has {int(np.prod(shape))} cells")
    return arr.reshape(shape)


def draw_phase_map(
    ax: plt.Axes,
    values: np.ndarray,
    ns: Sequence[int],
    ps: Sequence[int],
    *,
    title: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = "{:.2f}",
    diagonal: bool = True,
) -> Any:
    """Heat map of ``values`` ``(len(ns), len(ps))`` on the (p, n) grid, each cell annotated (Chapter 5).

    Rows are training-set sizes n (bottom to top), columns widths p; ``diagonal`` draws the line n = p.
    Returns the image (for a colour bar).
    """
    V = np.asarray(values, dtype=np.float64)
    if V.shape != (len(ns), len(ps)):
        raise ValueError(f"values must have shape (len(ns), len(ps)) = {(len(ns), len(ps))}, got {V.shape}")
    im = ax.imshow(V, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(ps)), [str(p) for p in ps])
    ax.set_yticks(range(len(ns)), [str(n) for n in ns])
    ax.set(xlabel="hidden units p", ylabel="training points n", title=title)
    ax.grid(False)
    lo, hi = im.get_clim()
    for i in range(len(ns)):
        for j in range(len(ps)):
            if np.isfinite(V[i, j]):
                light = (V[i, j] - lo) / (hi - lo + 1e-300) < 0.5
                ax.text(j, i, fmt.format(V[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if light else "black")
    if diagonal:
        # n = p in index coordinates (both axes are log2-spaced in the course's grids)
        xs = np.interp(np.log2(ns), np.log2(ps), np.arange(len(ps)), left=np.nan, right=np.nan)
        ax.plot(xs, np.arange(len(ns)), color="white", lw=1.5, ls="--")
    return im


def phase_explorer(
    measures: Mapping[str, np.ndarray],
    ns: Sequence[int],
    ps: Sequence[int],
    sigmas: Sequence[float],
    *,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """An ipywidgets explorer of the phase diagram: pick a measure and a noise level (Chapter 5).

    Args:
        measures: name → values of length ``len(ns)·len(ps)·len(sigmas)`` in the order of
            ``np.meshgrid(ns, ps, sigmas, indexing="ij")`` (what :func:`repdiff.dae.phase.phase_metrics` returns
            for a grid built that way).
        ns, ps, sigmas: the grid's axes. labels: optional display names of the measures.

    Returns:
        an ``ipywidgets.VBox`` (display it, or leave it as a cell's last expression).
    """
    try:
        import ipywidgets as widgets
    except ImportError as err:  # pragma: no cover - ipywidgets is a dependency of the course
        raise ImportError("the explorers need ipywidgets: pip install ipywidgets") from err
    if not measures:
        raise ValueError("measures is empty: pass at least one name -> values")
    shape = (len(ns), len(ps), len(sigmas))
    grids = {k: _grid_values(v, shape, k) for k, v in measures.items()}
    labels = dict(labels or {})
    names = list(grids)
    metric = widgets.Dropdown(options=[(labels.get(k, k), k) for k in names], value=names[0], description="measure")
    sigma = widgets.SelectionSlider(options=[(f"{s:g}", i) for i, s in enumerate(sigmas)], value=0,
                                    description="σ")
    out = widgets.Output()

    def redraw(*_: Any) -> None:
        k, i = metric.value, sigma.value
        G = grids[k]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5.2, 4.0))
            im = draw_phase_map(ax, G[:, :, i], ns, ps, title=f"{labels.get(k, k)}, σ = {sigmas[i]:g}",
                                vmin=float(np.nanmin(G)), vmax=float(np.nanmax(G)))
            fig.colorbar(im, ax=ax)
            plt.show()

    metric.observe(redraw, names="value")
    sigma.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([metric, sigma]), out])
