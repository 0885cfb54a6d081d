"""IWSLT'15 English→Vietnamese (Stanford NMT's files), or any parallel corpus in their layout → ``TranslationSplits``.

The layout (https://nlp.stanford.edu/projects/nmt/data/iwslt15.en-vi/, Luong & Manning 2015):

    train.en   train.vi      133,317 line-aligned sentence pairs           → train
    tst2012.en tst2012.vi      1,553 pairs                                 → val (model selection)
    tst2013.en tst2013.vi      1,268 pairs                                 → test (the BLEU the literature reports)
    vocab.en   vocab.vi     17,191 / 7,709 words, one a line, <unk> <s> </s> first

The text is tokenised already (words split by spaces, HTML entities such as ``&apos;`` escaped): a sentence's tokens
are its line split on whitespace. Ids: 0 is ``<pad>`` (added here), word i of ``vocab.<lang>`` is id i + 1, so with the
Stanford files ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3; a word not in the vocabulary is ``<unk>``.

``iwslt15_en_vi(data_dir)`` downloads the eight files once into ``<data_dir>/iwslt15_en_vi/`` (each to a temporary
file, its lines counted against the Stanford file's, then renamed: a cut download never looks complete), and checks
the line counts of the files there on every load. ``path=`` reads a folder of the same layout instead (another
corpus, e.g. the synthetic task of :func:`write_synthetic`; no line counts are expected then).

Which pairs are used, and why:

- Training pairs with an empty side are dropped (the Stanford train files have a few lines empty on one side only;
  they teach nothing), with a warning and their count in ``info["dropped_empty"]``. Validation and test keep every
  line: BLEU is over the whole test set, and an empty source line still has its ``</s>``.
- Training pairs longer than ``max_source_length`` / ``max_target_length`` words are dropped (``long_pairs=drop``,
  the default: a cut pair is no longer a translation) or cut to the limits (``truncate``); counted in ``info``.
  Validation and test are never cut or dropped.

The splits, their batches and the vocabulary: :mod:`plmu.data.seq2seq`; the synthetic task in the same layout:
:mod:`plmu.data.synthetic_translation`.

Every problem with the files is one line: files of a split with different line counts, a file with no text, a
truncated download, a missing vocabulary file or one without ``<unk>``, ``<s>``, ``</s>``, text that is not UTF-8.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plmu.data.folders import data_folder, offline, relative_note
from plmu.data.seq2seq import (  # noqa: F401 (re-exported: the names this module had before plmu.data.seq2seq)
    BOS,
    EOS,
    PAD,
    UNK,
    TranslationSplit,
    TranslationSplits,
    Vocabulary,
    as_split,
    encode_split,
    read_lines,
)
from plmu.data.splits import SPLITS, check_int
from plmu.data.stream import IGNORE_INDEX  # noqa: F401
from plmu.errors import ConfigError, DataError, DataNotFoundError

log = logging.getLogger(__name__)

URL = "https://nlp.stanford.edu/projects/nmt/data/iwslt15.en-vi/"
FOLDER = "iwslt15_en_vi"  # under data_dir
# The Stanford files' line counts (wc -l): a downloaded file with another count is cut or not the Stanford file.
EXPECTED_LINES = {
    "train.en": 133_317,
    "train.vi": 133_317,
    "tst2012.en": 1_553,
    "tst2012.vi": 1_553,
    "tst2013.en": 1_268,
    "tst2013.vi": 1_268,
    "vocab.en": 17_191,
    "vocab.vi": 7_709,
}
LONG_PAIRS = ("drop", "truncate")


# ------------------------------------------------------------------------------------------------ files
def _count_lines(path: Path) -> int:
    """Lines as ``wc -l`` counts them, plus one for a last line without a newline."""
    data = path.read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _fill_hint(folder: Path) -> str:
    return (
        f"download the files {', '.join(EXPECTED_LINES)} from {URL} into {folder}/ (e.g. "
        f"wget -P {folder} {URL}train.en), or set task.data.path=<a folder with the same files>"
    )


def download(folder: Path, files: Sequence[str] = tuple(EXPECTED_LINES), timeout: float = 60.0) -> None:
    """The Stanford files missing from ``folder``, downloaded one by one: each into a temporary file, its line count
    checked, then renamed into place (a cut download is deleted, never left looking complete)."""
    missing = [name for name in files if not (folder / name).is_file()]
    if not missing:
        return
    if offline("nlp.stanford.edu"):
        raise DataNotFoundError(
            f"IWSLT'15 en-vi is not in {folder} ({', '.join(missing)} missing) and this run is offline "
            f"(no network, or HF_DATASETS_OFFLINE or PLMU_OFFLINE set): {_fill_hint(folder)}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create {folder} ({error.strerror or error}): set data_dir to a writable folder"
        ) from None
    for name in missing:
        url = URL + name
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            lines = _count_lines(Path(temp))
            if lines != EXPECTED_LINES[name]:
                raise DataError(
                    f"the download of {url} has {lines:,} lines, expected {EXPECTED_LINES[name]:,}: it was cut or the "
                    f"file changed; re-run to download it again, or {_fill_hint(folder)}"
                )
            os.replace(temp, folder / name)
        except (urllib.error.URLError, OSError) as error:  # offline, DNS, HTTP errors, timeouts, a full disk
            reason = getattr(error, "reason", None) or error
            raise DataNotFoundError(
                f"IWSLT'15 en-vi could not be downloaded from {url} ({' '.join(str(reason).split())}): "
                f"{_fill_hint(folder)}"
            ) from None
        finally:
            Path(temp).unlink(missing_ok=True)
        log.info("downloaded %s (%d lines) into %s", url, EXPECTED_LINES[name], folder)


def _check_downloaded(folder: Path, files: Sequence[str]) -> None:
    """The files in the download folder have the Stanford files' line counts (a cut copy put there by hand, too)."""
    for name in files:
        lines = _count_lines(folder / name)
        if lines != EXPECTED_LINES[name]:
            raise DataError(
                f"{folder / name} has {lines:,} lines, expected {EXPECTED_LINES[name]:,} (the Stanford file): a "
                f"truncated download or another file; delete it and re-run to download it again, or "
                f"{_fill_hint(folder)}"
            )


