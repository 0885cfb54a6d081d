"""text8: the first 10^8 characters of a cleaned English Wikipedia dump, as a character-level language-modelling task.

The file holds 100,000,000 characters of ``[a-z ]`` (lower case, digits spelled out, everything else a space) on
one line, no newline. The standard split is the first 90M characters for training, the next 5M for validation, the
last 5M for test; the vocabulary is its 27 symbols (id 0 is the space). bpc is the mean cross-entropy per predicted
character in bits, over the whole test split run as B streams with the state carried (plmu.data.stream).

``text8(...)`` downloads ``text8.zip`` once into ``<data_dir>/text8/`` (torchvision's download helper), or reads
``task.data.path``: a ``text8.zip`` or a plain text file of the same form, e.g. the Wikipedia stand-in that
``scripts/wikipedia_as_text8.py`` writes. Every character is checked; a wrong size or symbol is one clear error.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from plmu.data.folders import data_folder, offline
from plmu.data.splits import check_int, split_fractions
from plmu.data.stream import StreamSplit, StreamSplits
from plmu.errors import ConfigError, DataError

URL = "http://mattmahoney.net/dc/text8.zip"
CHARACTERS = 100_000_000  # the size of text8 (and of text8.zip's one member)
ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id i is ALPHABET[i]
_IDS = np.full(256, 255, dtype=np.uint8)  # byte → id; 255 marks a byte outside the alphabet
_IDS[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(ALPHABET), dtype=np.uint8)


def encode(text: str | bytes) -> np.ndarray:
    """Characters of ``[a-z ]`` → ids (N,) uint8; any other character is a DataError naming it and where it is."""
    raw = np.frombuffer(text.encode() if isinstance(text, str) else text, dtype=np.uint8)
    ids = _IDS[raw]
    bad = np.flatnonzero(ids == 255)
    if bad.size:
        where = int(bad[0])
        context = raw[max(where - 20, 0) : where + 20].tobytes().decode("utf-8", "replace")
        raise DataError(
            f"character {where} is {raw[where : where + 1].tobytes()!r}, not one of text8's 27 symbols [a-z ] "
            f"({bad.size} such bytes; near {context!r}); clean the text first, e.g. with scripts/wikipedia_as_text8.py"
        )
    return ids


def decode(ids: np.ndarray | list[int]) -> str:
    """ids → characters (the inverse of :func:`encode`)."""
    return "".join(ALPHABET[int(i)] for i in ids)


def read_characters(path: Path) -> bytes:
    """The bytes of a text8-form file: ``text8.zip`` (its one member) or plain text; a damaged zip is a DataError."""
    if not path.is_file():
        raise DataError(f"{path} is not a file: task.data.path must name text8.zip or a text file of its form")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if len(names) != 1:
                    raise DataError(f"{path} holds {len(names)} files, expected one (text8)")
                return archive.read(names[0])
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise DataError(
                f"{path} is damaged ({error}); delete it and re-run to download it again, or replace it"
            ) from None
    if path.suffix == ".zip":
        raise DataError(
            f"{path} is not a readable zip archive (a truncated download?); delete it and re-run to download it "
            f"again, or replace it"
        )
    return path.read_bytes()


def _download(folder: Path) -> Path:
    """``<folder>/text8.zip``, downloaded once (torchvision's helper: a temporary file renamed when complete)."""
    archive = folder / "text8.zip"
    if archive.exists():
        return archive
    if offline("mattmahoney.net"):
        raise DataError(
            f"text8 is not in {folder} and this run is offline (no network, or HF_DATASETS_OFFLINE or PLMU_OFFLINE "
            f"set): download {URL} into {folder}/, or set task.data.path=<text8.zip or a text file of its form>"
        )
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    try:
        download_url(URL, str(folder), "text8.zip")
    except (OSError, RuntimeError) as error:
        raise DataError(
            f"text8 could not be downloaded from {URL} ({' '.join(str(error).split())}): download it into "
            f"{folder}/ by hand, or set task.data.path=<text8.zip or a text file of its form>"
        ) from None
    return archive


def text8(
    data_dir: str | Path,
    path: str | Path | None = None,
    chunk_length: int = 1024,
    split: tuple[float, float, float] | list[float] = (0.9, 0.05, 0.05),
    expected_characters: int | None = CHARACTERS,
    max_characters: int | None = None,
) -> StreamSplits:
    """text8's splits as token streams of ``chunk_length`` steps.

    ``path``: a local ``text8.zip`` or text file instead of the download; ``expected_characters``: the size the
    file must have (text8's 100M; null for another text, e.g. the Wikipedia stand-in); ``max_characters``: use only
    the first characters (a quick run), before the split.
    """
    fractions = split_fractions(split, "", "text8's standard: [0.9, 0.05, 0.05]")
    if path is None:
        folder = data_folder(data_dir, "data_dir", "a folder", "set data_dir=<folder> or PLMU_DATA_DIR") / "text8"
        source = _download(folder)
    else:
        if not isinstance(path, str | os.PathLike) or str(path) == "":
            raise ConfigError(f"task.data.path must name text8.zip or a text file of its form, got {path!r}")
        source = Path(path).expanduser()
    characters = read_characters(source)
    if expected_characters is not None and len(characters) != expected_characters:
        if path is None:  # the download: cut or replaced
            fix = "a truncated or different file; delete it and re-run to download it again"
        else:  # the user's own file: most likely another text on purpose
            fix = "another text than text8: set task.data.expected_characters=null to train on it as it is"
        raise DataError(
            f"{source} holds {len(characters):,} characters, expected {expected_characters:,} (text8's size): {fix}"
        )
    if max_characters is not None:
        characters = characters[: check_int("max_characters", max_characters, 2, "characters to use")]
    ids = encode(characters)
    train_end = round(len(ids) * fractions[0])
    val_end = train_end + round(len(ids) * fractions[1])
    parts = ids[:train_end], ids[train_end:val_end], ids[val_end:]
    vocab = len(ALPHABET)
    info = {
        "dataset": "text8" if expected_characters == CHARACTERS else f"text8-form text ({source.name})",
        "source": str(Path(source).resolve()),
        "vocab_size": vocab,
        "alphabet": ALPHABET,
        "characters": {name: len(part) for name, part in zip(("train", "val", "test"), parts, strict=True)},
        "chunk_length": chunk_length,
    }
    return StreamSplits(*(StreamSplit(part, chunk_length, vocab) for part in parts), info=info)
