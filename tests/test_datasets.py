"""load_dataset and the offline/online loaders of Part III, tested offline on tiny files in the real formats."""

import numpy as np
import pytest
import torch

from repdiff import datasets
from repdiff.datasets import DatasetNotAvailable, load_dataset
from repdiff.procedural import procedural_images


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
    datasets.write_cifar10_batch(tmp_path / "cifar-10-batches-py" / "data_batch_1", imgs)
    x = load_dataset({"name": "cifar10", "root": str(tmp_path), "n": 5})
    assert x.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), imgs / 127.5 - 1, atol=1e-6)
    grey = load_dataset({"name": "cifar10", "root": str(tmp_path), "n": 2, "grey": True, "size": 16})
    assert grey.shape == (2, 1, 16, 16)


def test_celeba_reader_on_a_local_npz(tmp_path):
    from repdiff.image_datasets import save_image_file

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
