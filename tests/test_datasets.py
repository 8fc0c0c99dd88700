"""load_dataset and the offline/online loaders of Part III, tested offline on tiny files in the real formats."""

import gzip
import io
import tarfile

import numpy as np
import pytest
import torch

from repdiff.data import real as datasets
from repdiff.data.procedural import procedural_images
from repdiff.data.real import DatasetNotAvailable, load_dataset
from repdiff.data.synthetic import load_digits


def test_procedural_is_deterministic_and_offsets_are_disjoint():
    a = procedural_images(6, seed=3)
    b = procedural_images(6, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 1, 16, 16) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1
    # image i depends only on (seed, i): a slice of a longer stream is the same images
    np.testing.assert_array_equal(procedural_images(3, seed=3, offset=3), a[3:])
    later = procedural_images(6, seed=3, offset=6).reshape(6, -1)
    dist = np.linalg.norm(a.reshape(6, 1, -1) - later.reshape(1, 6, -1), axis=-1)
    assert dist.min() > 0.5  # disjoint sets share no image
    assert len(np.unique(a.reshape(6, -1), axis=0)) == 6


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 2, "size": 4}, {"n": 2, "offset": -1}, {"n": 1.5}])
def test_procedural_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        procedural_images(**bad)


def test_load_dataset_procedural_with_planted_duplicates():
    spec = {"name": "procedural", "n": 10, "size": 16, "dup_count": 2, "dup_copies": 4}
    x = load_dataset(spec)
    assert x.shape == (10 + 2 * 3, 1, 16, 16) and x.dtype == torch.float32
    assert len(torch.unique(x.reshape(len(x), -1), dim=0)) == 10
    np.testing.assert_array_equal(x[:10].numpy(), procedural_images(10))
    # a whole recipe works too: its data entry is used
    torch.testing.assert_close(load_dataset({"data": spec, "name": "run"}), x)


def test_load_dataset_digits_range_and_shape():
    x = load_dataset({"name": "digits", "n": 5, "offset": 2})
    assert x.shape == (5, 1, 8, 8)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert load_dataset({"name": "digits", "n": 3, "size": 16}).shape == (3, 1, 16, 16)


def test_load_dataset_digits_is_load_digits_as_images():
    """The digits spec reads the one digits loader (repdiff.data.synthetic.load_digits), shuffle included."""
    X = load_digits(seed=5, shuffle=True).reshape(-1, 8, 8)
    x = load_dataset({"name": "digits", "n": 4, "offset": 7, "shuffle_seed": 5})
    assert x.dtype == torch.float32
    np.testing.assert_array_equal(x[:, 0].numpy(), X[7:11].astype(np.float32))


