"""The course's "mini-LAION": procedurally generated captioned images with planted duplicates (Chapters 12-14).

Stable Diffusion memorized a few hundred LAION images that appear many times in its training set, each with
the same caption, while it generalizes on the vast, non-duplicated rest. This module builds a small data set
with the same structure, generated on the fly (no download):

- **compositional pairs**: two coloured shapes on a coloured background, captioned
  ``"a red circle above a blue square on a gray background"``; every caption occurs once, and the objects'
  sizes and positions are drawn at random, so the caption describes the image without fixing it;
- **planted duplicates**: ``n_planted`` "posters" (a mosaic of random coloured tiles with two shapes on top)
  with title-like captions
  (``"the hidden orchard by kalomir"``, each with its own made-up name) whose words never occur in
  compositional captions; each poster is
  repeated ``n_copies`` times with the same caption, as the duplicated LAION images were;
- **single posters**: ``n_single_posters`` more posters of the same kind with their own titles, each seen
  once (a control: same look as the planted images, no duplication);
- **held-out captions**: compositional captions that occur nowhere in the training set.

Images are ``float32`` arrays of shape ``(N, 3, size, size)`` in [-1, 1], drawn by :mod:`repdiff.data.scenes`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from repdiff.data.scenes import COLORS, SHAPES, Object, render_scene

__all__ = [
    "OBJECT_COLORS",
    "BACKGROUND_COLORS",
    "SHAPES",
    "RELATIONS",
    "CaptionedDataset",
    "all_compositional",
    "compositional_caption",
    "parse_compositional_caption",
    "compositional_layout",
    "compositional_scene",
    "poster_layout",
    "poster_scene",
    "title_captions",
    "make_mini_laion",
    "vocabulary",
]

OBJECT_COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
BACKGROUND_COLORS = ("white", "black", "gray", "pink", "teal")
RELATIONS = ("above", "below", "left of", "right of")

_TITLE_ADJ = ("quiet", "golden", "midnight", "silver", "forgotten", "painted", "northern", "hidden", "lonely",
              "ancient", "broken", "distant", "gentle", "wild", "frozen", "secret")
_TITLE_NOUN = ("harbor", "garden", "letters", "river", "city", "lantern", "orchard", "violin", "island",
               "mirror", "forest", "tower", "journey", "season", "bridge", "kingdom")


@dataclass
class CaptionedDataset:
    """A captioned training set with planted duplicates, and the prompt lists that go with it.

    Attributes:
        images: ``(N, 3, size, size)`` float32 in [-1, 1], the training images (duplicates included).
        captions: ``N`` training captions, aligned with ``images``.
        kind: ``N`` strings, ``"compositional"``, ``"planted"`` or ``"single_poster"``.
        planted_id: ``(N,)`` int, the index of the planted image a row copies, ``-1`` for other rows.
        planted_images: ``(n_planted, 3, size, size)`` the distinct planted images.
        planted_captions: their captions (the "memorized prompts").
        held_out_captions: compositional captions absent from the training set (the "non-memorized prompts").
        planted_layouts: ``n_planted`` pairs ``(objects, background)`` from which the planted images were
            rendered (:func:`poster_layout`), so that a poster can be re-drawn with its objects changed.
    """

    images: np.ndarray
    captions: list[str]
    kind: np.ndarray
    planted_id: np.ndarray
    planted_images: np.ndarray
    planted_captions: list[str]
    held_out_captions: list[str]
    params: dict = field(default_factory=dict)
    planted_layouts: list[tuple[list[Object], str | np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def unique_images(self) -> np.ndarray:
        """The distinct training images (each planted image once): the reference set for nearest neighbours."""
        keep = self.kind != "planted"
        return np.concatenate([self.images[keep], self.planted_images])


def compositional_caption(c1: str, s1: str, rel: str, c2: str, s2: str, bg: str) -> str:
    """``"a {c1} {s1} {rel} a {c2} {s2} on a {bg} background"``."""
    return f"a {c1} {s1} {rel} a {c2} {s2} on a {bg} background"


def parse_compositional_caption(caption: str) -> tuple[str, str, str, str, str, str]:
    """The parts ``(c1, s1, rel, c2, s2, bg)`` of a caption written by :func:`compositional_caption`.

    Raises ``ValueError`` for any other caption (a planted title, a typo).
    """
    words = caption.split()
    rel_words = 2 if len(words) > 3 and words[3] in ("left", "right") else 1
    try:
        c1, s1 = words[1], words[2]
        rel = " ".join(words[3:3 + rel_words])
        c2, s2, bg = words[4 + rel_words], words[5 + rel_words], words[8 + rel_words]
    except IndexError:
        raise ValueError(f"not a compositional caption: {caption!r}") from None
    if compositional_caption(c1, s1, rel, c2, s2, bg) != caption or not (
            {c1, c2} <= set(OBJECT_COLORS) and {s1, s2} <= set(SHAPES) and rel in RELATIONS
            and bg in BACKGROUND_COLORS):
        raise ValueError(f"not a compositional caption: {caption!r}")
    return c1, s1, rel, c2, s2, bg


def compositional_layout(c1: str, s1: str, rel: str, c2: str, s2: str, rng: np.random.Generator,
                         size: int = 32) -> list[Object]:
    """A random layout that fits the compositional caption: positions and sizes jittered.

    Returns the two objects ``(shape, colour, cx, cy, radius)`` that :func:`repdiff.data.scenes.render_scene` draws.
    """
    if rel not in RELATIONS:
        raise ValueError(f"unknown relation {rel!r}; expected one of {RELATIONS}")
    u = size / 32.0
    near, far = rng.uniform(7, 11, size=2) * u, rng.uniform(21, 25, size=2) * u
    free = rng.uniform(9, 23, size=2) * u
    r1, r2 = rng.uniform(4.5, 6.5, size=2) * u
    if rel == "above":
        p1, p2 = (free[0], near[0]), (free[1], far[0])
    elif rel == "below":
        p1, p2 = (free[0], far[0]), (free[1], near[0])
    elif rel == "left of":
        p1, p2 = (near[0], free[0]), (far[0], free[1])
    else:
        p1, p2 = (far[0], free[0]), (near[0], free[1])
    return [(s1, c1, float(p1[0]), float(p1[1]), float(r1)), (s2, c2, float(p2[0]), float(p2[1]), float(r2))]


def compositional_scene(c1: str, s1: str, rel: str, c2: str, s2: str, bg: str, rng: np.random.Generator,
                        size: int = 32) -> np.ndarray:
    """Render a random image that fits the compositional caption (positions and sizes jittered).

    Returns ``(3, size, size)`` float32 in [-1, 1].
    """
    return render_scene(compositional_layout(c1, s1, rel, c2, s2, rng, size), bg, size)


def poster_layout(rng: np.random.Generator, size: int = 32, n_objects: int = 2,
                  mosaic_cells: int = 8) -> tuple[list[Object], str | np.ndarray]:
    """A random poster's objects and background, the ingredients :func:`poster_scene` renders.

    Returns ``(objects, background)``: ``n_objects`` tuples ``(shape, colour, cx, cy, radius)``, and a
    colour name (``mosaic_cells=0``) or a ``(3, size, size)`` mosaic in [-1, 1].
    """
    if mosaic_cells < 0 or (mosaic_cells and size % mosaic_cells):
        raise ValueError(f"mosaic_cells must be 0 or divide size={size}, got {mosaic_cells}")
    u = size / 32.0
    background: str | np.ndarray = str(rng.choice(BACKGROUND_COLORS))
    objs = []
    for _ in range(n_objects):
        objs.append((str(rng.choice(SHAPES)), str(rng.choice(OBJECT_COLORS)), float(rng.uniform(6, 26) * u),
                     float(rng.uniform(6, 26) * u), float(rng.uniform(3.5, 7.0) * u)))
    if mosaic_cells:
        palette = np.asarray(list(COLORS.values())) * 2 - 1  # (n_colours, 3) in [-1, 1]
        tiles = palette[rng.integers(0, len(palette), size=(mosaic_cells, mosaic_cells))].transpose(2, 0, 1)
        k = size // mosaic_cells
        background = np.repeat(np.repeat(tiles, k, axis=1), k, axis=2)
    return objs, background


def poster_scene(rng: np.random.Generator, size: int = 32, n_objects: int = 2, mosaic_cells: int = 8) -> np.ndarray:
    """A "poster": ``n_objects`` random shapes on a mosaic of ``mosaic_cells``² random coloured tiles.

    :func:`make_mini_laion` draws two shapes on a mosaic, or three on a flat background (``mosaic_cells=0``,
    the first design of the course's posters, which the tiny model could denoise without having stored them).

    The tiles make a poster *locally unpredictable*: no smoothness prior can tell a tile's colour from its
    neighbours', so a denoiser reproduces a poster's tiles only if it has stored that poster, as SD stored
    the detail of its duplicated LAION images. ``mosaic_cells=0`` gives a flat background instead (shapes
    alone are denoised by local smoothness, stored or not: Chapter 13 compares the two).
    """
    objects, background = poster_layout(rng, size, n_objects, mosaic_cells)
    return render_scene(objects, background, size)


_SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "vas", "zel", "dor", "fi", "gan", "hu", "jol", "ne", "pra", "sul",
              "ti", "ves", "wor", "yan", "bri")


def _names(n: int = 800) -> list[str]:
    """``n`` distinct made-up names of three syllables ("kalomir"), the same on every call."""
    rng = np.random.default_rng(12345)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        name = "".join(rng.choice(_SYLLABLES, size=3))
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def title_captions(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct title-like captions ("the hidden orchard by kalomir"), none using a compositional word.

    Each title ends with its own made-up name, as many memorized LAION captions carry a proper name.
    """
    names = _names()
    if n > len(names):
        raise ValueError(f"at most {len(names)} distinct titles are available, asked for {n}")
    pick = rng.choice(len(names), size=n, replace=False)
    adj = rng.choice(_TITLE_ADJ, size=n)
    noun = rng.choice(_TITLE_NOUN, size=n)
    return [f"the {a} {b} by {names[i]}" for a, b, i in zip(adj, noun, pick, strict=True)]


def all_compositional() -> list[tuple[str, str, str, str, str, str]]:
    """Every compositional caption's parts ``(c1, s1, rel, c2, s2, bg)``, in a fixed order (background last).

    :func:`make_mini_laion` splits them into training and held-out captions; Chapter 14 draws concept sets
    from them.
    """
    return list(itertools.product(OBJECT_COLORS, SHAPES, RELATIONS, OBJECT_COLORS, SHAPES, BACKGROUND_COLORS))


def make_mini_laion(n_unique: int = 3000, n_planted: int = 100, n_copies: int = 20, n_single_posters: int = 300,
                    n_held_out: int = 200, size: int = 32, seed: int = 0, mosaic_cells: int = 0) -> CaptionedDataset:
    """Generate the mini-LAION training set and its prompt lists (Chapter 12).

    Args:
        n_unique: compositional image-caption pairs, each caption used once.
        n_planted: distinct planted posters (the memorization targets), each with a unique title.
        n_copies: how many times each planted poster (with its caption) is repeated.
        n_single_posters: posters with their own titles that occur once (same look, no duplication).
        n_held_out: compositional captions kept out of training.
        size: image side in pixels.
        seed: everything is a function of it.
        mosaic_cells: tiles per side of a poster's mosaic background (two shapes on top); 0 gives three
            shapes on a flat background (see :func:`poster_scene`).
    """
    for name, v in [("n_unique", n_unique), ("n_planted", n_planted), ("n_copies", n_copies),
                    ("n_held_out", n_held_out)]:
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if n_single_posters < 0:
        raise ValueError("n_single_posters must be >= 0")
    rng = np.random.default_rng(seed)
    combos = all_compositional()
    if n_unique + n_held_out > len(combos):
        raise ValueError(f"only {len(combos)} compositional captions exist; asked for {n_unique + n_held_out}")
    order = rng.permutation(len(combos))
    held = [combos[i] for i in order[:n_held_out]]
    train = [combos[i] for i in order[n_held_out:n_held_out + n_unique]]

    images, captions, kind, pid = [], [], [], []
    for c in train:
        images.append(compositional_scene(*c, rng=rng, size=size))
        captions.append(compositional_caption(*c))
        kind.append("compositional")
        pid.append(-1)
    titles = title_captions(n_planted + n_single_posters, rng)
    planted_caps, single_caps = titles[:n_planted], titles[n_planted:]
    n_obj = 2 if mosaic_cells else 3
    planted_layouts = [poster_layout(rng, size, n_obj, mosaic_cells) for _ in range(n_planted)]
    planted_imgs = np.stack([render_scene(objs, bg, size) for objs, bg in planted_layouts])
    for cap in single_caps:
        images.append(poster_scene(rng, size, n_obj, mosaic_cells))
        captions.append(cap)
        kind.append("single_poster")
        pid.append(-1)
    for j, cap in enumerate(planted_caps):
        for _ in range(n_copies):
            images.append(planted_imgs[j])
            captions.append(cap)
            kind.append("planted")
            pid.append(j)
    return CaptionedDataset(
        images=np.stack(images).astype(np.float32),
        captions=captions,
        kind=np.asarray(kind),
        planted_id=np.asarray(pid, dtype=np.int64),
        planted_images=planted_imgs.astype(np.float32),
        planted_captions=planted_caps,
        held_out_captions=[compositional_caption(*c) for c in held],
        planted_layouts=planted_layouts,
        params=dict(n_unique=n_unique, n_planted=n_planted, n_copies=n_copies, n_single_posters=n_single_posters,
                    n_held_out=n_held_out, size=size, seed=seed,
                    mosaic_cells=mosaic_cells),
    )


def vocabulary() -> list[str]:
    """Every word any caption of this module can contain, sorted (the tiny tokenizer's word list)."""
    words: set[str] = {"a", "on", "background", "the", "of", "left", "right", "above", "below", "by"}
    words |= set(COLORS) | set(SHAPES) | set(_TITLE_ADJ) | set(_TITLE_NOUN) | set(_names())
    return sorted(words)
