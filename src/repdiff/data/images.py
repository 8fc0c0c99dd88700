"""Real images for the DAE chapters: scikit-learn's digits offline, grey 32×32 CelebA in Colab (Chapter 6).

Every loader returns images as flat rows in [−1, 1] (shape ``(n, H·W)``, float64) together with the
image shape, so the DAE code never needs to know where the pictures came from.

- :func:`load_real_images`: the chapter's switch, ``"digits"`` (default, bundled, offline) or ``"celeba"``.
- :func:`digits_with_labels`: the 1,797 digits and their classes; :func:`one_per_class` picks distinct ones.
- :func:`celeba_from_hub`: streams CelebA from the Hugging Face hub with the ``datasets`` library (needs
  network; for Colab). :func:`save_image_file` / :func:`load_image_file` keep a local copy (``.npz``) and
  also read the hub's own ``.parquet`` shards (rows with an image column holding PNG/JPEG bytes).
- :func:`rows_to_images`: decodes rows as the hub gives them (PIL images or ``{"bytes": ...}`` dicts) to grey
  ``size × size`` arrays in [−1, 1]; used by both readers above.
- :func:`nearest_by_cosine`: which training image each weight column (or any vector) resembles most.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from repdiff._arrays import ArrayLike, like_input, require_finite, to_tensor
from repdiff.data.synthetic import load_digits

__all__ = [
    "CELEBA_REPO",
    "DIGITS_SHAPE",
    "celeba_from_hub",
    "digits_with_labels",
    "load_image_file",
    "load_real_images",
    "nearest_by_cosine",
    "one_per_class",
    "rows_to_images",
    "save_image_file",
]

DIGITS_SHAPE = (8, 8)
#: The CelebA copy on the Hugging Face hub that the paper's released code streams (parquet shards).
CELEBA_REPO = "eurecom-ds/celeba"


def digits_with_labels() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits in [−1, 1] and their classes: ``(1797, 64)`` float64, ``(1797,)`` int.

    :func:`repdiff.data.synthetic.load_digits` with its labels, in the bundled order (Chapter 6).
    """
    return load_digits(return_labels=True)


def one_per_class(labels: Sequence[int] | np.ndarray, per_class: int = 1) -> np.ndarray:
    """Indices of the first ``per_class`` items of every class, class by class (Chapter 6's small set).

    ``labels``: ``(N,)`` integers → ``(n_classes · per_class,)`` indices. Raises if a class has too few items.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    out = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} items, fewer than per_class = {per_class}")
        out.extend(idx[:per_class].tolist())
    return np.asarray(out, dtype=np.int64)


def _to_grey_array(img: Any, size: int) -> np.ndarray:
    """One image (PIL image, ``{"bytes": ...}`` dict, bytes or array) → grey ``(size, size)`` in [0, 255]."""
    if isinstance(img, dict):
        if img.get("bytes") is None:
            raise ValueError("an image row given as a dict needs its 'bytes' (PNG/JPEG file content)")
        img = img["bytes"]
    if isinstance(img, bytes | bytearray):
        img = Image.open(io.BytesIO(img))
    if isinstance(img, np.ndarray):
        arr = img.astype(np.float64)
        if arr.ndim == 3:  # H, W, C → luminance (ITU-R 601, as PIL's "L" mode)
            arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if not isinstance(img, Image.Image):
        raise TypeError(f"cannot read an image from a {type(img).__name__}")
    img = img.convert("L")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def rows_to_images(
    rows: Iterable[Any], *, size: int = 32, image_key: str = "image", n: int | None = None
) -> np.ndarray:
    """Decode data-set rows to flat grey images in [−1, 1]: shape ``(n, size·size)`` (Chapter 6).

    A row may be a dict holding the image under ``image_key`` (what the hub's ``datasets`` rows and parquet
    shards hold: a PIL image, or ``{"bytes": b"...", "path": ...}``) or the image itself. Colour images
    are turned grey, resized to ``size × size`` (bilinear) and mapped 0…255 ↦ −1…1, as in the paper's
    CelebA pipeline (resize to 32, grey, ``ToTensor`` then ``2x − 1``). ``n`` stops after that many rows.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    out = []
    for row in rows:
        if n is not None and len(out) >= n:
            break
        img = row[image_key] if isinstance(row, dict) and image_key in row else row
        out.append(_to_grey_array(img, int(size)).ravel())
    if not out:
        raise ValueError("no image rows were given")
    return np.stack(out) / 127.5 - 1.0


