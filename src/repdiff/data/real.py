"""Training sets for the U-Nets of Part III, described by a small JSON-able ``spec`` (Chapters 9-11).

:func:`load_dataset` turns a recipe's ``data`` entry into the exact training tensor, values in [−1, 1],
shape ``(N, C, H, W)``, float32. The names it knows:

- ``"procedural"`` (offline, the default): :func:`repdiff.data.procedural.procedural_images`.
  Keys ``n``, ``size`` (16), ``seed`` (0), ``offset`` (0), and for planted duplicates (Chapter 11's hybrid model)
  ``dup_count`` / ``dup_copies``: the first ``dup_count`` images appear ``dup_copies`` times each (the copies
  are appended, so the tensor has ``n + dup_count·(dup_copies − 1)`` rows).
- ``"digits"`` (offline): scikit-learn's 1,797 bundled 8×8 digits. Keys ``n``, ``offset`` (0), ``size`` (8;
  16 upsamples ×2), ``shuffle_seed`` (``None`` keeps the bundled order).
- ``"mnist"``: the IDX files ``train-images-idx3-ubyte.gz`` / ``t10k-images-idx3-ubyte.gz`` in ``root``.
  Keys ``n``, ``offset``, ``size`` (28; 14 or any other size resizes), ``split`` (``"train"``/``"test"``),
  ``root``, ``download`` (False).
- ``"cifar10"``: the binary release's batches ``cifar-10-batches-bin/*.bin`` in ``root`` (fixed-length records,
  read with numpy; nothing is unpickled). Keys ``n``, ``offset``, ``size`` (32), ``grey`` (False), ``split``,
  ``root``, ``download``.
- ``"celeba"``: a local grey copy (``.npz`` or a hub ``.parquet`` shard) read with
  :func:`repdiff.data.images.load_image_file`; with ``download`` it is streamed from the hub first
  (:func:`repdiff.data.images.celeba_from_hub`). Keys ``n``, ``offset``, ``size`` (32), ``path``, ``download``.

MNIST, CIFAR-10 and CelebA are for Colab (they need network once); offline, a spec naming one that is not
on disk fails with a :class:`DatasetNotAvailable` error whose message says how to get it. Downloads use the
standard library only (``urllib``), imported when called, and every downloaded file is checked against the MD5
pinned in :data:`CHECKSUMS` before it is saved under its name (a mismatch raises :class:`ChecksumMismatch` and
keeps nothing), so a file swapped on a mirror is never read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repdiff.data import images as image_datasets
from repdiff.data.procedural import procedural_images
from repdiff.data.synthetic import load_digits

__all__ = [
    "DatasetNotAvailable",
    "ChecksumMismatch",
    "CHECKSUMS",
    "DATASETS",
    "load_dataset",
    "default_root",
    "download_mnist",
    "download_cifar10",
    "read_idx_images",
    "write_idx_images",
    "read_cifar10_batches",
    "write_cifar10_batch",
]

DATASETS = ("procedural", "digits", "mnist", "cifar10", "celeba")

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
CIFAR10_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32×32 planes

# The published MD5 of every file the loaders download. MNIST: the values torchvision.datasets.MNIST pins (the
# same files on both mirrors); CIFAR-10: the value the data set's page (https://www.cs.toronto.edu/~kriz/cifar.html)
# publishes for its binary version.
CHECKSUMS = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
}


class DatasetNotAvailable(FileNotFoundError):
    """A recipe names a data set that is not on disk; the message says how to get it."""


class ChecksumMismatch(RuntimeError):
    """A downloaded file's MD5 differs from the one pinned in :data:`CHECKSUMS` (the file was not kept)."""


def default_root(name: str) -> Path:
    """Where downloads go unless a spec gives ``root``: ``$REPDIFF_DATA_ROOT/<name>`` or ``~/.cache/repdiff/<name>``."""
    base = os.environ.get("REPDIFF_DATA_ROOT")
    return (Path(base) if base else Path.home() / ".cache" / "repdiff") / name


