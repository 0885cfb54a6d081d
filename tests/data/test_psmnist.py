import os
import struct

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_idx_mnist
from torch.nn import functional as F

import plmu.data.psmnist as psmnist_module
from plmu.data.psmnist import load_images, permutations, psmnist
from plmu.errors import ConfigError, DataError, DataNotFoundError


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
    with pytest.raises(ConfigError, match=r"task.data.val_size must be between 1 and 119"):
        psmnist(tmp_path, download=False, val_size=120)
    with pytest.raises(ConfigError, match=r"dataset must be one of \['fashion_mnist', 'mnist'\], got 'kmnist'"):
        psmnist(tmp_path, dataset="kmnist")


def test_pixel_order_is_a_permutation():
    _, pixels = permutations(10)
    assert sorted(pixels.tolist()) == list(range(784))
    assert not np.array_equal(pixels, np.arange(784))


@pytest.fixture
def no_torchvision_read(monkeypatch):
    """Fail the test if torchvision is asked to read or download anything."""
    monkeypatch.setattr(psmnist_module, "_read", lambda *args, **kwargs: pytest.fail("torchvision read the files"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_train", 0, r"task.data.max_train must be null \(all training images\) or a positive integer"),
        ("max_train", -5, r"task.data.max_train must be .*, got -5"),  # would slice into the validation images
        ("max_train", True, r"task.data.max_train must be .*, got True"),
        ("max_train", "30", r"task.data.max_train must be .*, got '30'"),
        ("val_size", 0, r"task.data.val_size must be a positive integer \(.*\), got 0"),
        ("val_size", -20, r"task.data.val_size must be a positive integer \(.*\), got -20"),
        ("val_size", "20", r"task.data.val_size must be a positive integer \(.*\), got '20'"),
        ("permutation_seed", -1, r"task.data.permutation_seed must be an integer from 0 to 4294967295"),
        ("dataset", 5, r"task.data.dataset must be one of \['fashion_mnist', 'mnist'\], got 5"),
        ("download", "false", r"task.data.download must be true or false, got 'false'"),
        ("root", "", r"task.data.root must be a folder, got '': set data_dir"),
        ("root", 5, r"task.data.root must be a folder, got 5"),
    ],
)
def test_bad_arguments_fail_before_any_file_is_read(key, value, message, tmp_path, no_torchvision_read):
    write_idx_mnist(tmp_path)
    kwargs = {"root": tmp_path, "download": False, "val_size": 20, key: value}
    with pytest.raises(ConfigError, match=message):
        psmnist(**kwargs)


def test_val_size_too_large_fails_from_the_headers_before_the_images_are_read(tmp_path, no_torchvision_read):
    write_idx_mnist(tmp_path, n_train=120)
    with pytest.raises(ConfigError, match=r"task.data.val_size must be between 1 and 119 .*train-images-idx3-ubyte"):
        psmnist(tmp_path, download=False, val_size=120)


def test_train_and_validation_are_disjoint_and_max_train_only_caps(tmp_path):
    write_idx_mnist(tmp_path)
    whole = psmnist(tmp_path, download=False, val_size=20)
    capped = psmnist(tmp_path, download=False, val_size=20, max_train=500)  # more than there are: all 100
    assert (len(capped.train), len(capped.val)) == (100, 20)
    train = {tuple(row.tolist()) for row in whole.train.x[..., 0]}
    assert not any(tuple(row.tolist()) in train for row in whole.val.x[..., 0])
    whole.check_labels(10)


def test_root_that_is_a_file_names_the_path_and_the_fix(tmp_path, no_torchvision_read):
    (tmp_path / "afile").write_text("")
    for root in (tmp_path / "afile", tmp_path / "afile" / "below"):
        message = rf"task.data.root='{root}': {tmp_path / 'afile'} is a file, not a folder"
        with pytest.raises(ConfigError, match=message):
            psmnist(root, download=True)


@pytest.mark.parametrize("inside", ["MNIST", "MNIST/raw"])
def test_a_file_where_the_data_folders_go_is_named(inside, tmp_path, no_torchvision_read):
    (tmp_path / inside).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / inside).write_text("")
    with pytest.raises(DataError, match=rf"{tmp_path / inside} is a file, not a folder"):
        psmnist(tmp_path, download=False)


def header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims)