def celeba_from_hub(
    n: int = 10_000,
    *,
    split: str = "train",
    size: int = 32,
    repo_id: str = CELEBA_REPO,
    image_key: str = "image",
    cache: str | Path | None = None,
) -> np.ndarray:
    """The first ``n`` CelebA images from the Hugging Face hub, grey ``size × size``, flat in [−1, 1].

    Streams the rows (nothing but the first ``n`` is downloaded) with the ``datasets`` library, imported
    only here. Needs network: this is for Colab (``pip install datasets`` if it is missing); it cannot run
    where the hub is unreachable, e.g. in the course's offline build. With ``cache``, the images are also
    saved there (:func:`save_image_file`) and read back from it next time, without network.

    Returns:
        ``(n, size·size)`` float64.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if cache is not None and Path(cache).is_file():
        X, shape = load_image_file(cache, n=n)
        if shape == (size, size) and len(X) == n:
            return X
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError(
            "celeba_from_hub needs the `datasets` library: run `pip install datasets` (Colab has network "
            "access; the course's offline build uses the bundled digits instead)."
        ) from err
    try:
        stream = load_dataset(repo_id, split=split, streaming=True)
        X = rows_to_images(stream, size=size, image_key=image_key, n=n)
    except (ImportError, TypeError, ValueError, KeyError):
        raise
    except Exception as err:  # network, authentication or hub errors have many types
        raise RuntimeError(
            f"could not stream {repo_id!r} (split {split!r}) from the Hugging Face hub: {err}. This needs "
            "network access (e.g. Colab). Offline, use load_real_images('digits'), or a local copy with "
            "load_image_file(path)."
        ) from err
    if len(X) < n:
        raise ValueError(f"{repo_id!r} split {split!r} has only {len(X)} rows, fewer than n = {n}")
    if cache is not None:
        save_image_file(cache, X, (size, size), source=f"{repo_id}:{split}")
    return X


def save_image_file(path: str | Path, images: ArrayLike, shape: tuple[int, int], *, source: str = "") -> Path:
    """Save flat images in [−1, 1] as ``.npz`` (8-bit grey, ``images`` ``(n, H, W)`` uint8, plus ``source``).

    ``images``: ``(n, H·W)`` or ``(n, H, W)``. The 8-bit rounding is what an image file stores anyway.
    """
    t, _ = to_tensor(images, "images")
    arr = t.detach().cpu().double().numpy()
    H, W = (int(s) for s in shape)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr[0].size != H * W:
        raise ValueError(f"images must be (n, {H * W}) or (n, {H}, {W}) with n >= 1, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinite values")
    u8 = np.clip(np.rint((arr.reshape(len(arr), H, W) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"save_image_file writes .npz files, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=u8, source=np.array(source))
    return path


def load_image_file(
    path: str | Path, *, n: int | None = None, size: int = 32, image_key: str = "image"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Read a local copy of an image data set: ``(X (n, H·W) in [−1, 1], (H, W))``.

    Two formats:

    - ``.npz`` written by :func:`save_image_file` (uint8 array ``images`` of shape ``(n, H, W)``);
    - ``.parquet``, a shard of a hub data set (as downloaded from the "Files" tab), whose ``image_key``
      column holds ``{"bytes": ..., "path": ...}`` structs; decoded by :func:`rows_to_images` to
      ``size × size``. Needs ``pyarrow`` (installed with ``datasets``).

    ``n`` keeps the first ``n`` images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist (make it with save_image_file or celeba_from_hub(cache=...))"
        )
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be None or a positive integer, got {n!r}")
    if path.suffix == ".npz":
        with np.load(path) as f:
            if "images" not in f:
                raise ValueError(f"{path} has no 'images' array (it was not written by save_image_file)")
            u8 = f["images"]
        if u8.ndim != 3:
            raise ValueError(f"{path}: 'images' must have shape (n, H, W), got {u8.shape}")
        u8 = u8[:n] if n is not None else u8
        X = u8.reshape(len(u8), -1).astype(np.float64) / 127.5 - 1.0
        return X, (int(u8.shape[1]), int(u8.shape[2]))
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError("reading .parquet shards needs pyarrow: `pip install pyarrow`") from err
        table = pq.read_table(path, columns=[image_key])
        rows = table.column(image_key).to_pylist()
        return rows_to_images(rows, size=size, n=n), (int(size), int(size))
    raise ValueError(f"unknown image file type {path.suffix!r}: expected .npz or .parquet")


def load_real_images(
    name: str = "digits", *, n: int | None = None, size: int = 32, cache: str | Path | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """The chapter's data switch: ``(X (n, H·W) in [−1, 1], (H, W))`` (Chapter 6).

    ``"digits"``: the bundled 8×8 digits (offline; ``n`` keeps the first n, default all 1,797).
    ``"celeba"``: :func:`celeba_from_hub` (Colab; ``n`` defaults to 10,000, ``size`` to 32).
    """
    if name == "digits":
        return load_digits(n=n), DIGITS_SHAPE
    if name == "celeba":
        return celeba_from_hub(10_000 if n is None else n, size=size, cache=cache), (size, size)
    raise ValueError(f"unknown data set {name!r}: use 'digits' or 'celeba'")


def nearest_by_cosine(queries: ArrayLike, X: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """For each query vector, the training row with the largest cosine similarity, and that cosine.

    ``queries``: ``(m, d)`` (e.g. weight columns, ``W1.T``); ``X``: ``(n, d)``.
    Returns ``(best_cos (m,), best_index (m,))`` (Chapter 6: "is this unit a stored image?").
    Zero vectors get cosine 0.
    """
    q, was_np = to_tensor(queries, "queries")
    x, _ = to_tensor(X, "X")
    x = x.to(q)
    if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise ValueError(
            f"queries (m, d) and X (n, d) must share d, got {tuple(q.shape)} and {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("X is empty")
    require_finite(q, "queries")
    require_finite(x, "X")
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-300)
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    best, idx = (qn @ xn.T).max(dim=1)
    return like_input(best, was_np), (idx.numpy() if was_np else idx)