# --------------------------------------------------------------------------------------------- file formats
def write_idx_images(path: str | Path, images: np.ndarray) -> Path:
    """Write uint8 images ``(n, H, W)`` as a gzipped IDX3 file (the MNIST format; used by the offline tests)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 of shape (n, H, W), got {images.dtype} {images.shape}")
    n, h, w = images.shape
    header = np.array([0x00000803, n, h, w], dtype=">u4").tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())
    return path


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read a (gzipped) IDX3 image file: uint8 ``(n, H, W)``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = np.frombuffer(raw[:16], dtype=">u4")
    if magic != 0x00000803:
        raise ValueError(f"{path} is not an IDX3 image file (magic number {magic:#x}, expected 0x803)")
    data = np.frombuffer(raw[16:], dtype=np.uint8)
    if data.size != n * h * w:
        raise ValueError(f"{path}: header says {n}×{h}×{w} pixels but the file holds {data.size}")
    return data.reshape(int(n), int(h), int(w))


def write_cifar10_batch(path: str | Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write uint8 RGB images ``(n, 32, 32, 3)`` as one batch of CIFAR-10's binary release (for offline tests).

    Each record is 3073 bytes: the label (0…9), then the 1024 red, 1024 green and 1024 blue pixels, row by row.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images must be uint8 of shape (n, 32, 32, 3), got {images.dtype} {images.shape}")
    labels = np.zeros(len(images), dtype=np.uint8) if labels is None else np.asarray(labels)
    if labels.shape != (len(images),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"labels must be {len(images)} integers in 0…9, got shape {labels.shape}")
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.transpose(0, 3, 1, 2).reshape(len(images), -1)],
                             axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())
    return path


def read_cifar10_batches(folder: str | Path, split: str = "train") -> np.ndarray:
    """Read ``data_batch_1..5.bin`` (train) or ``test_batch.bin`` of ``cifar-10-batches-bin``: uint8 ``(n, 32, 32, 3)``.

    The binary release is read as raw bytes (3073-byte records: a label byte and 3×32×32 pixel bytes); nothing is
    unpickled. Train batches that are missing are skipped (the offline tests write only ``data_batch_1.bin``);
    none at all raises :class:`DatasetNotAvailable`; a file that is not whole records raises ``ValueError``.
    """
    folder = Path(folder)
    parts = []
    for name in CIFAR10_FILES[split]:
        p = folder / name
        if p.is_file():
            raw = np.fromfile(p, dtype=np.uint8)
            if raw.size == 0 or raw.size % CIFAR10_RECORD:
                raise ValueError(f"{p} holds {raw.size} bytes: not whole CIFAR-10 records of {CIFAR10_RECORD} bytes")
            records = raw.reshape(-1, CIFAR10_RECORD)
            if records[:, 0].max() > 9:
                raise ValueError(f"{p}: label byte {records[:, 0].max()} > 9: not a CIFAR-10 binary batch")
            parts.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    if not parts:
        raise DatasetNotAvailable(_how_to_get("cifar10", folder))
    return np.ascontiguousarray(np.concatenate(parts))


# ------------------------------------------------------------------------------------------------ downloads
def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` if its MD5 is the one :data:`CHECKSUMS` pins for ``dest.name``.

    The file is written to ``dest.part`` first and renamed only once verified; on a mismatch it is deleted and
    :class:`ChecksumMismatch` names the URL, the expected and the actual MD5. A name with no pinned checksum is
    refused (``ValueError``) before anything is downloaded.
    """
    if dest.name not in CHECKSUMS:
        raise ValueError(f"no pinned checksum for {dest.name!r}: only files in repdiff.data.real.CHECKSUMS are fetched")
    expected = CHECKSUMS[dest.name]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        urllib.request.urlretrieve(url, tmp)  # noqa: S310 - fixed https URLs of the public data sets
        got = md5sum(tmp)
        if got != expected:
            raise ChecksumMismatch(f"{dest.name} downloaded from {url} has MD5 {got}, expected {expected} "
                                   f"(pinned in repdiff.data.real.CHECKSUMS): the file was not kept")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_mnist(root: str | Path | None = None) -> Path:
    """Download the MNIST image files (train and test, about 11 MB) into ``root``; return ``root``. Needs network."""
    root = Path(root) if root is not None else default_root("mnist")
    for fname in MNIST_FILES.values():
        if (root / fname).is_file():
            continue
        errors, mismatched = [], False
        for mirror in MNIST_MIRRORS:
            try:
                _fetch(mirror + fname, root / fname)
                break
            except ChecksumMismatch as err:
                errors.append(str(err))
                mismatched = True
            except OSError as err:
                errors.append(f"{mirror}: {err}")
        else:
            if mismatched:
                raise ChecksumMismatch(f"no mirror served {fname} with its pinned checksum: " + "; ".join(errors))
            raise RuntimeError(f"could not download {fname} (needs network, e.g. Colab): " + "; ".join(errors))
    return root