HTML = struct.unpack(">I", b"<htm")[0]  # an error page saved under the file's name
CORRUPTIONS = {  # name: (file, how to change its bytes, what the message says)
    "truncated images": ("train-images-idx3-ubyte", lambda b: b[:-1], r"94095 bytes, but its header .* needs 94096"),
    "extra label bytes": ("t10k-labels-idx1-ubyte", lambda b: b + b"\0", r"49 bytes, but its header \(40\) needs 48"),
    "0-byte labels": ("train-labels-idx1-ubyte", lambda b: b"", r"0 bytes, shorter than the 8-byte IDX header"),
    "short header": ("t10k-images-idx3-ubyte", lambda b: b[:10], r"10 bytes, shorter than the 16-byte IDX header"),
    "garbage": ("t10k-images-idx3-ubyte", lambda b: b"<html>" + b[6:], rf"magic number {HTML}, expected 2051"),
    "labels as images": (
        "train-images-idx3-ubyte",
        lambda b: header(2049, 120) + bytes(120),
        "magic number 2049, expected 2051",
    ),
    "no examples": ("t10k-labels-idx1-ubyte", lambda b: header(2049, 0), r"it holds 0 examples"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_files_are_named_before_torchvision_reads_them(name, tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, n_train=120, n_test=40)
    file, change, detail = CORRUPTIONS[name]
    (raw / file).write_bytes(change((raw / file).read_bytes()))
    with pytest.raises(DataError, match=rf"^{raw / file} is corrupt or truncated \({detail}\): delete it and re-run"):
        psmnist(tmp_path, download=True, val_size=20)


def test_with_downloads_off_the_fix_says_what_a_download_needs(tmp_path):
    raw = write_idx_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is corrupt .*: .* needs task.data.download=true"):
        psmnist(tmp_path, download=False, val_size=20)


def test_other_unusable_files(tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, n_train=120, n_test=40)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(header(2051, 40, 32, 32) + bytes(40 * 32 * 32))
    with pytest.raises(DataError, match=rf"{images} holds 32 x 32 images, psMNIST needs 28 x 28"):
        psmnist(tmp_path, download=False, val_size=20)
    images.write_bytes(b"\x1f\x8b\x08" + bytes(100))  # the gzip magic, then garbage
    with pytest.raises(DataError, match=rf"{images} is corrupt or truncated \(not a whole gzip file: "):
        psmnist(tmp_path, download=False, val_size=20)
    images.unlink()
    images.mkdir()
    with pytest.raises(DataError, match=rf"{images} is not a file: delete or rename it"):
        psmnist(tmp_path, download=False, val_size=20)


def test_image_and_label_counts_must_agree(tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, n_train=120)
    (raw / "train-labels-idx1-ubyte").write_bytes(header(2049, 119) + bytes(119))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds 120 images but .*labels-idx1-ubyte holds 119"):
        psmnist(tmp_path, download=False, val_size=20)


def test_labels_must_be_digits(tmp_path):
    raw = write_idx_mnist(tmp_path, n_test=40)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(header(2049, 40) + bytes([3] * 39 + [12]))
    with pytest.raises(DataError, match=rf"{raw / 't10k-labels-idx1-ubyte'} holds the label 12, but MNIST's classes"):
        psmnist(tmp_path, download=False, val_size=20)


def test_legacy_processed_files_are_checked_too(tmp_path):
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    images = torch.zeros(30, 28, 28, dtype=torch.uint8)
    torch.save((images, torch.arange(30) % 10), processed / "training.pt")
    torch.save((images[:5], torch.tensor([1, 2, 3, 4, 11])), processed / "test.pt")
    with pytest.raises(DataError, match=rf"{processed} holds the label 11"):
        psmnist(tmp_path, download=False, val_size=10)


def test_a_read_only_root_works_when_the_files_are_there(tmp_path, monkeypatch):
    write_idx_mnist(tmp_path)
    monkeypatch.setattr(psmnist_module, "_writable", lambda folder: False)
    monkeypatch.setattr(os, "makedirs", lambda *args, **kwargs: pytest.fail("tried to create a folder"))
    assert len(psmnist(tmp_path, download=True, val_size=20).train) == 100


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_really_read_only_root_works_when_the_files_are_there(tmp_path):
    raw = write_idx_mnist(tmp_path)
    for folder in (raw, raw.parent, tmp_path):
        folder.chmod(0o555)
    try:
        assert len(psmnist(tmp_path, download=True, val_size=20).train) == 100
    finally:
        for folder in (tmp_path, raw.parent, raw):
            folder.chmod(0o755)


@pytest.fixture
def online(monkeypatch):
    """The offline switches unset and every host reachable (this machine has no network: offline by detection)."""
    from plmu.data import folders

    for name in ("HF_DATASETS_OFFLINE", "PLMU_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(folders, "reachable", lambda host, timeout=3.0: True)


def test_a_read_only_root_when_a_download_is_needed_names_it(tmp_path, monkeypatch, online):
    monkeypatch.setattr(psmnist_module, "_writable", lambda folder: False)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", lambda self: pytest.fail("tried to download"))
    with pytest.raises(DataNotFoundError, match=rf"not found in .* and {tmp_path} is not writable, .*writable folder"):
        psmnist(tmp_path / "data", download=True)


def test_download_errors_are_one_line_and_name_the_path(tmp_path, monkeypatch, online):
    def denied(self):
        raise PermissionError(13, "Permission denied", f"{tmp_path}/MNIST/raw/x.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", denied)
    with pytest.raises(DataNotFoundError, match=rf"{tmp_path}/MNIST/raw/x.gz is not writable"):
        psmnist(tmp_path, download=True)

    def unreachable(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried a, got:\nno route\n")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", unreachable)
    with pytest.raises(DataNotFoundError, match=r"the download failed \(Error downloading .*got: no route\)") as error:
        psmnist(tmp_path, download=True)
    assert "\n" not in str(error.value)


def test_missing_files_are_listed_when_some_are_there(tmp_path):
    raw = write_idx_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match=rf"in {raw} \(t10k-labels-idx1-ubyte missing\)"):
        psmnist(tmp_path, download=False)


def test_the_published_gz_files_read_as_the_uncompressed_ones(tmp_path, no_torchvision_read):
    write_idx_mnist(tmp_path / "plain")
    raw = write_idx_mnist(tmp_path / "gz", gzipped=True)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in psmnist_module.RAW_FILES)
    plain, packed = (psmnist(tmp_path / name, download=False, val_size=20) for name in ("plain", "gz"))
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(plain, split).x, getattr(packed, split).x)
        assert torch.equal(getattr(plain, split).y, getattr(packed, split).y)
        assert getattr(packed, split).y.dtype == torch.int64