def read_pairs(folder: Path, split: str, source_lang: str, target_lang: str) -> tuple[list[str], list[str]]:
    """The line-aligned source and target lines of ``split`` (``<folder>/<split>.<lang>``)."""
    paths = [folder / f"{split}.{lang}" for lang in (source_lang, target_lang)]
    for path in paths:
        if not path.is_file():
            raise DataNotFoundError(
                f"{path} is missing: the folder must hold {split}.{source_lang} and {split}.{target_lang} (one "
                f"tokenised sentence a line, line-aligned), as {URL} has them"
            )
    source, target = (read_lines(path) for path in paths)
    if len(source) != len(target):
        longer, shorter = (paths[0], paths[1]) if len(source) > len(target) else (paths[1], paths[0])
        raise DataError(
            f"{paths[0]} has {len(source):,} lines but {paths[1]} has {len(target):,}: the files of a split must be "
            f"line-aligned ({shorter.name} looks cut, or {longer.name} has extra lines); re-download or fix them"
        )
    for path, lines in zip(paths, (source, target), strict=True):
        if not any(line.strip() for line in lines):
            raise DataError(f"{path} has no text ({len(lines)} empty lines): replace it with the real file")
    return source, target


def _select_training_pairs(
    sources: list[str], targets: list[str], max_source: int, max_target: int, long_pairs: str
) -> tuple[list[str], list[str], dict[str, int]]:
    """Training pairs without an empty side, and within the length limits (dropped or cut, by ``long_pairs``)."""
    kept_s, kept_t = [], []
    counts = {"empty": 0, "long": 0}
    for s, t in zip(sources, targets, strict=True):
        s_words, t_words = s.split(), t.split()
        if not s_words or not t_words:
            counts["empty"] += 1
            continue
        if len(s_words) > max_source or len(t_words) > max_target:
            counts["long"] += 1
            if long_pairs == "drop":
                continue
            s, t = " ".join(s_words[:max_source]), " ".join(t_words[:max_target])
        kept_s.append(s)
        kept_t.append(t)
    return kept_s, kept_t, counts


def _unknown_rate(split: TranslationSplit, source_unk: int, target_unk: int) -> dict[str, float]:
    rates = {}
    for side, ragged, unk in (("source", split.source, source_unk), ("target", split.target, target_unk)):
        values = ragged.values
        rates[side] = round(float((values == unk).mean()), 5) if len(values) else 0.0
    return rates


def _stats(lengths: np.ndarray) -> dict[str, float]:
    if len(lengths) == 0:
        return {}
    return {
        "mean": round(float(lengths.mean()), 2),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
    }


def data_folder_of(data_dir: object, path: object) -> tuple[Path, bool]:
    """(the folder of the files, whether it is the download folder ``<data_dir>/iwslt15_en_vi``)."""
    if path is None:
        fix = "set data_dir=<folder> (or PLMU_DATA_DIR); it is created if missing"
        return data_folder(data_dir, "data_dir", "a folder", fix) / FOLDER, True
    if not isinstance(path, str | os.PathLike) or str(path) == "":
        raise ConfigError(f"task.data.path must be a folder of the Stanford layout (train.en, ...), got {path!r}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataNotFoundError(
            f"task.data.path={str(path)!r}{relative_note(path)} is not a folder: point it at a folder holding "
            f"train/tst2012/tst2013.en/.vi and vocab.en/vocab.vi (the layout of {URL})"
        )
    return folder, False


