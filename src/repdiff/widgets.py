"""Interactive explorers: a live ipywidgets control in Jupyter and Colab, a static figure on the website.

A website cannot move a slider: a widget there is a dead control. So every explorer of the course goes
through this module, which looks at ``REPDIFF_BOOK_BUILD`` (set by ``scripts/build_book.sh`` and by the
nbval run whose outputs the website shows):

- in the book build it draws the figure once, at the default values, under a one-line note saying which
  values were drawn and that the control is live in Jupyter and Colab; no widget is created;
- anywhere else it creates the widgets (ipywidgets 7, as in Colab, and 8 both work).

Functions:

- :func:`explorer`: the general case (Chapters 1 and 7): a drawing function and its controls, like
  ``ipywidgets.interact``.
- :func:`phase_explorer`: heat map of one measure of the phase diagram for a chosen noise level (Chapter 5).
- :func:`draw_phase_map`: the drawing both the static figure and the explorer use (Chapter 5).

``ipywidgets`` is imported only when a live explorer is built.
"""

from __future__ import annotations

import html
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np

from repdiff.notebook import glue

__all__ = ["book_build", "draw_phase_map", "explorer", "phase_explorer", "static_value"]


def book_build() -> bool:
    """True while the website is being built (``REPDIFF_BOOK_BUILD=1``): explorers draw a static figure."""
    return os.environ.get("REPDIFF_BOOK_BUILD") == "1"


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - ipywidgets is a dependency of the course
        raise ImportError("the explorers need ipywidgets: pip install ipywidgets") from err
    return ipywidgets


