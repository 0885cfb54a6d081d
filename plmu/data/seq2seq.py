"""Sequence-to-sequence data: a vocabulary (words ↔ ids), sentence-pair splits and their batches.

The structures every translation corpus shares (IWSLT'15 in :mod:`plmu.data.translation`, the synthetic task in
:mod:`plmu.data.synthetic_translation`, source lines to translate in ``plmu-translate``). Ids: 0 is ``<pad>``; word i
of a vocabulary file is id i + 1; a word not in the vocabulary is ``<unk>``.

A batch (``TranslationSplit.batches``; length-bucketed like the text tasks, right-padded to a multiple of
``multiple``)::

    source       (B, S) long   source ids + </s>                           padding 0
    source_mask  (B, S) bool   True at real source tokens
    inputs       (B, T) long   <s> + target ids  (the decoder's input)     padding 0
    mask         (B, T) bool   True at real decoder steps
    target       (B, T) long   target ids + </s> (what each step predicts) padding -100 (ignore_index)
    index        (B,)   long   the pairs' line numbers in their split (to match translations with references)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from plmu.data.batching import Ragged, length_buckets
from plmu.data.splits import Split, ThreeSplits, check_int
from plmu.data.stream import IGNORE_INDEX
from plmu.errors import DataError, DataNotFoundError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
STANFORD_URL = "https://nlp.stanford.edu/projects/nmt/data/iwslt15.en-vi/"  # the layout vocabulary files follow


def read_lines(path: Path) -> list[str]:
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
                f"</s> first, as {STANFORD_URL}{path.name}) next to the text files"
            )
        return cls([line.strip() for line in read_lines(path)], name=str(path))

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


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class TranslationSplit(Split):
    """Sentence pairs as ids, with the raw text for scoring. ``source`` ids end with ``</s>``; ``target`` ids have
    neither ``<s>`` nor ``</s>`` (the batch adds them). ``references`` are the target lines, whitespace-normalised.

    The trainer's split protocol (:class:`~plmu.data.splits.Split`), batches as in the module docstring.
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

    def order(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
        """Length-bucketed index arrays (as the text tasks'); fixed when not shuffled."""
        return length_buckets(self._lengths, batch_size, seed, shuffle, self.bucket_size_multiplier)

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


def as_split(lines: Sequence[str], data: TranslationSplits | tuple[Vocabulary, Vocabulary], multiple: int = 8):
    """Source lines (e.g. stdin) as a split to translate: empty targets, the data's (or given) vocabularies."""
    source_vocab, target_vocab = (data.source_vocab, data.target_vocab) if isinstance(data, TranslationSplits) else data
    return encode_split(list(lines), [""] * len(lines), source_vocab, target_vocab, multiple)
