"""Tests of repdiff.data.images: offline, on small files and fake hub rows the tests make themselves."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from repdiff.data import images as imd
from repdiff.data.synthetic import load_digits


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _colour_images(n: int, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_digits_with_labels_matches_load_digits():
    X, y = imd.digits_with_labels()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    np.testing.assert_array_equal(X, load_digits())
    assert X.min() == -1.0 and X.max() == 1.0
    assert set(y.tolist()) == set(range(10))


def test_load_digits_shuffles_images_and_labels_together():
    X, y = load_digits(return_labels=True)
    Xs, ys = load_digits(n=50, seed=3, shuffle=True, return_labels=True)
    perm = np.random.default_rng(3).permutation(len(X))[:50]
    np.testing.assert_array_equal(Xs, X[perm])
    np.testing.assert_array_equal(ys, y[perm])


def test_one_per_class():
    y = np.array([3, 1, 3, 0, 1, 0, 0])
    np.testing.assert_array_equal(imd.one_per_class(y), [3, 1, 0])
    np.testing.assert_array_equal(imd.one_per_class(y, per_class=2), [3, 5, 1, 4, 0, 2])
    with pytest.raises(ValueError, match="class 1 has only 2"):
        imd.one_per_class(y, per_class=3)
    with pytest.raises(ValueError, match="non-empty"):
        imd.one_per_class([])


def test_rows_to_images_decodes_hub_rows():
    imgs = _colour_images(3)
    expected = np.stack(
        [np.asarray(Image.fromarray(a).convert("L").resize((32, 32), Image.Resampling.BILINEAR)) for a in imgs]
    ).reshape(3, -1) / 127.5 - 1.0
    as_bytes = [{"image": {"bytes": _png_bytes(a), "path": None}} for a in imgs]
    as_pil = [{"image": Image.fromarray(a)} for a in imgs]
    for rows in (as_bytes, as_pil):
        X = imd.rows_to_images(rows, size=32)
        assert X.shape == (3, 1024)
        np.testing.assert_allclose(X, expected, atol=1e-12)
    # n stops early; an already grey image of the right size is only rescaled
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    X = imd.rows_to_images([grey, grey, grey], size=8, n=2)
    assert X.shape == (2, 64)
    np.testing.assert_allclose(X[0], grey.ravel() / 127.5 - 1.0)


def test_rows_to_images_errors():
    with pytest.raises(ValueError, match="no image rows"):
        imd.rows_to_images([])
    with pytest.raises(TypeError, match="cannot read an image"):
        imd.rows_to_images([{"image": 3.0}])
    with pytest.raises(ValueError, match="'bytes'"):
        imd.rows_to_images([{"image": {"bytes": None, "path": "x.png"}}])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (5, 36))
    path = imd.save_image_file(tmp_path / "imgs.npz", X, (6, 6), source="test")
    Y, shape = imd.load_image_file(path)
    assert shape == (6, 6) and Y.shape == (5, 36)
    np.testing.assert_allclose(Y, X, atol=0.5 / 127.5 + 1e-12)  # 8-bit rounding
    Y2, _ = imd.load_image_file(path, n=2)
    np.testing.assert_array_equal(Y2, Y[:2])
    # torch input works too
    imd.save_image_file(tmp_path / "t.npz", torch.as_tensor(X), (6, 6))


def test_image_file_errors(tmp_path):
    X = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"\.npz"):
        imd.save_image_file(tmp_path / "x.png", X, (2, 2))
    with pytest.raises(ValueError, match="must be"):
        imd.save_image_file(tmp_path / "x.npz", X, (3, 3))
    with pytest.raises(ValueError, match="NaN"):
        imd.save_image_file(tmp_path / "x.npz", np.full((2, 4), np.nan), (2, 2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imd.load_image_file(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown image file type"):
        imd.load_image_file(tmp_path / "x.txt")


def test_parquet_shard(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    imgs = _colour_images(4, size=20, seed=2)
    table = pa.table({"image": [{"bytes": _png_bytes(a), "path": f"{i}.png"} for i, a in enumerate(imgs)]})
    pq.write_table(table, tmp_path / "shard.parquet")
    X, shape = imd.load_image_file(tmp_path / "shard.parquet", size=16, n=3)
    assert shape == (16, 16) and X.shape == (3, 256)
    np.testing.assert_allclose(X, imd.rows_to_images([{"image": Image.fromarray(a)} for a in imgs[:3]], size=16))


def _fake_datasets(monkeypatch, load_dataset):
    mod = types.ModuleType("datasets")
    mod.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", mod)


def test_celeba_without_datasets_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match="pip install datasets"):
        imd.celeba_from_hub(5)


def test_celeba_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    _fake_datasets(monkeypatch, no_network)
    with pytest.raises(RuntimeError, match="network"):
        imd.celeba_from_hub(5)


def test_celeba_from_fake_hub_and_cache(monkeypatch, tmp_path):
    imgs = _colour_images(6, size=48, seed=3)
    calls = []

    def fake_load_dataset(repo_id, split, streaming):
        calls.append((repo_id, split, streaming))
        return iter([{"image": Image.fromarray(a), "label": 0} for a in imgs])

    _fake_datasets(monkeypatch, fake_load_dataset)
    cache = tmp_path / "celeba.npz"
    X = imd.celeba_from_hub(4, size=32, cache=cache)
    assert X.shape == (4, 1024) and calls == [(imd.CELEBA_REPO, "train", True)]
    assert X.min() >= -1 and X.max() <= 1
    X2 = imd.celeba_from_hub(4, size=32, cache=cache)  # read back from the cache, no hub call
    assert len(calls) == 1
    np.testing.assert_allclose(X2, X, atol=0.5 / 127.5 + 1e-12)
    X3, shape = imd.load_real_images("celeba", n=4, cache=cache)
    assert shape == (32, 32) and X3.shape == (4, 1024)
    with pytest.raises(ValueError, match="only 6 rows"):
        imd.celeba_from_hub(10, size=32)


def test_load_real_images_digits():
    X, shape = imd.load_real_images()
    assert shape == (8, 8) and X.shape == (1797, 64)
    X, _ = imd.load_real_images("digits", n=10)
    assert X.shape == (10, 64)
    with pytest.raises(ValueError, match="unknown data set"):
        imd.load_real_images("mnist")
    with pytest.raises(ValueError, match="between 1 and 1797"):
        imd.load_real_images("digits", n=0)


def test_nearest_by_cosine_brute_force():
    rng = np.random.default_rng(4)
    Q, X = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    best, idx = imd.nearest_by_cosine(Q, X)
    cos = np.array([[q @ x / np.linalg.norm(q) / np.linalg.norm(x) for x in X] for q in Q])
    np.testing.assert_allclose(best, cos.max(1), atol=1e-12)
    np.testing.assert_array_equal(idx, cos.argmax(1))
    best_t, idx_t = imd.nearest_by_cosine(torch.as_tensor(Q), torch.as_tensor(X))
    assert isinstance(best_t, torch.Tensor) and isinstance(idx_t, torch.Tensor)
    # a stored sample is found with cosine 1
    best, idx = imd.nearest_by_cosine(3.0 * X[[4]], X)
    assert idx[0] == 4 and abs(best[0] - 1) < 1e-12
    with pytest.raises(ValueError, match="share d"):
        imd.nearest_by_cosine(Q, X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        imd.nearest_by_cosine(np.full((1, 5), np.nan), X)
