"""Permuted sequential MNIST, with the convention of the LMU papers (the NRU code's data).
(Over 400 lines as one idea: one data set, its files, its permutation and its augmentation.)

rng = RandomState(50); the 60,000 training images are shuffled by rng.permutation(60000), then every image's 784
pixels are reordered by rng.permutation(784) (same generator); pixels / 255. Train = the first 50,000 shuffled
images, validation = the last 10,000, test = the MNIST test set (same pixel order).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor
from torch.nn import functional as F

from plmu.data.folders import data_folder, nearest_existing, offline
from plmu.data.splits import DataSplits, TensorSplit, check_int, is_int
from plmu.errors import ConfigError, DataError, DataNotFoundError, one_line

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
GZIP_MAGIC = b"\x1f\x8b"


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


def raw_file(raw: Path, name: str) -> Path | None:
    """Where the IDX file ``name`` is in ``raw``: uncompressed, else as published (``name.gz``); None if neither."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.exists():
            return path
    return None


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(2) == GZIP_MAGIC


def _read_bytes(path: Path, count: int | None, fetch: bool) -> bytes:
    """The first ``count`` bytes of ``path`` (all if None), decompressed if it is gzip (by its magic, whatever its
    name: a ``.gz`` saved under the plain name reads too); a damaged gzip stream is a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{path} is not a file: delete or rename it, then re-run")
    if not _is_gzip(path):
        with path.open("rb") as file:
            return file.read() if count is None else file.read(count)
    try:
        with gzip.open(path, "rb") as file:
            return file.read() if count is None else file.read(count)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; a cut stream an EOFError
        raise DataError(f"{path} is corrupt or truncated (not a whole gzip file: {error}): {_fix(fetch)}") from None


def _parse_idx_header(path: Path, head: bytes, magic: int, fetch: bool) -> tuple[int, ...]:
    """The dimensions in an IDX header: (n, rows, cols) for images, (n,) for labels; checked against ``magic``.

    torchvision parses IDX files with bare asserts (a 0-byte file even fails with "invalid literal for int()"), and
    reads a truncated one into a reshape error it reports as "not found"; so plmu reads them itself, and any mismatch
    names the file.
    """
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(head) < header:
        raise _corrupt(path, f"{len(head)} bytes, shorter than the {header}-byte IDX header", fetch)
    found, *dims = struct.unpack(f">{1 + ndim}I", head[:header])
    if found != magic:
        raise _corrupt(path, f"magic number {found}, expected {magic}", fetch)
    if dims[0] == 0:
        raise _corrupt(path, "it holds 0 examples", fetch)
    if ndim == 3 and tuple(dims[1:]) != (SIDE, SIDE):
        raise DataError(
            f"{path} holds {dims[1]} x {dims[2]} images, psMNIST needs {SIDE} x {SIDE}: replace it with the MNIST "
            f"(or Fashion-MNIST) file"
        )
    return tuple(dims)


def _corrupt(path: Path, detail: str, fetch: bool) -> DataError:
    return DataError(f"{path} is corrupt or truncated ({detail}): {_fix(fetch)}")


def _expected_size(magic: int, dims: tuple[int, ...]) -> int:
    return 4 * (1 + (magic & 0xFF)) + int(np.prod(dims, dtype=np.int64))


def _read_idx_header(path: Path, magic: int, fetch: bool) -> tuple[int, ...]:
    """The dimensions in the header of the IDX file ``path`` (plain or gzip). A plain file's length is checked
    against them too (a gzip file's once it is read whole, in :func:`read_idx`)."""
    dims = _parse_idx_header(path, _read_bytes(path, 4 * (1 + (magic & 0xFF)), fetch), magic, fetch)
    if not _is_gzip(path) and (size := path.stat().st_size) != (expected := _expected_size(magic, dims)):
        raise _corrupt(path, f"{size} bytes, but its header ({' x '.join(map(str, dims))}) needs {expected}", fetch)
    return dims


def read_idx(path: Path, magic: int, fetch: bool = False) -> torch.Tensor:
    """The uint8 array of the IDX file ``path``, plain or gzip-compressed as published: (n, 28, 28) images or (n,)
    labels, every byte checked against the header."""
    data = _read_bytes(path, None, fetch)
    dims = _parse_idx_header(path, data, magic, fetch)
    if len(data) != (expected := _expected_size(magic, dims)):
        size = f"{len(data)} bytes" + (" uncompressed" if _is_gzip(path) else "")
        raise _corrupt(path, f"{size}, but its header ({' x '.join(map(str, dims))}) needs {expected}", fetch)
    header = 4 * (1 + len(dims))
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(*dims)


def _validate_raw(raw: Path, files: dict[str, Path], fetch: bool) -> int:
    """Check the headers of the four IDX files before they are read; returns the number of training images."""
    counts = {name: _read_idx_header(files[name], magic, fetch)[0] for name, magic in RAW_FILES.items()}
    for prefix in ("train", "t10k"):
        images, labels = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        if counts[images] != counts[labels]:
            raise DataError(
                f"{files[images]} holds {counts[images]} images but {files[labels]} holds {counts[labels]} labels: "
                f"they are not a pair; replace both with matching files, or delete both and re-run to download them"
            )
    return counts["train-images-idx3-ubyte"]


def _read_raw(files: dict[str, Path], fetch: bool) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels) from the four IDX files (plain or .gz); nothing is
    written, so a read-only data folder works."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    read = [read_idx(files[name], RAW_FILES[name], fetch) for name in names]
    return read[0], read[1].long(), read[2], read[3].long()


