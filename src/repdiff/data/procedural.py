"""Procedurally generated grey images: the offline data set of Part III (Chapters 9-11).

Every image is drawn from its own random parameters: a background (level and gentle gradient), then one to
three shapes painted on top of each other, each a soft-edged disc/ellipse, rectangle or stroke (a thick line
segment) with a random position, size, angle and brightness. Image ``i`` of the stream with seed ``s``
depends only on ``(s, i)``, so

- the stream is unbounded: any number of distinct training images, as the transition from memorization to
  generalization needs (Chapter 10 trains on 4 … 4,096 of them);
- disjoint training sets are index ranges (``offset``), e.g. Chapter 10's two models on disjoint halves;
- the same spec always gives the same pixels, on any machine (numpy's PCG64 generator, float64 maths).

:func:`procedural_images` returns ``(n, 1, size, size)`` float32 in [−1, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["procedural_images", "SHAPES"]

#: The shape kinds the generator paints.
SHAPES = ("ellipse", "rectangle", "stroke")


def _soft(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (negative inside), with an edge ``edge`` pixels wide."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / edge, -30, 30)))


def _one_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One image ``(size, size)`` in [−1, 1] from the generator ``rng``."""
    c = (np.arange(size) + 0.5) / size  # pixel centres in (0, 1)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    # background: a dark level with a gentle linear gradient
    angle = rng.uniform(0, 2 * np.pi)
    img = rng.uniform(-1.0, -0.5) + rng.uniform(0, 0.3) * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle))
    edge = 0.4 / size  # about half a pixel of anti-aliasing
    for _ in range(rng.integers(1, 4)):
        kind = SHAPES[rng.integers(0, len(SHAPES))]
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        theta = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        if kind == "ellipse":
            a, b = rng.uniform(0.08, 0.3, size=2)
            r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            dist = (r - 1.0) * min(a, b)
        elif kind == "rectangle":
            a, b = rng.uniform(0.08, 0.3, size=2)
            dist = np.maximum(np.abs(u) - a, np.abs(v) - b)
        else:  # stroke: a segment of half-length a and half-width w
            a, w = rng.uniform(0.15, 0.4), rng.uniform(0.03, 0.07)
            dist = np.sqrt(np.maximum(np.abs(u) - a, 0.0) ** 2 + v**2) - w
        level = rng.uniform(-0.2, 1.0)
        alpha = _soft(dist, edge)
        img = (1 - alpha) * img + alpha * level
    return np.clip(img, -1.0, 1.0)


def procedural_images(n: int, *, size: int = 16, seed: int = 0, offset: int = 0) -> np.ndarray:
    """Images ``offset … offset + n − 1`` of the procedural stream with ``seed``.

    Args:
        n: how many images (≥ 1).
        size: height = width in pixels (≥ 8).
        seed: which stream (≥ 0).
        offset: index of the first image (≥ 0); ``offset=n`` gives a set disjoint from ``offset=0``.

    Returns:
        ``(n, 1, size, size)`` float32 in [−1, 1] (Chapters 9-11, via :func:`repdiff.data.real.load_dataset`).
    """
    for name, value, low in (("n", n, 1), ("size", size, 8), ("seed", seed, 0), ("offset", offset, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out = np.empty((int(n), 1, int(size), int(size)), dtype=np.float32)
    for k in range(int(n)):
        rng = np.random.default_rng([int(seed), int(offset) + k])
        out[k, 0] = _one_image(rng, int(size))
    return out