def download_cifar10(root: str | Path | None = None) -> Path:
    """Download CIFAR-10's binary release (162 MB), verify it, unpack its batches into ``root``; return ``root``.

    Only the regular files ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` are written (as bytes read
    from the verified archive; no other member and no path from the archive is used). Needs network.
    """
    root = Path(root) if root is not None else default_root("cifar10")
    folder = root / CIFAR10_DIR
    if (folder / CIFAR10_FILES["train"][0]).is_file():
        return root
    archive = _fetch(CIFAR10_URL, root / "cifar-10-binary.tar.gz")
    written = 0
    with tarfile.open(archive, "r:gz") as tar:
        for name in CIFAR10_FILES["train"] + CIFAR10_FILES["test"]:
            try:
                member = tar.getmember(f"{CIFAR10_DIR}/{name}")
            except KeyError:
                continue
            if not member.isfile():
                raise ValueError(f"{archive}: {member.name} is not a regular file")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(tar.extractfile(member).read())
            written += 1
    archive.unlink()
    if not written:
        raise ValueError(f"{archive} holds none of {CIFAR10_DIR}/*.bin: not CIFAR-10's binary release")
    return root


def _how_to_get(name: str, where: Path | str) -> str:
    how = {
        "mnist": "repdiff.data.real.download_mnist(root) (needs network, e.g. Colab), or set \"download\": true",
        "cifar10": "repdiff.data.real.download_cifar10(root) (needs network, e.g. Colab), or set \"download\": true",
        "celeba": "repdiff.data.images.celeba_from_hub(n, cache=path) (needs network and `pip install "
        "datasets`, e.g. Colab), or set \"download\": true",
    }[name]
    return (
        f"the data set {name!r} is not available offline here (looked in {where}). Get it with {how}, "
        f"or train on the offline default {{\"name\": \"procedural\", \"n\": ...}}."
    )


# ------------------------------------------------------------------------------------------------- loading
def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] % size == 0 and x.shape[-2] % size == 0:
        return torch.nn.functional.adaptive_avg_pool2d(x, size)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _take(arr: Any, n: int | None, offset: int, name: str) -> Any:
    total = len(arr)
    n = total - offset if n is None else n
    if offset < 0 or n < 1 or offset + n > total:
        raise ValueError(f"{name}: asked for images {offset}…{offset + n - 1} but the set has {total}")
    return arr[offset : offset + n]