def iwslt15_en_vi(
    data_dir: str | Path,
    path: str | Path | None = None,
    source_lang: str = "en",
    target_lang: str = "vi",
    train: str = "train",
    val: str = "tst2012",
    test: str = "tst2013",
    max_source_length: int = 80,
    max_target_length: int = 80,
    long_pairs: str = "drop",
    max_train: int | None = None,
    pad_multiple: int = 8,
    bucket_size_multiplier: int = 50,
    download_missing: bool = True,
) -> TranslationSplits:
    """IWSLT'15 en→vi (or ``path``: any folder of the same layout) as tokenised, batched splits and their ``info``.

    ``max_source_length`` / ``max_target_length``: training pairs longer than this many words are dropped
    (``long_pairs=drop``) or cut (``truncate``); ``max_train``: only the first N training pairs kept (quick runs);
    ``download_missing``: fetch missing Stanford files into ``<data_dir>/iwslt15_en_vi`` (never with ``path``).
    Every argument is checked before a file is read.
    """
    max_source = check_int("task.data.max_source_length", max_source_length, 1, "words of a training source")
    max_target = check_int("task.data.max_target_length", max_target_length, 1, "words of a training target")
    if long_pairs not in LONG_PAIRS:
        raise ConfigError(f"task.data.long_pairs must be one of {list(LONG_PAIRS)}, got {long_pairs!r}")
    if max_train is not None:
        check_int("task.data.max_train", max_train, 1, "training pairs kept; null for all")
    multiple = check_int("task.data.pad_multiple", pad_multiple, 1, "padded lengths are a multiple of it")
    check_int("task.data.bucket_size_multiplier", bucket_size_multiplier, 1, "batches per length bucket")
    for key, value in (("source_lang", source_lang), ("target_lang", target_lang), ("train", train), ("val", val),
                       ("test", test)):  # fmt: skip
        if not isinstance(value, str) or not value or "/" in value:
            raise ConfigError(f"task.data.{key} must be a file name part (e.g. en, tst2012), got {value!r}")
    folder, downloaded = data_folder_of(data_dir, path)
    names = [f"{split}.{lang}" for split in (train, val, test) for lang in (source_lang, target_lang)]
    names += [f"vocab.{source_lang}", f"vocab.{target_lang}"]
    if downloaded:
        stanford = [name for name in names if name in EXPECTED_LINES]
        if download_missing:
            download(folder, stanford)
        elif missing := [name for name in names if not (folder / name).is_file()]:
            raise DataNotFoundError(
                f"IWSLT'15 en-vi is not in {folder} ({', '.join(missing)} missing; task.data.download_missing=false): "
                f"{_fill_hint(folder)}"
            )
        _check_downloaded(folder, stanford)
    source_vocab = Vocabulary.from_file(folder / f"vocab.{source_lang}")
    target_vocab = Vocabulary.from_file(folder / f"vocab.{target_lang}")

    raw = {role: read_pairs(folder, split, source_lang, target_lang) for role, split in
           (("train", train), ("val", val), ("test", test))}  # fmt: skip
    train_sources, train_targets, dropped = _select_training_pairs(*raw["train"], max_source, max_target, long_pairs)
    if dropped["empty"]:
        log.warning("%s: dropped %d training pair(s) with an empty side", folder, dropped["empty"])
    if max_train is not None:
        train_sources, train_targets = train_sources[:max_train], train_targets[:max_train]
    texts = {"train": (train_sources, train_targets), "val": raw["val"], "test": raw["test"]}
    splits = {
        role: encode_split(*texts[role], source_vocab, target_vocab, multiple, bucket_size_multiplier)
        for role in SPLITS
    }
    info = {
        "task": "translation",
        "dataset": f"IWSLT'15 {source_lang}-{target_lang} (Stanford NMT)"
        if downloaded
        else f"local files ({Path(folder).name}) in the Stanford NMT layout",
        "folder": str(Path(folder).resolve()),
        "folder_in_data_dir": FOLDER if downloaded else None,  # plmu-translate --data-root finds it there
        "vocab_files": {
            "source": str((folder / f"vocab.{source_lang}").resolve()),
            "target": str((folder / f"vocab.{target_lang}").resolve()),
        },
        "files": {"train": train, "val": val, "test": test, "source": source_lang, "target": target_lang},
        "vocab_size": len(source_vocab),  # the model's source vocabulary (plmu.train.run passes it as vocab_size)
        "num_classes": len(target_vocab),  # its target vocabulary: the classes of every output token
        "source_vocab_size": len(source_vocab),
        "target_vocab_size": len(target_vocab),
        "special_ids": {"pad": 0, "unk": target_vocab.unk_id, "bos": target_vocab.bos_id, "eos": target_vocab.eos_id},
        "source_vocab_sha256": source_vocab.digest(),
        "target_vocab_sha256": target_vocab.digest(),
        "split_sizes": {role: len(split) for role, split in splits.items()},
        "lines": {role: len(raw[role][0]) for role in SPLITS},
        "max_source_length": max_source,
        "max_target_length": max_target,
        "long_pairs": long_pairs,
        "long_training_pairs": dropped["long"],  # dropped or cut, by long_pairs
        "dropped_empty": dropped["empty"],
        "max_train": max_train,
        "pad_multiple": multiple,
        "unknown_rate": {
            role: _unknown_rate(split, source_vocab.unk_id, target_vocab.unk_id) for role, split in splits.items()
        },
        "train_source_tokens": _stats(splits["train"].source.lengths()),
        "train_target_tokens": _stats(splits["train"].target.lengths() + 1),
    }
    return TranslationSplits(splits["train"], splits["val"], splits["test"], source_vocab, target_vocab, info)
