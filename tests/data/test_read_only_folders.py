"""Every loader reads a user's data folder in place and writes nothing there (CI's copy of the real data sets is
read-only): caches go to data_dir. Each loader runs on a folder made read-only; because root may write anyway, the
folder's whole listing with sizes and times is compared before and after too."""

import zipfile
from pathlib import Path

import pytest
from conftest import write_idx_mnist
from test_translation import write_corpus
from text_fixtures import write_imdb, write_qqp

from plmu.data.imdb_lm import imdb_lm
from plmu.data.psmnist import psmnist
from plmu.data.text import load_text_task
from plmu.data.text8 import text8
from plmu.data.translation import iwslt15_en_vi


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _text8_file(folder: Path) -> Path:
    folder.mkdir()
    with zipfile.ZipFile(folder / "text8.zip", "w") as archive:
        archive.writestr("text8", "the quick brown fox jumps over the lazy dog " * 50)
    return folder / "text8.zip"


LOADERS = {
    "psmnist (plain)": (lambda d: write_idx_mnist(d).parent.parent, lambda d, c: psmnist(d, val_size=20)),
    "psmnist (.gz)": (lambda d: write_idx_mnist(d, gzipped=True).parent.parent, lambda d, c: psmnist(d, val_size=20)),
    "imdb": (write_imdb, lambda d, c: load_text_task("imdb", c, path=d, val_size=20, vocab_size=300)),
    "qqp": (write_qqp, lambda d, c: load_text_task("qqp", c, path=d, val_size=30, vocab_size=300)),
    "imdb_lm": (write_imdb, lambda d, c: imdb_lm(c, path=d, vocab_size=300, val_size=20, chunk_length=16)),
    "text8": (_text8_file, lambda d, c: text8(c, path=d / "text8.zip", chunk_length=16, expected_characters=None)),
    "iwslt15": (write_corpus, lambda d, c: iwslt15_en_vi(c, path=d)),
}


@pytest.mark.parametrize("name", LOADERS)
def test_a_read_only_data_folder_is_read_in_place(name, tmp_path):
    make, load = LOADERS[name]
    folder = tmp_path / "data"
    made = make(folder)
    folder = Path(made) if Path(made).is_dir() else folder
    before = snapshot(folder)
    read_only(folder)
    try:
        data = load(folder, tmp_path / "cache")
    finally:
        writable(folder)
    assert len(data.train) > 0
    assert snapshot(folder) == before, f"{name} wrote into its data folder"
