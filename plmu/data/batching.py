"""Batches of variable-length token sequences: a length-bucketing sampler, a padding collate, and dict splits.

A batch is a dict of tensors. Single text: ``{"inputs": (B, T) long, "mask": (B, T) bool, "target": (B,) long}``;
pairs: ``{"inputs_a", "mask_a", "inputs_b", "mask_b", "target"}``. ``mask`` is True on real tokens. Every
``inputs*`` key is padded on its own (its own T), to the batch maximum rounded up to ``multiple`` so that only a
few distinct shapes occur (compiled kernels and cuDNN plans are cached per shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from plmu.data.splits import Split, ThreeSplits, check_int, is_int
from plmu.errors import DataError

SIDES = ("left", "right")


def mask_key(key: str) -> str:
    """The mask key of an ids key: ``inputs`` → ``mask``, ``inputs_a`` → ``mask_a``."""
    return "mask" + key.removeprefix("inputs")


def length_buckets(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    bucket_size_multiplier: int = 50,
) -> list[np.ndarray]:
    """An epoch's batches of examples of similar length, as int64 index arrays; every index exactly once.

    Shuffled: a seeded permutation is cut into chunks of ``batch_size * bucket_size_multiplier`` examples, each
    chunk is sorted by length (stable, so equal lengths keep their random order) and cut into batches, then the
    batch order is shuffled. Chunks are a multiple of the batch size, so only the very last batch can be short, and
    every batch comes from one chunk: batches stay length-homogeneous while each epoch still mixes differently.
    Not shuffled: the same within consecutive chunks of the natural order, batches in order; independent of seed.
    The order depends only on ``seed`` (the trainer passes ``seed * K + epoch``), so a resumed epoch sees the same
    batches (:class:`plmu.data.splits.Split` skips those already trained).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D (one per example), got shape {lengths.shape}")
    size = check_int("batch_size", batch_size, 1, "examples per batch")
    chunk = size * check_int("bucket_size_multiplier", bucket_size_multiplier, 1, "batches per chunk")
    seed = check_int("seed", seed, 0, "the shuffling seed")
    if not isinstance(shuffle, bool):
        raise ValueError(f"shuffle must be true or false, got {shuffle!r}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    batches: list[np.ndarray] = []
    for start in range(0, len(lengths), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + size] for i in range(0, len(part), size))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _as_ids(value: object, key: str, number: int) -> np.ndarray:
    """One example's ids under ``key`` as a 1-D int64 array (from a list, numpy array or CPU tensor)."""
    ids = np.asarray(value)
    if ids.ndim != 1 or not (ids.dtype.kind in "iu" or ids.size == 0):
        raise ValueError(f"example {number}: {key!r} must be a 1-D sequence of token ids, got {ids.dtype} {ids.shape}")
    if ids.size == 0:
        # A sequence of length 0 has no last state to read; the loaders drop empty texts, so this is a bug upstream.
        raise ValueError(f"example {number}: {key!r} is empty (0 tokens); every sequence needs at least one token")
    return ids.astype(np.int64, copy=False)


