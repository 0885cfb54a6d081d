"""Permuted sequential MNIST, with the convention of the LMU papers (the NRU code's data).

rng = RandomState(50); the 60,000 training images are shuffled by rng.permutation(60000), then every image's 784
pixels are reordered by rng.permutation(784) (same generator); pixels / 255. Train = the first 50,000 shuffled
images, validation = the last 10,000, test = the MNIST test set (same pixel order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torchvision

from plmu.data.splits import DataSplits, TensorSplit
from plmu.errors import DataNotFoundError

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
PERMUTATION_SEED = 50


def permutations(n_images: int, seed: int = PERMUTATION_SEED, pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """(row order of the training images, pixel order), drawn in that order from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    return rng.permutation(n_images), rng.permutation(pixels)


def _offline() -> bool:
    names = ("HF_DATASETS_OFFLINE", "PLMU_OFFLINE")
    return any(os.environ.get(name, "0").lower() in ("1", "true", "yes") for name in names)


def load_images(root: str | Path, dataset: str = "mnist", download: bool = True) -> tuple[torch.Tensor, ...]:
    """(train images uint8 (N, 28, 28), train labels, test images, test labels) via torchvision."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    cls = DATASETS[dataset]
    root = Path(root).expanduser()
    raw = root / cls.__name__ / "raw"
    how = (
        f"put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte, gunzipped) in {raw}, or set task.data.root to a folder that has them"
    )
    fetch = download and not _offline()
    try:
        train = cls(str(root), train=True, download=fetch)
        test = cls(str(root), train=False, download=fetch)
    except (RuntimeError, OSError) as error:  # torchvision: "Dataset not found ..." or "Error downloading ..."
        if fetch:
            reason = f"the download failed ({error})"
        elif download:
            reason = "offline (HF_DATASETS_OFFLINE or PLMU_OFFLINE is set), so nothing was downloaded"
        else:
            reason = "task.data.download is false"
        raise DataNotFoundError(f"{dataset} not found in {raw} and {reason}: {how}") from None
    return train.data, train.targets, test.data, test.targets


def psmnist(
    root: str | Path,
    dataset: str = "mnist",
    download: bool = True,
    val_size: int = 10_000,
    max_train: int | None = None,
    permutation_seed: int = PERMUTATION_SEED,
) -> DataSplits:
    """Splits of x (N, 784, 1) float32 in [0, 1] → y (N,) labels; ``max_train`` caps the training examples."""
    train_images, train_labels, test_images, test_labels = load_images(root, dataset, download)
    n_images = len(train_images)
    if not 0 < val_size < n_images:
        raise ValueError(f"val_size must be between 1 and {n_images - 1} (the training images), got {val_size}")
    row_order, pixel_order = permutations(n_images, permutation_seed)
    pixels = torch.from_numpy(pixel_order)

    def sequences(images: torch.Tensor) -> torch.Tensor:
        return (images.reshape(len(images), -1)[:, pixels].float() / 255.0)[..., None]

    rows = torch.from_numpy(row_order)
    x, y = sequences(train_images[rows]), train_labels[rows]
    n_train = n_images - val_size
    train_end = n_train if max_train is None else min(n_train, max_train)
    return DataSplits(
        train=TensorSplit(x[:train_end], y[:train_end]),
        val=TensorSplit(x[n_train:], y[n_train:]),
        test=TensorSplit(sequences(test_images), test_labels),
        info={"dataset": dataset, "permutation_seed": permutation_seed, "pixel_order": pixel_order.tolist()},
    )