def test_a_mix_of_plain_and_gz_files_reads_and_plain_wins(tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, gzipped=True)
    write_idx_mnist(tmp_path / "other", seed=1)
    # the plain train labels of another draw beside the .gz: the plain file is the one read
    (raw / "t10k-labels-idx1-ubyte").write_bytes((tmp_path / "other/MNIST/raw/t10k-labels-idx1-ubyte").read_bytes())
    other = load_images(tmp_path / "other", download=False)
    assert torch.equal(load_images(tmp_path, download=False)[3], other[3])


def test_a_gz_saved_under_the_plain_name_reads(tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, gzipped=True)
    (raw / "train-images-idx3-ubyte.gz").rename(raw / "train-images-idx3-ubyte")
    assert len(psmnist(tmp_path, download=False, val_size=20).train) == 100


GZ_CORRUPTIONS = {  # name: (how to change the .gz bytes, what the message says)
    "cut stream": (lambda b: b[: len(b) // 2], r"not a whole gzip file: Compressed file ended before"),
    "flipped byte": (lambda b: b[:20] + bytes([b[20] ^ 0xFF]) + b[21:], r"not a whole gzip file"),
    "0 bytes": (lambda b: b"", r"0 bytes, shorter than the 16-byte IDX header"),
}


@pytest.mark.parametrize("name", GZ_CORRUPTIONS)
def test_a_damaged_gz_is_named(name, tmp_path, no_torchvision_read):
    raw = write_idx_mnist(tmp_path, gzipped=True)
    file = raw / "train-images-idx3-ubyte.gz"
    change, detail = GZ_CORRUPTIONS[name]
    file.write_bytes(change(file.read_bytes()))
    with pytest.raises(DataError, match=rf"^{file} is corrupt or truncated \({detail}"):
        psmnist(tmp_path, download=True, val_size=20)


def test_a_gz_whose_content_is_short_is_named(tmp_path, no_torchvision_read):
    import gzip

    raw = write_idx_mnist(tmp_path, gzipped=True)
    file = raw / "t10k-labels-idx1-ubyte.gz"
    file.write_bytes(gzip.compress(gzip.decompress(file.read_bytes())[:-3]))
    with pytest.raises(
        DataError, match=rf"{file} is corrupt .*\(45 bytes uncompressed, but its header \(40\) needs 48"
    ):
        psmnist(tmp_path, download=False, val_size=20)


def test_val_size_is_checked_from_a_gz_header(tmp_path, no_torchvision_read):
    write_idx_mnist(tmp_path, n_train=120, gzipped=True)
    with pytest.raises(ConfigError, match=r"task.data.val_size must be between 1 and 119 .*idx3-ubyte.gz"):
        psmnist(tmp_path, download=False, val_size=120)


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_read_only_data_folder_is_never_written(gzipped, tmp_path, monkeypatch):
    """What a user holds (plain or .gz) in a folder nothing may be written to: read, nothing created or changed."""
    raw = write_idx_mnist(tmp_path, gzipped=gzipped)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    monkeypatch.setattr(psmnist_module, "_writable", lambda folder: False)
    monkeypatch.setattr(os, "makedirs", lambda *args, **kwargs: pytest.fail("tried to create a folder"))
    assert len(psmnist(tmp_path, download=True, val_size=20).train) == 100
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert raw.exists()


def test_augmented_training_batches_are_transformed_images_permuted_and_seeded(tmp_path):
    from plmu.data.psmnist import AugmentedSplit, random_affine

    write_idx_mnist(tmp_path)
    plain = psmnist(tmp_path, download=False, val_size=20)
    augment = {"rotate": 10, "scale": 0.1, "translate": 2}
    moved = psmnist(tmp_path, download=False, val_size=20, augment=augment)
    assert isinstance(moved.train, AugmentedSplit) and moved.info["augment"] == {
        k: float(v) for k, v in augment.items()
    }
    for split in ("val", "test"):  # never augmented
        a, b = (list(getattr(d, split).batches(16)) for d in (plain, moved))
        assert all(torch.equal(x["inputs"], y["inputs"]) for x, y in zip(a, b, strict=True))
    _, pixels = permutations(120)
    image_of = torch.from_numpy(np.argsort(pixels))
    batches = list(moved.train.batches(16, shuffle=True, seed=5))
    originals = list(plain.train.batches(16, shuffle=True, seed=5))
    for number, (batch, original) in enumerate(zip(batches, originals, strict=True)):
        assert torch.equal(batch["target"], original["target"])
        # the batch is its images, transformed by the draws of (seed, batch number), then permuted again
        images = original["inputs"][..., 0][:, image_of].view(-1, 28, 28)
        generator = torch.Generator().manual_seed((5 * 1_000_003 + number) % 2**63)
        expected = random_affine(images, generator=generator, **augment).reshape(len(images), -1)[:, pixels]
        torch.testing.assert_close(batch["inputs"][..., 0], expected, rtol=0, atol=0)  # sampled in pixel order
        assert not torch.equal(batch["inputs"], original["inputs"])
    again = list(moved.train.batches(16, shuffle=True, seed=5, start_batch=3))  # a resumed epoch: the same draws
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(again, batches[3:], strict=True))
    unshuffled = [next(moved.train.batches(16, seed=seed))["inputs"] for seed in (5, 5, 6)]  # the same rows
    assert torch.equal(unshuffled[0], unshuffled[1]) and not torch.equal(unshuffled[0], unshuffled[2])


def test_random_affine_moves_pixels_as_asked():
    from plmu.data.psmnist import random_affine

    image = torch.zeros(1, 28, 28)
    image[0, 10:14, 10:14] = 1.0
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(random_affine(image, 0, 0, 0, generator), image)  # nothing asked: exactly the image
    shifted = random_affine(image.expand(200, 28, 28), 0, 0, 3, generator)
    centres = [(s * torch.arange(28.0)[None, :]).sum() / s.sum() for s in shifted]  # the blob's column centre
    offsets = torch.tensor(centres) - 11.5
    assert offsets.abs().max() <= 3 + 1e-4 and offsets.std() > 1  # moved, within ±3 pixels
    turned = random_affine(image.expand(50, 28, 28), 30, 0.2, 0, generator)
    assert (turned.sum(dim=(1, 2)) - 16).abs().max() < 16 * 0.5  # rotated and scaled, not lost


def test_random_affine_is_torch_affine_grid_written_out():
    from plmu.data.psmnist import random_affine

    images = torch.rand(30, 28, 28)
    ours = random_affine(images, 15, 0.2, 3, torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)  # the same draws, in the same order, through affine_grid
    angle = (torch.rand(30, generator=generator) * 2 - 1) * np.radians(15)
    size = 1 + (torch.rand(30, generator=generator) * 2 - 1) * 0.2
    shift = (torch.rand(30, 2, generator=generator) * 2 - 1) * 3 * 2 / 28
    cos, sin = torch.cos(angle) / size, torch.sin(angle) / size
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [30, 1, 28, 28], align_corners=False)
    reference = F.grid_sample(images[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rotate": -1}, r"task.data.augment.rotate must be a number from 0 to below 180 \(degrees\), got -1"),
        ({"scale": 1.0}, r"task.data.augment.scale must be a number from 0 to below 1"),
        ({"translate": "2"}, r"task.data.augment.translate must be a number .*, got '2'"),
        ({"rotate": True}, r"task.data.augment.rotate must be a number"),
        ({"shear": 5}, r"task.data.augment has unknown keys \['shear'\]: it takes rotate, scale, translate"),
        ({}, r"task.data.augment must be null or a mapping of rotate, scale, translate"),
        (2, r"task.data.augment must be null or a mapping"),
    ],
)
def test_bad_augment_fails_before_any_file_is_read(value, message, tmp_path, no_torchvision_read):
    write_idx_mnist(tmp_path)
    with pytest.raises(ConfigError, match=message):
        psmnist(tmp_path, download=False, val_size=20, augment=value)
