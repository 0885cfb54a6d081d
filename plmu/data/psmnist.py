"""Permuted sequential MNIST, with the convention of the LMU papers (the NRU code's data).

rng = RandomState(50); the 60,000 training images are shuffled by rng.permutation(60000), then every image's 784
pixels are reordered by rng.permutation(784) (same generator); pixels / 255. Train = the first 50,000 shuffled
images, validation = the last 10,000, test = the MNIST test set (same pixel order).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
import torchvision

from plmu.data.folders import data_folder, nearest_existing, offline
from plmu.data.splits import DataSplits, TensorSplit, check_int, is_int
from plmu.errors import ConfigError, DataError, DataNotFoundError

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
PERMUTATION_SEED = 50
SIDE = 28  # psMNIST's 784 steps are 28 × 28 pixels: other image sizes would be silently cut by the permutation
NUM_CLASSES = 10
# The uncompressed IDX files torchvision's MNIST reads from <root>/<MNIST|FashionMNIST>/raw: name → magic number.
# The magic is 0x0000 08 0d: unsigned bytes (0x08) in d dimensions (3 for images, 1 for labels), big-endian.
RAW_FILES = {
    "train-images-idx3-ubyte": 2051,
    "train-labels-idx1-ubyte": 2049,
    "t10k-images-idx3-ubyte": 2051,
    "t10k-labels-idx1-ubyte": 2049,
}
# torchvision still loads these (and ignores raw/) when both exist: files an old torchvision wrote.
LEGACY_FILES = ("training.pt", "test.pt")


def permutations(n_images: int, seed: int = PERMUTATION_SEED, pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """(row order of the training images, pixel order), drawn in that order from RandomState(seed)."""
    rng = np.random.RandomState(seed)
    return rng.permutation(n_images), rng.permutation(pixels)


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder``; access() also says no on a read-only file system."""
    return os.access(folder, os.W_OK | os.X_OK)


def _check_root(root: object) -> Path:
    """``root`` as a Path, or a ConfigError naming task.data.root when it cannot be a data folder."""
    return data_folder(
        root,
        "task.data.root",
        "a folder",
        "set data_dir (or PLMU_DATA_DIR, or task.data.root) to a folder that holds (or will hold) the data; it is "
        "created if missing",
    )


def _fix(fetch: bool) -> str:
    fix = "delete it and re-run to download it again, or replace it"
    if fetch:
        return fix
    return f"{fix} (a download needs task.data.download=true, and neither HF_DATASETS_OFFLINE nor PLMU_OFFLINE set)"