def static_value(control: Any, default: Any = inspect.Parameter.empty) -> Any:
    """The value an explorer draws on the website for one control (what the widget starts at).

    ``control`` is what ``ipywidgets.interact`` accepts: a widget (its ``value``), a ``(low, high)`` or
    ``(low, high, step)`` tuple, a list of options (or ``(label, value)`` pairs), or a fixed value.
    ``default`` is the drawing function's default for that argument; it wins for a tuple or a list, as
    it does in ``interact``. Without one, a tuple gives its midpoint (rounded to an integer, and to the
    step, when all its numbers are integers) and a list its first option.
    """
    if hasattr(control, "value") and hasattr(control, "observe"):  # an ipywidgets widget
        return control.value
    has_default = default is not inspect.Parameter.empty
    if isinstance(control, tuple) and len(control) in (2, 3) and all(isinstance(v, (int, float)) for v in control):
        if has_default:
            return default
        low, high = control[0], control[1]
        if all(isinstance(v, int) for v in control):
            step = control[2] if len(control) == 3 else 1
            return low + step * ((high - low) // (2 * step))
        return (low + high) / 2
    if isinstance(control, list):
        if not control:
            raise ValueError("an empty list of options has no value to draw")
        if has_default:
            return default
        first = control[0]
        return first[1] if isinstance(first, tuple) and len(first) == 2 else first
    return control


def _shown(control: Any, value: Any) -> str:
    """How a drawn value reads in the note: an option's label where the control has labels."""
    if isinstance(control, list):
        for option in control:
            if isinstance(option, tuple) and len(option) == 2 and option[1] == value:
                return str(option[0])
    label = getattr(control, "label", None)  # Dropdown, SelectionSlider
    if isinstance(label, str):
        return label
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _note(controls: Mapping[str, Any], values: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    shown = ", ".join(f"{labels.get(k, k)} = {_shown(controls[k], v)}" for k, v in values.items())
    return f"Drawn at {shown}. In Jupyter or Colab this figure has live controls."


def _show_note(note: str) -> None:
    """One line under a static explorer figure (HTML in the book, plain text elsewhere)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python
        print(note)
        return
    if get_ipython() is None:
        print(note)
        return
    display({"text/html": f"<p class='repdiff-explorer-note'>{html.escape(note)}</p>", "text/plain": note},
            raw=True)


def _live_control(name: str, control: Any, default: Any, label: str | None) -> Any:
    """A widget for a ``(low, high[, step])`` tuple with a label (what ``interact`` would build, named)."""
    if label is None or not (isinstance(control, tuple) and len(control) in (2, 3)):
        return control
    widgets = _ipywidgets()
    value = static_value(control, default)
    kind = widgets.IntSlider if all(isinstance(v, int) for v in control) else widgets.FloatSlider
    step = control[2] if len(control) == 3 else (1 if kind is widgets.IntSlider else (control[1] - control[0]) / 100)
    return kind(value=value, min=control[0], max=control[1], step=step, description=label)


def explorer(draw: Callable[..., Any], *, labels: Mapping[str, str] | None = None, glue_as: str | None = None,
             **controls: Any) -> None:
    """Show ``draw`` with live controls in Jupyter/Colab, and as one static figure in the book (Chapters 1, 7).

    Use it as ``ipywidgets.interact``: ``draw`` makes a figure and calls ``plt.show()``; each keyword is a
    control of the argument of that name (a ``(low, high[, step])`` tuple, a list of options, or a widget).
    The value drawn on the website is the one the control starts at (:func:`static_value`): the function's
    default for a tuple or list, the widget's ``value`` for a widget.

    Args:
        draw: the drawing function. labels: optional display names of the arguments (the slider's
            description, and the note under the static figure).
        glue_as: in the book build, glue the static figure under this name instead of showing it, so the
            chapter places it with a numbered caption (``{glue:figure}``); the note line is then not printed
            (the caption says the controls are live in Jupyter/Colab).
        controls: one per argument of ``draw`` that the reader may move.

    Returns nothing (so a call on a cell's last line adds no ``<function ...>`` output).
    """
    labels = dict(labels or {})
    params = inspect.signature(draw).parameters
    unknown = [k for k in controls if k not in params]
    if unknown:
        raise TypeError(f"{getattr(draw, '__name__', 'draw')} has no argument(s) {unknown}")
    defaults = {k: params[k].default for k in controls}
    if book_build():
        values = {k: static_value(c, defaults[k]) for k, c in controls.items()}
        if glue_as is None:
            draw(**values)
            _show_note(_note(controls, values, labels))
            return
        drawn: list[Any] = []
        with mock.patch.object(plt, "show", lambda *a, **k: drawn.append(plt.gcf())):
            draw(**values)
        if not drawn:
            raise RuntimeError(f"{getattr(draw, '__name__', 'draw')} drew no figure (it must call plt.show())")
        glue(glue_as, drawn[-1], display=False)
        return
    widgets = _ipywidgets()
    live = {k: _live_control(k, c, defaults[k], labels.get(k)) for k, c in controls.items()}
    widgets.interact(draw, **live)


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
                ax.text(j, i, fmt.format(V[i, j]), ha="center", va="center", fontsize=8,
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
    glue_as: str | None = None,
) -> None:
    """Explore the phase diagram: pick a measure and a noise level (Chapter 5).

    In Jupyter/Colab: a dropdown of measures and a σ slider over one heat map. In the book build
    (:func:`book_build`): the heat map of the first measure at the first σ, and a note (:func:`explorer`).

    Args:
        measures: name → values of length ``len(ns)·len(ps)·len(sigmas)`` in the order of
            ``np.meshgrid(ns, ps, sigmas, indexing="ij")`` (what :func:`repdiff.dae.phase.phase_metrics` returns
            for a grid built that way).
        ns, ps, sigmas: the grid's axes. labels: optional display names of the measures.
        glue_as: glue the book build's static figure under this name (:func:`explorer`).
    """
    if not measures:
        raise ValueError("measures is empty: pass at least one name -> values")
    shape = (len(ns), len(ps), len(sigmas))
    grids = {k: _grid_values(v, shape, k) for k, v in measures.items()}
    names = dict(labels or {})

    def draw(measure: str = next(iter(grids)), sigma_index: int = 0) -> None:
        G = grids[measure]
        fig, ax = plt.subplots(figsize=(5.2, 4.0))
        im = draw_phase_map(ax, G[:, :, sigma_index], ns, ps,
                            title=f"{names.get(measure, measure)}, σ = {sigmas[sigma_index]:g}",
                            vmin=float(np.nanmin(G)), vmax=float(np.nanmax(G)))
        fig.colorbar(im, ax=ax)
        plt.show()

    explorer(draw, labels={"measure": "measure", "sigma_index": "σ"}, glue_as=glue_as,
             measure=[(names.get(k, k), k) for k in grids],
             sigma_index=_sigma_control(sigmas))


def _sigma_control(sigmas: Sequence[float]) -> Any:
    """The σ control of :func:`phase_explorer`: a slider that shows σ (a list of options in the book build)."""
    options = [(f"{s:g}", i) for i, s in enumerate(sigmas)]
    if book_build():
        return options
    return _ipywidgets().SelectionSlider(options=options, value=0, description="σ")
