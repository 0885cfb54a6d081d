"""A token stream for language modelling: B contiguous streams cut into chunks of L steps.

A split is one long sequence of token ids (a corpus, e.g. text8's 90M characters). For a batch of B, the
prediction pairs (input token t, target token t + 1) are cut into B contiguous streams, stream b holding pairs
``b·n … b·n + n − 1`` with n = ⌈(N − 1) / B⌉; the last stream is padded at its end (input 0, target
``ignore_index``), so every token but the first is predicted exactly once, and a split's cross-entropy is over all
of it. Chunk i of the batch is every stream's steps ``i·L … i·L + L − 1``:

    {"inputs": (B, L) long, "target": (B, L) long}        (the last chunk may be shorter)

Chunks come in stream order, never shuffled: with ``trainer.state=carry`` a model's state after chunk i is its
state before chunk i + 1 (each stream runs on without a break), which is how a language model is trained on
sequences longer than a chunk and evaluated over a whole split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from plmu.data.splits import Split, ThreeSplits, check_int
from plmu.errors import DataError

IGNORE_INDEX = -100  # torch's cross-entropy default: padded targets count nowhere


def _smallest_int_dtype(vocab_size: int) -> np.dtype:
    """Token ids of a 27-symbol vocabulary fit one byte: text8's 90M characters take 90 MB, not 720."""
    for dtype in (np.uint8, np.int16, np.int32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


@dataclass(eq=False)  # numpy fields: == would be ambiguous
class StreamSplit(Split):
    """One split as a token stream (``tokens`` (N,) ids) cut into chunks of ``chunk_length`` steps, batches
    ``{"inputs": (B, L), "target": (B, L)}`` (:class:`~plmu.data.splits.Split`'s protocol); ``len`` is the number of
    predicted tokens (N − 1), ``batch_size`` the number of streams B. Token targets are checked when the split is
    made (ids in [0, vocab_size)): ``check_labels`` has nothing more to check."""

    tokens: np.ndarray
    chunk_length: int
    vocab_size: int

    def __post_init__(self) -> None:
        check_int("chunk_length", self.chunk_length, 1, "steps per chunk")
        check_int("vocab_size", self.vocab_size, 1, "the number of symbols")
        tokens = np.asarray(self.tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens must be a 1-D array of integer ids, got {tokens.dtype} {tokens.shape}")
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise DataError(
                f"token ids must lie in [0, {self.vocab_size}), got {int(tokens.min())} to {int(tokens.max())}"
            )
        self.tokens = tokens.astype(_smallest_int_dtype(self.vocab_size), copy=False)

    def __len__(self) -> int:
        return max(len(self.tokens) - 1, 0)

    def stream_length(self, batch_size: int) -> int:
        """n: prediction steps per stream for ``batch_size`` streams."""
        return math.ceil(len(self) / check_int("batch_size", batch_size, 1, "streams per batch"))

    def streams(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """(inputs, targets), each (B, n) long: B contiguous streams, the last padded at its end."""
        n = self.stream_length(batch_size)
        inputs = torch.zeros(batch_size * n, dtype=torch.long)
        target = torch.full((batch_size * n,), IGNORE_INDEX, dtype=torch.long)
        tokens = torch.from_numpy(self.tokens.astype(np.int64))
        inputs[: len(self)], target[: len(self)] = tokens[:-1], tokens[1:]
        return inputs.view(batch_size, n), target.view(batch_size, n)

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        count = math.ceil(self.stream_length(batch_size) / self.chunk_length)
        return count if limit is None else min(count, limit)

    def order(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
        """The chunks (inputs, target), each (B, L), in stream order. ``shuffle`` and ``seed`` are accepted for the
        split protocol and ignored on purpose: a carried state is only right if chunk i + 1 continues chunk i
        (module docstring)."""
        del shuffle, seed
        inputs, target = self.streams(batch_size)
        length = self.chunk_length
        windows = (slice(number * length, (number + 1) * length) for number in range(self.num_batches(batch_size)))
        return [(inputs[:, window], target[:, window]) for window in windows]

    def collate(self, item: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, target = item
        return {"inputs": inputs, "target": target}


@dataclass(eq=False)
class StreamSplits(ThreeSplits):
    """train / val / test token streams and what the run records (``info``: vocabulary, sizes, source)."""

    train: StreamSplit
    val: StreamSplit
    test: StreamSplit
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check_not_empty(
            "has fewer than 2 tokens",
            "nothing to predict; use a longer text or change the split fractions (task.data.*)",
        )