def _u8_to_tensor(u8: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, H, W)`` or ``(n, H, W, C)`` → float32 ``(n, C, H, W)`` in [−1, 1]."""
    x = torch.from_numpy(np.array(u8, copy=True)).float() / 127.5 - 1.0
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


_KEYS = {
    "procedural": {"n", "size", "seed", "offset", "dup_count", "dup_copies"},
    "digits": {"n", "size", "offset", "shuffle_seed"},
    "mnist": {"n", "size", "offset", "split", "root", "download"},
    "cifar10": {"n", "size", "offset", "split", "root", "download", "grey"},
    "celeba": {"n", "size", "offset", "path", "download"},
}


def load_dataset(spec: dict[str, Any] | str | Path) -> torch.Tensor:
    """The training tensor a recipe's ``data`` entry describes: float32 ``(N, C, H, W)`` in [−1, 1].

    Args:
        spec: a dict such as ``{"name": "procedural", "n": 64, "size": 16, "seed": 0, "offset": 0}`` (see the
            module docstring for every name and key), a whole recipe (its ``data`` entry is used), or the
            path of a recipe JSON file.

    Raises:
        ValueError: unknown name or key, or a size/range that does not fit the data set.
        DatasetNotAvailable: the data set is not on disk (the message says how to get it).
    """
    if isinstance(spec, (str, Path)):
        spec = json.loads(Path(spec).read_text())
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict, a recipe or a recipe path, got {type(spec).__name__}")
    if "data" in spec and isinstance(spec["data"], dict):
        spec = spec["data"]
    name = spec.get("name")
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    unknown = set(spec) - _KEYS[name] - {"name"}
    if unknown:
        raise ValueError(f"unknown keys for {name!r}: {sorted(unknown)} (allowed: {sorted(_KEYS[name])})")
    n = spec.get("n")
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    offset = int(spec.get("offset", 0))

    if name == "procedural":
        if n is None:
            raise ValueError("the procedural stream is unbounded: give n")
        x = torch.from_numpy(
            procedural_images(int(n), size=int(spec.get("size", 16)), seed=int(spec.get("seed", 0)), offset=offset)
        )
        k, copies = int(spec.get("dup_count", 0)), int(spec.get("dup_copies", 1))
        if not 0 <= k <= len(x) or copies < 1:
            raise ValueError(f"need 0 <= dup_count <= n and dup_copies >= 1, got {k} and {copies}")
        if k and copies > 1:
            x = torch.cat([x, x[:k].repeat(copies - 1, 1, 1, 1)])
        return x

    if name == "digits":
        seed = spec.get("shuffle_seed")
        X = load_digits(seed=int(seed or 0), shuffle=seed is not None)  # (1797, 64), 0…16 ↦ −1…1
        X = X.astype(np.float32).reshape(-1, 8, 8)
        x = torch.from_numpy(np.ascontiguousarray(_take(X, n, offset, "digits"))).unsqueeze(1)
        size = int(spec.get("size", 8))
        return x if size == 8 else torch.nn.functional.interpolate(x, size=(size, size), mode="nearest")

    split = spec.get("split", "train")
    if name in ("mnist", "cifar10") and split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    if name == "mnist":
        root = Path(spec.get("root") or default_root("mnist"))
        path = root / MNIST_FILES[split]
        if not path.is_file() and spec.get("download", False):
            download_mnist(root)
        if not path.is_file():
            raise DatasetNotAvailable(_how_to_get("mnist", path))
        x = _u8_to_tensor(_take(read_idx_images(path), n, offset, "mnist"))
        return _resize(x, int(spec.get("size", 28))).clamp(-1, 1)

    if name == "cifar10":
        root = Path(spec.get("root") or default_root("cifar10"))
        folder = root / CIFAR10_DIR
        if not folder.is_dir() and spec.get("download", False):
            download_cifar10(root)
        if not folder.is_dir():
            raise DatasetNotAvailable(_how_to_get("cifar10", folder))
        x = _u8_to_tensor(_take(read_cifar10_batches(folder, split), n, offset, "cifar10"))
        if spec.get("grey", False):
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        return _resize(x, int(spec.get("size", 32))).clamp(-1, 1)

    # celeba: reuse the grey 32×32 CelebA reader of Chapter 6
    size = int(spec.get("size", 32))
    path = Path(spec.get("path") or default_root("celeba") / f"celeba_grey{size}.npz")
    if not path.is_file() and spec.get("download", False):
        image_datasets.celeba_from_hub(offset + (n or 10_000), size=size, cache=path)
    if not path.is_file():
        raise DatasetNotAvailable(_how_to_get("celeba", path))
    X, shape = image_datasets.load_image_file(path, size=size)
    X = _take(X, n, offset, "celeba")
    x = torch.from_numpy(X.astype(np.float32)).reshape(len(X), 1, *shape)
    return _resize(x, size).clamp(-1, 1)