def test_mnist_reader_on_a_tiny_local_file(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    datasets.write_idx_images(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    np.testing.assert_array_equal(datasets.read_idx_images(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    x = load_dataset({"name": "mnist", "root": str(tmp_path), "n": 4, "offset": 1})
    assert x.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(x.numpy()[:, 0], imgs[1:5] / 127.5 - 1, atol=1e-6)
    small = load_dataset({"name": "mnist", "root": str(tmp_path), "n": 4, "size": 14})
    np.testing.assert_allclose(small[0, 0, 0, 0].item(), (imgs[0, :2, :2].mean()) / 127.5 - 1, atol=1e-5)


def test_cifar10_reader_on_a_tiny_local_batch(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    datasets.write_cifar10_batch(tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin", imgs)
    x = load_dataset({"name": "cifar10", "root": str(tmp_path), "n": 5})
    assert x.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), imgs / 127.5 - 1, atol=1e-6)
    grey = load_dataset({"name": "cifar10", "root": str(tmp_path), "n": 2, "grey": True, "size": 16})
    assert grey.shape == (2, 1, 16, 16)


def test_celeba_reader_on_a_local_npz(tmp_path):
    from repdiff.data.images import save_image_file

    imgs = np.linspace(-1, 1, 3 * 32 * 32).reshape(3, 32 * 32)
    path = save_image_file(tmp_path / "celeba.npz", imgs, (32, 32))
    x = load_dataset({"name": "celeba", "path": str(path), "n": 2})
    assert x.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(x.reshape(2, -1).numpy(), imgs[:2], atol=1 / 127.5)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "celeba"])
def test_missing_dataset_says_how_to_get_it(tmp_path, name):
    key = "path" if name == "celeba" else "root"
    with pytest.raises(DatasetNotAvailable) as err:
        load_dataset({"name": name, key: str(tmp_path / "nothing"), "n": 4})
    msg = str(err.value)
    assert "not available offline" in msg and ("download" in msg or "celeba_from_hub" in msg)


def test_unknown_names_and_keys_raise():
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset({"name": "imagenet", "n": 3})
    with pytest.raises(ValueError, match="unknown keys"):
        load_dataset({"name": "procedural", "n": 3, "colour": True})
    with pytest.raises(ValueError, match="give n"):
        load_dataset({"name": "procedural"})
    with pytest.raises(ValueError):
        load_dataset({"name": "digits", "n": 1797, "offset": 1})


# ------------------------------------------------------------------ downloads: pinned checksums, no unpickling
def _serve(tmp_path, name, data):
    """A local "mirror" holding one file; returns its file:// base URL (urllib fetches it like https)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / name).write_bytes(data)
    return mirror.as_uri() + "/"


def _idx_gz(imgs):
    n, h, w = imgs.shape
    return gzip.compress(np.array([0x803, n, h, w], dtype=">u4").tobytes() + imgs.tobytes(), mtime=0)


def _cifar_tar_gz(batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _md5(data):
    import hashlib

    return hashlib.md5(data).hexdigest()


def test_checksum_table_pins_the_published_md5s():
    assert datasets.CHECKSUMS["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert datasets.CHECKSUMS["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert datasets.CHECKSUMS["cifar-10-binary.tar.gz"] == "c32a1d4ab5d03f1284b67883e8d87530"
    assert datasets.CIFAR10_URL.endswith("/cifar-10-binary.tar.gz")
    assert all(len(v) == 32 for v in datasets.CHECKSUMS.values())


def test_mnist_download_is_verified_then_loads(tmp_path, monkeypatch):
    imgs = np.random.default_rng(2).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    files = {"train-images-idx3-ubyte.gz": _idx_gz(imgs), "t10k-images-idx3-ubyte.gz": _idx_gz(imgs[:3])}
    for name, data in files.items():
        url = _serve(tmp_path, name, data)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("file:///nonexistent-mirror/", url))
    monkeypatch.setitem(datasets.CHECKSUMS, "train-images-idx3-ubyte.gz", _md5(files["train-images-idx3-ubyte.gz"]))
    monkeypatch.setitem(datasets.CHECKSUMS, "t10k-images-idx3-ubyte.gz", _md5(files["t10k-images-idx3-ubyte.gz"]))
    root = tmp_path / "data"
    x = load_dataset({"name": "mnist", "root": str(root), "n": 6, "download": True})
    np.testing.assert_allclose(x.numpy()[:, 0], imgs / 127.5 - 1, atol=1e-6)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)  # no .part file left


def test_mnist_tampered_download_raises_and_keeps_nothing(tmp_path, monkeypatch):
    imgs = np.zeros((2, 28, 28), dtype=np.uint8)
    good = _idx_gz(imgs)
    imgs[0, 0, 0] = 1  # one changed pixel
    url = _serve(tmp_path, "train-images-idx3-ubyte.gz", _idx_gz(imgs))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (url,))
    monkeypatch.setitem(datasets.CHECKSUMS, "train-images-idx3-ubyte.gz", _md5(good))
    root = tmp_path / "data"
    with pytest.raises(datasets.ChecksumMismatch, match=f"train-images-idx3-ubyte.gz.*expected {_md5(good)}"):
        load_dataset({"name": "mnist", "root": str(root), "n": 2, "download": True})
    assert not any(root.iterdir())  # neither the file nor its .part was kept
    with pytest.raises(DatasetNotAvailable):  # and the loader does not find one afterwards
        load_dataset({"name": "mnist", "root": str(root), "n": 2})


def test_the_real_checksum_table_rejects_a_file_that_is_not_the_published_one(tmp_path, monkeypatch):
    url = _serve(tmp_path, "train-images-idx3-ubyte.gz", _idx_gz(np.zeros((1, 28, 28), dtype=np.uint8)))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (url,))
    with pytest.raises(datasets.ChecksumMismatch, match="expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        datasets.download_mnist(tmp_path / "data")


def test_fetch_refuses_a_file_with_no_pinned_checksum(tmp_path):
    url = _serve(tmp_path, "other.bin", b"x")
    with pytest.raises(ValueError, match="no pinned checksum"):
        datasets._fetch(url + "other.bin", tmp_path / "other.bin")


def test_cifar10_binary_release_is_verified_unpacked_and_read(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    train, test = (rng.integers(0, 256, size=(k, 32, 32, 3), dtype=np.uint8) for k in (4, 2))
    labels = np.array([0, 9, 3, 1])
    batches = {}
    for name, imgs, lab in (("data_batch_1.bin", train, labels), ("test_batch.bin", test, None)):
        batches[name] = datasets.write_cifar10_batch(tmp_path / "src" / name, imgs, lab).read_bytes()
    rec = np.frombuffer(batches["data_batch_1.bin"], dtype=np.uint8).reshape(4, 3073)
    np.testing.assert_array_equal(rec[:, 0], labels)  # the format: label byte, then R, G, B planes
    np.testing.assert_array_equal(rec[1, 1:1025].reshape(32, 32), train[1, :, :, 0])
    archive = _cifar_tar_gz(batches)
    monkeypatch.setattr(datasets, "CIFAR10_URL", _serve(tmp_path, "c.tar.gz", archive) + "c.tar.gz")
    monkeypatch.setitem(datasets.CHECKSUMS, "cifar-10-binary.tar.gz", _md5(archive))
    root = tmp_path / "data"
    x = load_dataset({"name": "cifar10", "root": str(root), "n": 4, "download": True})
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), train / 127.5 - 1, atol=1e-6)
    x = load_dataset({"name": "cifar10", "root": str(root), "split": "test"})
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), test / 127.5 - 1, atol=1e-6)
    assert sorted(p.name for p in (root / "cifar-10-batches-bin").iterdir()) == sorted(batches)
    assert not (root / "cifar-10-binary.tar.gz").exists()


def test_cifar10_tampered_archive_raises_and_keeps_nothing(tmp_path, monkeypatch):
    imgs = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    good = _cifar_tar_gz({"data_batch_1.bin": datasets.write_cifar10_batch(tmp_path / "a.bin", imgs).read_bytes()})
    imgs[0, 0, 0, 0] = 7
    bad = _cifar_tar_gz({"data_batch_1.bin": datasets.write_cifar10_batch(tmp_path / "b.bin", imgs).read_bytes()})
    monkeypatch.setattr(datasets, "CIFAR10_URL", _serve(tmp_path, "c.tar.gz", bad) + "c.tar.gz")
    monkeypatch.setitem(datasets.CHECKSUMS, "cifar-10-binary.tar.gz", _md5(good))
    root = tmp_path / "data"
    msg = f"cifar-10-binary.tar.gz.*MD5 {_md5(bad)}, expected {_md5(good)}"
    with pytest.raises(datasets.ChecksumMismatch, match=msg):
        datasets.download_cifar10(root)
    assert not any(root.iterdir())


def test_cifar10_reader_rejects_files_that_are_not_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(b"\x80\x04" + bytes(3000))  # e.g. a pickle: not whole records
    with pytest.raises(ValueError, match="not whole CIFAR-10 records"):
        datasets.read_cifar10_batches(folder)
    (folder / "data_batch_1.bin").write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match="label byte 10"):
        datasets.read_cifar10_batches(folder)


def test_no_unpickling_in_the_loaders():
    import inspect

    src = inspect.getsource(datasets)
    assert "pickle" not in src.replace("unpickled", "").replace("unpickling", "")
