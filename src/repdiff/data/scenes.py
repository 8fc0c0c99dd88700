"""Drawing the mini-LAION's scenes: coloured shapes on a background, and re-drawing them changed (Chapters 12-14).

:func:`render_scene` draws ``(shape, colour, cx, cy, radius)`` objects (anti-aliased) on a flat colour or an
image; :func:`edit_objects` and :func:`render_layouts` re-draw layouts with their objects scaled or moved
(Chapter 14); :func:`color_fraction` measures how much of an image is one named colour. The captions and the
data set built from these scenes are :mod:`repdiff.data.captioned`'s.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLORS", "SHAPES", "Object", "render_scene", "edit_objects", "render_layouts", "color_fraction"]

#: RGB in [0, 1] of every colour word the captions use.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.05),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
    "gray": (0.50, 0.50, 0.50),
    "pink": (0.98, 0.70, 0.80),
    "teal": (0.10, 0.55, 0.55),
}
#: one drawn object: ``(shape, colour, cx, cy, radius)``, positions and radius in pixels
Object = tuple[str, str, float, float, float]

SHAPES = ("circle", "square", "triangle")


def _grid(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    n = size * supersample
    c = (np.arange(n) + 0.5) / supersample
    return np.meshgrid(c, c, indexing="xy")


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    if shape == "square":
        h = 0.85 * r
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    if shape == "triangle":  # apex up (y grows downwards)
        top, bottom = cy - r, cy + 0.8 * r
        return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= 0.65 * (y - top))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_scene(objects: list[tuple[str, str, float, float, float]], background: str | np.ndarray,
                 size: int = 32, supersample: int = 2) -> np.ndarray:
    """Draw shapes on a flat background; later objects cover earlier ones.

    Args:
        objects: ``(shape, colour, cx, cy, radius)`` per object, positions in pixels (origin top-left).
        background: a colour name from :data:`COLORS`, or an image ``(3, size, size)`` in [-1, 1].
        size: output side in pixels.
        supersample: anti-aliasing factor (rendered larger, then averaged).

    Returns:
        ``(3, size, size)`` float32 in [-1, 1].
    """
    if size < 4 or supersample < 1:
        raise ValueError(f"size must be >= 4 and supersample >= 1, got {size}, {supersample}")
    x, y = _grid(size, supersample)
    img = np.empty((3, *x.shape), dtype=np.float64)
    if isinstance(background, str):
        if background not in COLORS:
            raise ValueError(f"unknown colour {background!r}")
        img[:] = np.asarray(COLORS[background])[:, None, None]
    else:
        background = np.asarray(background, dtype=np.float64)
        if background.shape != (3, size, size):
            raise ValueError(f"a background image must have shape (3, {size}, {size}), got {background.shape}")
        img[:] = np.repeat(np.repeat((background + 1) / 2, supersample, axis=1), supersample, axis=2)
    for shape, colour, cx, cy, r in objects:
        if colour not in COLORS:
            raise ValueError(f"unknown colour {colour!r}")
        m = _shape_mask(shape, x, y, cx, cy, r)
        img[:, m] = np.asarray(COLORS[colour])[:, None]
    n = size
    img = img.reshape(3, n, supersample, n, supersample).mean(axis=(2, 4))
    return (2 * img - 1).astype(np.float32)


def edit_objects(objects: list[Object], scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> list[Object]:
    """The same objects with every radius times ``scale`` and every centre moved by ``shift = (dx, dy)`` pixels.

    Chapter 14 re-renders a scene with its objects changed and nothing else (a direction in image space that
    is a natural variation of the compositional scenes).
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    dx, dy = shift
    return [(shape, colour, cx + dx, cy + dy, r * scale) for shape, colour, cx, cy, r in objects]


def render_layouts(layouts: list[tuple[list[Object], str | np.ndarray]], scale: float = 1.0,
                   shift: tuple[float, float] = (0.0, 0.0), size: int = 32) -> np.ndarray:
    """Draw each ``(objects, background)`` layout, its objects changed by :func:`edit_objects` (Chapter 14).

    Returns ``(N, 3, size, size)`` float32 in [-1, 1].
    """
    if not layouts:
        raise ValueError("no layouts to render")
    return np.stack([render_scene(edit_objects(objects, scale, shift), background, size)
                     for objects, background in layouts])


def color_fraction(images: np.ndarray, colour: str, tol: float = 0.25) -> np.ndarray:
    """Fraction of pixels within ``tol`` (max-abs, in [0, 1] units) of a named colour (Chapter 14's attribute).

    Args:
        images: ``(N, 3, H, W)`` in [-1, 1].
    Returns:
        ``(N,)`` fractions in [0, 1].
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinity")
    if colour not in COLORS:
        raise ValueError(f"unknown colour {colour!r}")
    rgb = (images + 1) / 2
    target = np.asarray(COLORS[colour])[None, :, None, None]
    close = np.abs(rgb - target).max(axis=1) <= tol
    return close.mean(axis=(1, 2))


def border_color(images: np.ndarray) -> np.ndarray:
    """The median colour of each image's one-pixel border, in the images' own units (Chapters 12 and 14).

    Args:
        images: ``(N, 3, H, W)`` (a torch tensor works too).
    Returns:
        ``(N, 3)`` float64: per channel, the median over the 4·H border pixels (the corners counted twice).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {x.shape}")
    border = np.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    return np.median(border, axis=2)