def pad_collate(
    examples: Sequence[Mapping[str, object]],
    pad_id: int = 0,
    side: str = "left",
    multiple: int = 1,
    keys: Sequence[str] | None = None,
    target_key: str = "target",
) -> dict[str, Tensor]:
    """Pad each ``keys`` sequence to the batch maximum rounded up to ``multiple``; add masks; stack targets.

    ``examples``: dicts of 1-D id sequences (lists, numpy arrays or tensors) and an int target. ``keys`` defaults to
    the example's keys that start with ``inputs``. Returns ``{key: (B, T_key) long, mask_key(key): (B, T_key) bool,
    target_key: (B,) long}``; the target is left out when the examples have none (language-model text).
    ``side="left"`` puts the tokens at the end of each row (the last step is a real token: what the parallel LMU
    reads as the final state), ``"right"`` at the start.
    """
    if len(examples) == 0:
        raise ValueError("pad_collate got an empty batch (0 examples)")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    multiple = check_int("multiple", multiple, 1, "padded lengths are rounded up to a multiple of it")
    if not is_int(pad_id):
        raise ValueError(f"pad_id must be an integer token id, got {pad_id!r}")
    if keys is None:
        keys = sorted(key for key in examples[0] if key.startswith("inputs"))
    if not keys:
        raise ValueError(f"no ids to pad: the examples have no 'inputs*' key (keys: {sorted(examples[0])})")
    batch: dict[str, Tensor] = {}
    for key in keys:
        sequences = []
        for number, example in enumerate(examples):
            if key not in example:
                raise ValueError(f"example {number} has no {key!r} (keys: {sorted(example)})")
            sequences.append(_as_ids(example[key], key, number))
        width = -(-max(len(ids) for ids in sequences) // multiple) * multiple
        ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=bool)
        for row, sequence in enumerate(sequences):
            span = slice(width - len(sequence), width) if side == "left" else slice(0, len(sequence))
            ids[row, span] = sequence
            mask[row, span] = True
        batch[key], batch[mask_key(key)] = torch.from_numpy(ids), torch.from_numpy(mask)
    targets = [example.get(target_key) for example in examples]
    if any(target is not None for target in targets):
        if any(target is None for target in targets):
            raise ValueError(f"some examples have a {target_key!r} and some do not")
        batch[target_key] = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return batch


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class Ragged:
    """Variable-length id sequences stored flat: sequence i is ``values[offsets[i]:offsets[i + 1]]``.

    Flat int32 arrays, not lists of lists: SNLI's 1.1M sentences as Python int lists would take gigabytes.
    """

    values: np.ndarray  # (total tokens,) int32
    offsets: np.ndarray  # (N + 1,) int64, non-decreasing

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0:
            raise ValueError(f"offsets must be 1-D with N + 1 entries, got shape {self.offsets.shape}")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        """(N,) int64 sequence lengths."""
        return np.diff(self.offsets).astype(np.int64)

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> Ragged:
        """From id lists (small data and tests)."""
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in sequences])
        values = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if len(sequences) else []
        return cls(np.asarray(values, dtype=np.int32), offsets)


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class DictSplit(Split):
    """One split of tokenised examples: ``columns`` (``inputs`` or ``inputs_a``/``inputs_b``) and ``target``; a
    batch (module docstring) is made by ``pad_collate`` over length-bucketed indices (:class:`Split`'s protocol)."""

    columns: dict[str, Ragged]
    target: np.ndarray | None  # (N,) int64 class labels, or None (unlabelled text)
    pad_id: int = 0
    side: str = "left"
    multiple: int = 8
    bucket_size_multiplier: int = 50
    _lengths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a DictSplit needs at least one column of ids")
        sizes = {key: len(column) for key, column in self.columns.items()}
        if self.target is not None:
            self.target = np.asarray(self.target, dtype=np.int64)
            sizes["target"] = len(self.target)
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the columns differ in length: {sizes}")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        # Pairs bucket by the sum of both lengths: the padded compute of a batch is the sum of both widths.
        self._lengths = sum(column.lengths() for column in self.columns.values())

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> np.ndarray:
        """(N,) tokens per example (summed over the columns of a pair)."""
        return self._lengths

    def example(self, index: int) -> dict[str, object]:
        """Example ``index``: ``{key: (T,) int32 ids, "target": int}``."""
        example: dict[str, object] = {key: column[index] for key, column in self.columns.items()}
        if self.target is not None:
            example["target"] = int(self.target[index])
        return example

    def order(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
        """Length-bucketed index arrays (:func:`length_buckets`); fixed when not shuffled."""
        return length_buckets(self._lengths, batch_size, seed, shuffle, self.bucket_size_multiplier)

    def collate(self, item: np.ndarray) -> dict[str, Tensor]:
        """Examples ``item`` padded into one batch (module docstring)."""
        examples = [self.example(i) for i in item]
        return pad_collate(examples, self.pad_id, self.side, self.multiple, keys=list(self.columns))

    def check_labels(self, num_classes: int, split: str = "this", key: str = "num_classes") -> None:
        """Raise a DataError unless every target is in [0, num_classes) (or there are no targets to check)."""
        check_int(key, num_classes, 1, "the number of classes")
        if self.target is None or len(self.target) == 0:
            return
        outside = (self.target < 0) | (self.target >= num_classes)
        if outside.any():
            bad = self.target[outside]
            raise DataError(
                f"the {split} split has {int(outside.sum())} label(s) outside [0, {num_classes}) for "
                f"{key}={num_classes}, e.g. {int(bad[0])}: set {key} to match the data, or fix the data"
            )


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class TextSplits(ThreeSplits):
    """train / val / test ``DictSplit``s; ``extra`` holds further splits (IMDB's unlabelled ``unsupervised``)."""

    train: DictSplit
    val: DictSplit
    test: DictSplit
    info: dict = field(default_factory=dict)
    extra: dict[str, DictSplit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_not_empty(
            "is empty (0 examples)",
            "every split needs at least one; check the data and the task's split sizes (task.data.*)",
        )