def _read_idx_header(path: Path, magic: int, fetch: bool) -> tuple[int, ...]:
    """The dimensions in the header of the IDX file ``path``: (n, rows, cols) for images, (n,) for labels.

    torchvision parses IDX files with bare asserts (a 0-byte file even fails with "invalid literal for int()"), and
    reads a truncated one into a reshape error it reports as "not found"; so the header, and the file length it
    implies, are checked here first, and any mismatch names the file.
    """
    if not path.is_file():
        raise DataError(f"{path} is not a file: delete or rename it, then re-run")
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(header)

    def corrupt(detail: str) -> DataError:
        return DataError(f"{path} is corrupt or truncated ({detail}): {_fix(fetch)}")

    if len(head) < header:
        raise corrupt(f"{size} bytes, shorter than the {header}-byte IDX header")
    found, *dims = struct.unpack(f">{1 + ndim}I", head)
    if found != magic:
        if head[:2] == b"\x1f\x8b":  # the gzip magic: a .gz saved under the uncompressed name
            raise DataError(f"{path} is gzip-compressed: gunzip it (torchvision reads the uncompressed file)")
        raise corrupt(f"magic number {found}, expected {magic}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        raise corrupt(f"{size} bytes, but its header ({' x '.join(map(str, dims))}) needs {expected}")
    if dims[0] == 0:
        raise corrupt("it holds 0 examples")
    if ndim == 3 and tuple(dims[1:]) != (SIDE, SIDE):
        raise DataError(
            f"{path} holds {dims[1]} x {dims[2]} images, psMNIST needs {SIDE} x {SIDE}: replace it with the MNIST "
            f"(or Fashion-MNIST) file"
        )
    return tuple(dims)


def _validate_raw(raw: Path, fetch: bool) -> int:
    """Check the four IDX files in ``raw`` before torchvision reads them; returns the number of training images."""
    counts = {name: _read_idx_header(raw / name, magic, fetch)[0] for name, magic in RAW_FILES.items()}
    for prefix in ("train", "t10k"):
        images, labels = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        if counts[images] != counts[labels]:
            raise DataError(
                f"{raw / images} holds {counts[images]} images but {raw / labels} holds {counts[labels]} labels: "
                f"they are not a pair; replace both with matching files, or delete both and re-run to download them"
            )
    return counts["train-images-idx3-ubyte"]


def _check_val_size(val_size: int | None, n_images: int, source: Path) -> None:
    if val_size is not None and not val_size < n_images:
        raise ConfigError(
            f"task.data.val_size must be between 1 and {n_images - 1} (fewer than the {n_images} training images in "
            f"{source}), got {val_size}: lower task.data.val_size"
        )


def _check_loaded(images: torch.Tensor, labels: torch.Tensor, source: Path) -> None:
    """What psmnist needs of the tensors torchvision read (also from legacy .pt files, which skip the IDX checks):
    uint8 images (N, 28, 28), labels (N,) in 0..9; ``source`` names the file(s) in the message."""
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (SIDE, SIDE) or labels.shape != images.shape[:1]:
        raise DataError(
            f"{source} holds images {str(images.dtype).removeprefix('torch.')} {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)}, expected uint8 (N, {SIDE}, {SIDE}) and (N,): replace the files with MNIST's"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(
            f"{source} holds the label {bad}, but MNIST's classes are 0 to {NUM_CLASSES - 1}: the file is corrupt; "
            f"replace it with MNIST's"
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())  # torchvision's download errors span lines; plmu prints one


def _read(cls: type, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    train, test = cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    return train.data, train.targets, test.data, test.targets


def load_images(
    root: str | Path, dataset: str = "mnist", download: bool = True, *, val_size: int | None = None
) -> tuple[torch.Tensor, ...]:
    """(train images uint8 (N, 28, 28), train labels (N,), test images (M, 28, 28), test labels (M,)) via
    torchvision; the four raw IDX files are checked first. ``val_size``, if given, must be below N: checked from
    the file headers before the images are read."""
    root = _check_root(root)
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ConfigError(f"task.data.dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if not isinstance(download, bool):  # a str "false" would be true, and download
        raise ConfigError(f"task.data.download must be true or false, got {download!r}")
    cls = DATASETS[dataset]
    raw, processed = root / cls.__name__ / "raw", root / cls.__name__ / "processed"
    for folder in (raw.parent, raw):
        if folder.exists() and not folder.is_dir():
            raise DataError(
                f"{folder} is a file, not a folder: torchvision keeps the {dataset} files in {raw}; move it away, "
                f"or set data_dir (or task.data.root) to another folder"
            )
    fetch = download and not offline()
    legacy = all((processed / name).is_file() for name in LEGACY_FILES)  # torchvision reads these, not raw/
    missing = [name for name in RAW_FILES if not (raw / name).exists()]
    source = processed if legacy else raw
    if legacy or not missing:
        if not legacy:
            _check_val_size(val_size, _validate_raw(raw, fetch), raw / "train-images-idx3-ubyte")
        try:  # nothing to download, so nothing is written: a read-only root works
            data = _read(cls, root, download=False)
        except Exception as error:  # checked above, so only a file changed since (or a legacy .pt) gets here
            raise DataError(f"could not read {dataset} from {source} ({_one_line(error)}): {_fix(fetch)}") from None
    else:
        data = _download(cls, root, dataset, raw, download, fetch, missing)
    for images, labels, split in ((data[0], data[1], "train"), (data[2], data[3], "t10k")):
        _check_loaded(images, labels, processed if legacy else raw / f"{split}-labels-idx1-ubyte")
    _check_val_size(val_size, len(data[0]), source)
    return data


def _download(
    cls: type, root: Path, dataset: str, raw: Path, download: bool, fetch: bool, missing: list[str]
) -> tuple[torch.Tensor, ...]:
    """torchvision's download (all four files, also over any that are there) and read, with errors that say
    where the files go."""
    partial = f" ({', '.join(missing)} missing)" if len(missing) < len(RAW_FILES) else ""
    how = (
        f"put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte, gunzipped) in {raw}{partial}, or set task.data.root to a folder that has them"
    )

    def not_found(reason: str) -> DataNotFoundError:
        return DataNotFoundError(f"{dataset} not found in {raw} and {reason}: {how}")

    def not_writable(folder: object) -> DataNotFoundError:
        return DataNotFoundError(
            f"{dataset} not found in {raw} and {folder} is not writable, so it cannot be downloaded there: set "
            f"data_dir (or task.data.root) to a writable folder, or put the four IDX files (gunzipped) in {raw}"
        )

    if not fetch:
        raise not_found(
            "offline (HF_DATASETS_OFFLINE or PLMU_OFFLINE is set), so nothing was downloaded"
            if download
            else "task.data.download is false"
        )
    existing = nearest_existing(raw)
    if not _writable(existing):  # checked first: torchvision's PermissionError does not say which root
        raise not_writable(existing)
    try:
        return _read(cls, root, download=True)
    except PermissionError as error:
        raise not_writable(error.filename or existing) from None
    except (RuntimeError, OSError) as error:  # torchvision: "Error downloading ..."
        raise not_found(f"the download failed ({_one_line(error)})") from None


def psmnist(
    root: str | Path,
    dataset: str = "mnist",
    download: bool = True,
    val_size: int = 10_000,
    max_train: int | None = None,
    permutation_seed: int = PERMUTATION_SEED,
) -> DataSplits:
    """Splits of x (N, 784, 1) float32 in [0, 1] → y (N,) labels in 0..9; ``max_train`` caps the training examples.

    Train and validation are disjoint: the first n - val_size shuffled training images (at most ``max_train``
    of them) and the last ``val_size``. Every argument is checked before any file is read.
    """
    check_int("task.data.val_size", val_size, 1, "the training images held out for validation")
    if max_train is not None and not (is_int(max_train) and max_train > 0):
        # 0 would train on nothing, and a negative one slices from the end: into the validation images
        raise ConfigError(
            f"task.data.max_train must be null (all training images) or a positive integer (at most that many), "
            f"got {max_train!r}: fix task.data.max_train in the config or command line"
        )
    check_int("task.data.permutation_seed", permutation_seed, 0, "a numpy RandomState seed", below=2**32)
    train_images, train_labels, test_images, test_labels = load_images(root, dataset, download, val_size=val_size)
    n_images = len(train_images)
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
