import numpy as np
import pytest
import torch
from conftest import write_idx_mnist

from plmu.data.psmnist import load_images, permutations, psmnist
from plmu.errors import DataNotFoundError


def test_permutation_check_values_of_the_lmu_papers():
    rows, pixels = permutations(60_000)
    assert pixels[:12].tolist() == [46, 466, 537, 44, 515, 589, 362, 765, 270, 539, 264, 125]
    assert rows[:8].tolist() == [6820, 11854, 9635, 45077, 18764, 22779, 11348, 49404]


def test_splits_follow_the_convention(tmp_path):
    write_idx_mnist(tmp_path, n_train=120, n_test=40)
    images, labels, _, test_labels = load_images(tmp_path, download=False)
    data = psmnist(tmp_path, download=False, val_size=20)
    rows, pixels = permutations(120)
    assert data.train.x.shape == (100, 784, 1) and data.val.x.shape == (20, 784, 1)
    assert data.test.x.shape == (40, 784, 1)
    expected = images[torch.from_numpy(rows)].reshape(120, -1)[:, torch.from_numpy(pixels)].float() / 255
    torch.testing.assert_close(data.train.x[..., 0], expected[:100], rtol=0, atol=0)
    torch.testing.assert_close(data.val.x[..., 0], expected[100:], rtol=0, atol=0)
    assert data.train.y.tolist() == labels[torch.from_numpy(rows)][:100].tolist()
    assert data.test.y.tolist() == test_labels.tolist()
    assert data.info["pixel_order"] == pixels.tolist()
    assert data.train.x.min() >= 0 and data.train.x.max() == 1


def test_max_train_caps_training_only(tmp_path):
    write_idx_mnist(tmp_path)
    data = psmnist(tmp_path, download=False, val_size=20, max_train=30)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 20, 40)


def test_fashion_mnist_reads_the_same_format(tmp_path):
    write_idx_mnist(tmp_path, folder="FashionMNIST")
    assert len(psmnist(tmp_path, dataset="fashion_mnist", download=False, val_size=20).train) == 100


def test_missing_data_offline_names_the_folder_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match=rf"mnist not found in {tmp_path}/MNIST/raw and offline .*IDX files"):
        psmnist(tmp_path, download=True)


def test_bad_arguments(tmp_path):
    write_idx_mnist(tmp_path)
    with pytest.raises(ValueError, match="val_size must be between 1 and 119"):
        psmnist(tmp_path, download=False, val_size=120)
    with pytest.raises(ValueError, match=r"dataset must be one of \['fashion_mnist', 'mnist'\], got 'kmnist'"):
        psmnist(tmp_path, dataset="kmnist")


def test_pixel_order_is_a_permutation():
    _, pixels = permutations(10)
    assert sorted(pixels.tolist()) == list(range(784))
    assert not np.array_equal(pixels, np.arange(784))