def _check_val_size(val_size: int | None, n_images: int, source: Path) -> None:
    if val_size is not None and not val_size < n_images:
        raise ConfigError(
            f"task.data.val_size must be between 1 and {n_images - 1} (fewer than the {n_images} training images in "
            f"{source}), got {val_size}: lower task.data.val_size"
        )


def _check_loaded(images: torch.Tensor, labels: torch.Tensor, source: Path) -> None:
    """What psmnist needs of the tensors read (also from legacy .pt files, which skip the IDX checks):
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


def _read(cls: type, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    train, test = cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)
    return train.data, train.targets, test.data, test.targets


def load_images(
    root: str | Path, dataset: str = "mnist", download: bool = True, *, val_size: int | None = None
) -> tuple[torch.Tensor, ...]:
    """(train images uint8 (N, 28, 28), train labels (N,), test images (M, 28, 28), test labels (M,)).

    The four IDX files in ``<root>/<MNIST|FashionMNIST>/raw``, each uncompressed or as published (``.gz``), are read
    here, their headers checked first; torchvision downloads them when they are missing (and reads an old
    torchvision's ``processed/*.pt``). ``val_size``, if given, must be below N: checked from the headers before the
    images are read."""
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
    fetch = download and not offline("ossci-datasets.s3.amazonaws.com")  # torchvision: its first mirror
    legacy = all((processed / name).is_file() for name in LEGACY_FILES)  # torchvision reads these, not raw/
    files = {name: raw_file(raw, name) for name in RAW_FILES}
    missing = [name for name, path in files.items() if path is None]
    source = processed if legacy else raw
    if legacy:
        try:  # nothing to download, so nothing is written: a read-only root works
            data = _read(cls, root, download=False)
        except Exception as error:  # an old torchvision's .pt files, not checked before
            raise DataError(f"could not read {dataset} from {source} ({one_line(error)}): {_fix(fetch)}") from None
    elif not missing:  # plain or .gz, as published: read here, nothing written, so a read-only root works
        found = {name: path for name, path in files.items() if path is not None}
        _check_val_size(val_size, _validate_raw(raw, found, fetch), found["train-images-idx3-ubyte"])
        data = _read_raw(found, fetch)
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
        f"t10k-labels-idx1-ubyte, each plain or .gz) in {raw}{partial}, or set task.data.root to a folder that has them"
    )

    def not_found(reason: str) -> DataNotFoundError:
        return DataNotFoundError(f"{dataset} not found in {raw} and {reason}: {how}")

    def not_writable(folder: object) -> DataNotFoundError:
        return DataNotFoundError(
            f"{dataset} not found in {raw} and {folder} is not writable, so it cannot be downloaded there: set "
            f"data_dir (or task.data.root) to a writable folder, or put the four IDX files (plain or .gz) in {raw}"
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
        _read(cls, root, download=True)  # downloads, extracts and reads; plmu then reads what it wrote, checked
    except PermissionError as error:
        raise not_writable(error.filename or existing) from None
    except (RuntimeError, OSError) as error:  # torchvision: "Error downloading ..."
        raise not_found(f"the download failed ({one_line(error)})") from None
    files = {name: raw_file(raw, name) for name in RAW_FILES}
    if any(path is None for path in files.values()):
        raise not_found("the download left some of them missing")
    return _read_raw(files, fetch)


AUGMENT_KEYS = {"rotate": (180, "degrees"), "scale": (1, "a fraction of the size"), "translate": (SIDE, "pixels")}


def check_augment(augment: object) -> dict[str, float] | None:
    """``task.data.augment``: null, or a mapping of ``rotate`` (degrees), ``scale`` (a fraction) and ``translate``
    (pixels), each a number ≥ 0 below its bound (180, 1, 28; missing keys are 0); a ConfigError otherwise."""
    if augment is None:
        return None
    example = "task.data.augment={rotate:10,scale:0.1,translate:2}, or null"
    if not isinstance(augment, Mapping) or not augment:
        raise ConfigError(f"task.data.augment must be null or a mapping of {', '.join(AUGMENT_KEYS)}, got {augment!r} "
                          f"(e.g. {example})")  # fmt: skip
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ConfigError(
            f"task.data.augment has unknown keys {unknown}: it takes {', '.join(AUGMENT_KEYS)} ({example})"
        )
    checked = {}
    for key, (bound, unit) in AUGMENT_KEYS.items():
        value = augment.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < bound:
            raise ConfigError(
                f"task.data.augment.{key} must be a number from 0 to below {bound} ({unit}), got {value!r} ({example})"
            )
        checked[key] = float(value)
    return checked


def random_affine(
    images: Tensor,
    rotate: float,
    scale: float,
    translate: float,
    generator: torch.Generator,
    pixel_order: Tensor | None = None,
) -> Tensor:
    """images (N, 28, 28) float → each rotated by up to ±``rotate`` degrees, scaled by 1 ± up to ``scale`` and moved
    by up to ±``translate`` pixels per axis, every parameter uniform and drawn per image from ``generator``;
    bilinear, with 0 (MNIST's background) moved in from outside. All zero: the images unchanged.

    With ``pixel_order`` (784,) the result is (N, 784), the transformed images' pixels in that order: the sampling
    grid is built in that order, so the permutation costs no gather (the same values as permuting the images)."""
    n = len(images)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate)
    size = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * translate * 2 / SIDE  # pixels → [-1, 1] coordinates
    cos, sin = (torch.cos(angle) / size)[:, None], (torch.sin(angle) / size)[:, None]
    # Each output pixel samples the input where the inverse transform sends it (affine_grid's convention, written
    # out per point: a few element-wise products instead of affine_grid's batch of 3-column matmuls). The point is
    # built as a complex number x + iy, whose (N, P) array is the (N, P, 2) grid grid_sample reads, with no copy.
    rows, cols = pixel_centres(images.dtype, pixel_order)
    grid_x = cos * cols - sin * rows + shift[:, 0, None]
    grid_y = sin * cols + cos * rows + shift[:, 1, None]
    grid = torch.view_as_real(torch.complex(grid_x.float(), grid_y.float())).to(images.dtype)[:, None]  # (N, 1, P, 2)
    sampled = F.grid_sample(images[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0, 0]  # (N, P)
    return sampled if pixel_order is not None else sampled.view(n, SIDE, SIDE)


_CENTRES: dict[tuple[torch.dtype, bytes], tuple[Tensor, Tensor]] = {}


def pixel_centres(dtype: torch.dtype, pixel_order: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(y, x) of every pixel's centre in [−1, 1] (align_corners=False), in ``pixel_order`` or row by row: (P,) each;
    computed once per order (in float64, cast late)."""
    index = torch.arange(SIDE * SIDE) if pixel_order is None else pixel_order
    key = (dtype, index.numpy().tobytes())
    if key not in _CENTRES:
        centre = lambda i: ((2 * i.to(torch.float64) + 1) / SIDE - 1).to(dtype)  # noqa: E731
        _CENTRES[key] = centre(index // SIDE), centre(index % SIDE)
    return _CENTRES[key]


@dataclass
class AugmentedSplit(TensorSplit):
    """A training split of permuted images whose every batch is augmented: each image is transformed at random
    (:func:`random_affine`) *before* its pixels are permuted, so the model still sees a permuted sequence. The draws
    for batch b of an epoch depend only on the epoch's seed and b: a resumed epoch draws the same ones.

    x (N, 784, 1) holds the untransformed sequences (as :class:`TensorSplit`); ``pixel_order`` (784,) is the
    permutation; ``augment`` the ranges (see :func:`check_augment`; None: no augmentation).
    """

    pixel_order: Tensor = field(default_factory=lambda: torch.arange(SIDE * SIDE))
    augment: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.image_order = torch.argsort(self.pixel_order)  # x[:, image_order] is the image, row by row

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        start_batch: int = 0,
    ) -> Iterator[dict[str, Tensor]]:
        """:meth:`TensorSplit.batches`, each batch's images transformed (``augment`` None: unchanged)."""
        batches = super().batches(batch_size, shuffle, seed, limit, start_batch)
        for number, batch in enumerate(batches, start=start_batch):
            if self.augment:
                generator = torch.Generator().manual_seed((seed * 1_000_003 + number) % 2**63)
                images = batch["inputs"][..., 0].index_select(1, self.image_order).view(-1, SIDE, SIDE)
                moved = random_affine(images, generator=generator, pixel_order=self.pixel_order, **self.augment)
                batch = {**batch, "inputs": moved[..., None]}
            yield batch


def psmnist(
    root: str | Path,
    dataset: str = "mnist",
    download: bool = True,
    val_size: int = 10_000,
    max_train: int | None = None,
    permutation_seed: int = PERMUTATION_SEED,
    augment: Mapping[str, float] | None = None,
) -> DataSplits:
    """Splits of x (N, 784, 1) float32 in [0, 1] → y (N,) labels in 0..9; ``max_train`` caps the training examples.

    Train and validation are disjoint: the first n - val_size shuffled training images (at most ``max_train``
    of them) and the last ``val_size``. ``augment`` ({rotate, scale, translate}) transforms each training image at
    random, anew in every batch, before the permutation (:class:`AugmentedSplit`); validation and test are never
    augmented. Every argument is checked before any file is read.
    """
    check_int("task.data.val_size", val_size, 1, "the training images held out for validation")
    if max_train is not None and not (is_int(max_train) and max_train > 0):
        # 0 would train on nothing, and a negative one slices from the end: into the validation images
        raise ConfigError(
            f"task.data.max_train must be null (all training images) or a positive integer (at most that many), "
            f"got {max_train!r}: fix task.data.max_train in the config or command line"
        )
    check_int("task.data.permutation_seed", permutation_seed, 0, "a numpy RandomState seed", below=2**32)
    augment = check_augment(augment)
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
        train=AugmentedSplit(x[:train_end], y[:train_end], pixel_order=pixels, augment=augment),
        val=TensorSplit(x[n_train:], y[n_train:]),
        test=TensorSplit(sequences(test_images), test_labels),
        info={
            "dataset": dataset,
            "path": str(_check_root(root).resolve()),  # the folder read (records write it relative to the run)
            "permutation_seed": permutation_seed,
            "augment": augment,
            "pixel_order": pixel_order.tolist(),
        },
    )
