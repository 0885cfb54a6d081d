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

A batch (``TranslationSplit.batches``; length-bucketed like the text tasks, right-padded to a multiple of
``pad_multiple``)::

    source       (B, S) long   source ids + </s>                           padding 0
    source_mask  (B, S) bool   True at real source tokens
    inputs       (B, T) long   <s> + target ids  (the decoder's input)     padding 0
    mask         (B, T) bool   True at real decoder steps
    target       (B, T) long   target ids + </s> (what each step predicts) padding -100 (ignore_index)
    index        (B,)   long   the pairs' line numbers in their split (to match translations with references)

Every problem with the files is one line: files of a split with different line counts, a file with no text, a
truncated download, a missing vocabulary file or one without ``<unk>``, ``<s>``, ``</s>``, text that is not UTF-8.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from plmu.data.batching import LengthBucketBatchSampler, Ragged
from plmu.data.folders import data_folder, offline
from plmu.data.splits import SPLITS, ThreeSplits, check_int
from plmu.data.stream import IGNORE_INDEX
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
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
LONG_PAIRS = ("drop", "truncate")


# ------------------------------------------------------------------------------------------------ vocabulary
class Vocabulary:
    """Words ↔ ids: ``words[i]`` is id i; id 0 is ``<pad>`` (put first unless ``words`` starts with it); ``<unk>``,
    ``<s>``, ``</s>`` must be among the words.

    A word listed twice keeps its first id (the later line's id is never produced by ``encode``).
    """

    def __init__(self, words: Sequence[str], name: str = "vocabulary") -> None:
        words = tuple(words)
        if not words or words[0] != PAD:
            words = (PAD, *words)
        self.words, self.name = words, name
        self.index: dict[str, int] = {}
        for i, word in enumerate(words):
            self.index.setdefault(word, i)
        missing = [token for token in (UNK, BOS, EOS) if token not in self.index]
        if missing:
            raise DataError(
                f"{name} has no {', '.join(missing)}: a vocabulary lists <unk>, <s> and </s> (the Stanford files put "
                f"them on its first three lines); add them"
            )
        self.pad_id, self.unk_id = 0, self.index[UNK]
        self.bos_id, self.eos_id = self.index[BOS], self.index[EOS]

    @classmethod
    def from_file(cls, path: Path) -> Vocabulary:
        """One word a line (``vocab.<lang>``); ids follow the lines, after ``<pad>`` (id 0)."""
        if not path.is_file():
            raise DataNotFoundError(
                f"the vocabulary {path} is missing: put vocab.{path.suffix.lstrip('.')} (one word a line, <unk> <s> "
                f"</s> first, as {URL}{path.name}) next to the text files"
            )
        return cls([line.strip() for line in _read_lines(path)], name=str(path))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Words → ids (int32); unknown words → ``<unk>``."""
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(token, unk) for token in tokens), dtype=np.int32, count=len(tokens))

    def decode(self, ids: Sequence[int] | np.ndarray | Tensor) -> list[str]:
        """Ids → words, up to the first ``</s>``; ``<pad>`` and ``<s>`` are skipped."""
        words = []
        for i in np.asarray(ids).tolist():
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.words[i])
        return words

    def digest(self) -> str:
        """sha256 of the words in order: the same ids mean the same words."""
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ files
def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 file (split at "\\n" only, as ``wc -l`` counts; a final newline ends the last line)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not UTF-8 text (byte {error.start}, line {line}): a damaged file; delete it and re-run to "
            f"download it again, or replace it"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


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
    if offline():
        raise DataNotFoundError(
            f"IWSLT'15 en-vi is not in {folder} ({', '.join(missing)} missing) and this run is offline "
            f"(HF_DATASETS_OFFLINE or PLMU_OFFLINE is set): {_fill_hint(folder)}"
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
    source, target = (_read_lines(path) for path in paths)
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


# ------------------------------------------------------------------------------------------------ splits
@dataclass(eq=False)  # numpy fields: == would be ambiguous
class TranslationSplit:
    """Sentence pairs as ids, with the raw text for scoring. ``source`` ids end with ``</s>``; ``target`` ids have
    neither ``<s>`` nor ``</s>`` (the batch adds them). ``references`` are the target lines, whitespace-normalised.

    The split protocol of the trainer (``len``, ``batches``, ``num_batches``, ``check_labels``), batches as in the
    module docstring.
    """

    source: Ragged
    target: Ragged
    sources: list[str]
    references: list[str]
    bos_id: int
    eos_id: int
    pad_id: int = 0
    multiple: int = 8
    bucket_size_multiplier: int = 50
    _lengths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sizes = {len(self.source), len(self.target), len(self.sources), len(self.references)}
        if len(sizes) != 1:
            raise ValueError(f"source, target and texts differ in length: {sorted(sizes)}")
        if len(self.source) and self.source.lengths().min() < 1:
            raise ValueError("every source needs at least its </s>")
        # Bucketed by the padded work of a pair: its source and target lengths together.
        self._lengths = self.source.lengths() + self.target.lengths() + 1

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def collate(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The batch of pairs ``indices`` (module docstring), right-padded to a multiple of ``multiple``."""
        sources = [self.source[i] for i in indices]
        targets = [self.target[i] for i in indices]
        rows, m = len(indices), self.multiple
        width_s = -(-max(len(s) for s in sources) // m) * m
        width_t = -(-(max(len(t) for t in targets) + 1) // m) * m
        source = np.full((rows, width_s), self.pad_id, dtype=np.int64)
        inputs = np.full((rows, width_t), self.pad_id, dtype=np.int64)
        target = np.full((rows, width_t), IGNORE_INDEX, dtype=np.int64)
        inputs[:, 0] = self.bos_id
        for row, (s, t) in enumerate(zip(sources, targets, strict=True)):
            source[row, : len(s)] = s
            inputs[row, 1 : len(t) + 1] = t
            target[row, : len(t)] = t
            target[row, len(t)] = self.eos_id
        source_lengths = np.array([len(s) for s in sources])
        target_lengths = np.array([len(t) + 1 for t in targets])
        return {
            "source": torch.from_numpy(source),
            "source_mask": torch.from_numpy(np.arange(width_s) < source_lengths[:, None]),
            "inputs": torch.from_numpy(inputs),
            "mask": torch.from_numpy(np.arange(width_t) < target_lengths[:, None]),
            "target": torch.from_numpy(target),
            "index": torch.as_tensor(np.asarray(indices, dtype=np.int64)),
        }

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        start_batch: int = 0,
    ) -> Iterator[dict[str, Tensor]]:
        """Length-bucketed batches; the order depends only on ``seed`` (fixed when not shuffled). Batch numbers count
        from the start of that order: ``start_batch`` skips the first ones, ``limit`` stops before batch ``limit``."""
        sampler = LengthBucketBatchSampler(
            self._lengths, batch_size, seed, shuffle, self.bucket_size_multiplier, start_batch=start_batch
        )
        for number, indices in enumerate(sampler, start=sampler.start_batch):
            if limit is not None and number >= limit:
                return
            yield self.collate(indices)

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        count = -(-len(self) // batch_size)
        return count if limit is None else min(count, limit)

    def check_labels(self, num_classes: int, split: str = "this", key: str = "num_classes") -> None:
        """Raise a DataError unless every target id (``</s>`` included) is in [0, num_classes)."""
        check_int(key, num_classes, 1, "the target vocabulary size")
        top = max(int(self.target.values.max()) if len(self.target.values) else 0, self.eos_id)
        if top >= num_classes:
            raise DataError(
                f"the {split} split has target id {top}, outside [0, {num_classes}) for {key}={num_classes}: the "
                f"model's target vocabulary must match the data's"
            )


@dataclass(eq=False)
class TranslationSplits(ThreeSplits):
    """train / val / test ``TranslationSplit``s, their vocabularies, and what the run records (``info``)."""

    train: TranslationSplit
    val: TranslationSplit
    test: TranslationSplit
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_not_empty("is empty (0 sentence pairs)", "check the files and task.data.* (max lengths, max_train)")


def encode_split(
    sources: Sequence[str],
    targets: Sequence[str],
    source_vocab: Vocabulary,
    target_vocab: Vocabulary,
    multiple: int = 8,
    bucket_size_multiplier: int = 50,
) -> TranslationSplit:
    """Line pairs → a split: tokens split on whitespace, unknown words ``<unk>``, ``</s>`` after each source."""
    eos = np.array([source_vocab.eos_id], dtype=np.int32)
    source = Ragged.from_lists([np.concatenate([source_vocab.encode(line.split()), eos]) for line in sources])
    target = Ragged.from_lists([target_vocab.encode(line.split()) for line in targets])
    return TranslationSplit(
        source,
        target,
        [" ".join(line.split()) for line in sources],
        [" ".join(line.split()) for line in targets],
        bos_id=target_vocab.bos_id,
        eos_id=target_vocab.eos_id,
        pad_id=target_vocab.pad_id,
        multiple=multiple,
        bucket_size_multiplier=bucket_size_multiplier,
    )


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
            f"task.data.path={str(path)!r} is not a folder: point it at a folder holding train/tst2012/tst2013 "
            f".en/.vi and vocab.en/vocab.vi (the layout of {URL})"
        )
    return folder, False


def vocabularies(data: Mapping[str, Any]) -> tuple[Vocabulary, Vocabulary]:
    """The source and target vocabularies alone (what translating text needs) of a ``task.data`` config, read from
    its folder (:func:`data_folder_for`). Nothing is downloaded or generated."""
    folder = data_folder_for(data)
    source, target = data.get("source_lang", "en"), data.get("target_lang", "vi")
    return Vocabulary.from_file(folder / f"vocab.{source}"), Vocabulary.from_file(folder / f"vocab.{target}")


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


# ------------------------------------------------------------------------------------------------ synthetic task
SYNTHETIC_ORDERS = ("swap", "monotone", "reverse")


def _reorder(words: Sequence[int], order: str) -> list[int]:
    """The target's word order: ``swap`` each pair (1 0 3 2 …: English adjective-noun → Vietnamese noun-adjective),
    ``monotone``, or ``reverse``."""
    words = list(words)
    if order == "monotone":
        return words
    if order == "reverse":
        return words[::-1]
    if order == "swap":
        return [words[i ^ 1] if (i ^ 1) < len(words) else words[i] for i in range(len(words))]
    raise ValueError(f"order must be one of {list(SYNTHETIC_ORDERS)}, got {order!r}")


def write_synthetic(
    folder: str | Path,
    num_train: int = 4000,
    num_val: int = 200,
    num_test: int = 200,
    vocab: int = 40,
    min_length: int = 3,
    max_length: int = 10,
    order: str = "swap",
    seed: int = 0,
) -> Path:
    """A synthetic translation task in the Stanford layout (train/tst2012/tst2013 .en/.vi, vocab.en/.vi).

    A source is ``min_length`` to ``max_length`` distinct random words ``w<i>`` of ``vocab``; its target renames
    every word ``v<π(i)>`` (π a permutation drawn from ``seed``) and reorders them by ``order``: ``swap`` (each pair
    exchanged, a local reordering like English adjective-noun → Vietnamese noun-adjective; the default), ``monotone``
    or ``reverse``. Returns ``folder``.
    """
    if order not in SYNTHETIC_ORDERS:
        raise ValueError(f"order must be one of {list(SYNTHETIC_ORDERS)}, got {order!r}")
    if not (isinstance(vocab, int) and isinstance(min_length, int) and isinstance(max_length, int)):
        raise ValueError(
            f"vocab, min_length and max_length must be integers, got {vocab!r}, {min_length!r}, {max_length!r}"
        )
    if not 1 <= min_length <= max_length <= vocab:
        raise ValueError(f"need 1 <= min_length <= max_length <= vocab, got {min_length}, {max_length}, {vocab}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rename = rng.permutation(vocab)
    specials = [UNK, BOS, EOS]
    (folder / "vocab.en").write_text("\n".join([*specials, *(f"w{i}" for i in range(vocab))]) + "\n")
    (folder / "vocab.vi").write_text("\n".join([*specials, *(f"v{i}" for i in range(vocab))]) + "\n")
    for split, count in (("train", num_train), ("tst2012", num_val), ("tst2013", num_test)):
        sources, targets = [], []
        for _ in range(count):
            words = rng.choice(vocab, size=int(rng.integers(min_length, max_length + 1)), replace=False)
            sources.append(" ".join(f"w{i}" for i in words))
            targets.append(" ".join(f"v{rename[i]}" for i in _reorder(words, order)))
        (folder / f"{split}.en").write_text("\n".join(sources) + "\n")
        (folder / f"{split}.vi").write_text("\n".join(targets) + "\n")
    return folder


def _synthetic_folder(data_dir: object, settings: Mapping[str, Any]) -> Path:
    fix = "set data_dir=<folder> (or PLMU_DATA_DIR); it is created if missing"
    name = "-".join(f"{key}{value}" for key, value in settings.items())
    return data_folder(data_dir, "data_dir", "a folder", fix) / "synthetic_en_vi" / name


def synthetic_en_vi(
    data_dir: str | Path,
    path: str | Path | None = None,
    num_train: int = 4000,
    num_val: int = 200,
    num_test: int = 200,
    vocab: int = 40,
    min_length: int = 3,
    max_length: int = 10,
    order: str = "swap",
    seed: int = 0,
    **options: Any,
) -> TranslationSplits:
    """The synthetic task of :func:`write_synthetic`, loaded as :func:`iwslt15_en_vi` loads IWSLT (``options``: its
    arguments, e.g. ``max_source_length``). Written once into ``<data_dir>/synthetic_en_vi/<settings>/``; ``path``
    reads a folder ``scripts/synthetic_translation.py`` wrote instead (the settings here are then not used)."""
    settings = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "vocab": vocab,
                "min_length": min_length, "max_length": max_length, "order": order, "seed": seed}  # fmt: skip
    generated = path is None
    if generated:
        folder = _synthetic_folder(data_dir, settings)
        if not (folder / "vocab.vi").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                write_synthetic(temp, **settings)
                temp.rename(folder)  # a folder is complete or absent
            except ValueError as error:
                raise ConfigError(f"task.data: {error}") from None
            except OSError:  # another process wrote it first
                pass
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        path = folder
    data = iwslt15_en_vi(data_dir, path=path, **options)
    data.info["dataset"] = f"synthetic en-vi ({order if generated else 'from task.data.path'}; {Path(path).name})"
    data.info["synthetic"] = settings if generated else "read from task.data.path"
    return data


def data_folder_for(data: Mapping[str, Any]) -> Path:
    """The folder a ``task.data`` config reads its files from (for :func:`vocabularies` without loading the text)."""
    arguments = loader_arguments(data)
    if str(data.get("_target_", "")).endswith("synthetic_en_vi") and arguments.get("path") is None:
        import inspect

        defaults = {name: parameter.default for name, parameter in inspect.signature(synthetic_en_vi).parameters.items()
                    if parameter.default is not inspect.Parameter.empty and name != "path"}  # fmt: skip
        settings = {key: arguments.get(key, default) for key, default in defaults.items()}
        return _synthetic_folder(arguments.get("data_dir"), settings)
    return data_folder_of(arguments.get("data_dir"), arguments.get("path"))[0]


def as_split(lines: Sequence[str], data: TranslationSplits | tuple[Vocabulary, Vocabulary], multiple: int = 8):
    """Source lines (e.g. stdin) as a split to translate: empty targets, the data's (or given) vocabularies."""
    source_vocab, target_vocab = (data.source_vocab, data.target_vocab) if isinstance(data, TranslationSplits) else data
    return encode_split(list(lines), [""] * len(lines), source_vocab, target_vocab, multiple)


def loader_arguments(data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``task.data`` mapping without Hydra's keys (``_target_``...): the loader's keyword arguments."""
    return {key: value for key, value in data.items() if not (key.startswith("_") and key.endswith("_"))}
