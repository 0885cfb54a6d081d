"""In-memory splits and a batch iterator: every task's data fits in memory as tensors."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from plmu.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def is_int(value: object) -> bool:
    """An integer (Python or numpy) but not a bool: ``True`` is an int to Python, never a size to a user."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(key: str, value: object, minimum: int, meaning: str, below: int | None = None) -> int:
    """``value`` as an int if it is an integer in [minimum, below); else a ConfigError naming ``key`` (as the user
    writes it, e.g. ``task.data.steps``), the value and what it must be. Checked before any data is touched, so a
    str or a 0 fails here with the key, not as a TypeError or an empty tensor deep inside a run."""
    if is_int(value) and value >= minimum and (below is None or value < below):
        return int(value)
    if below is not None:
        allowed = f"an integer from {minimum} to {below - 1}"
    elif minimum == 1:
        allowed = "a positive integer"
    else:
        allowed = f"an integer >= {minimum}"
    raise ConfigError(f"{key} must be {allowed} ({meaning}), got {value!r}: fix {key} in the config or command line")


def split_fractions(split: object, of_what: str, example: str) -> tuple[float, float, float]:
    """``task.data.split``: three positive fractions (train, val, test) summing to 1, or a ConfigError that says
    what they divide (``of_what``, e.g. "of the documents"; "" for none) and shows ``example``."""
    values = list(split) if hasattr(split, "__iter__") and not isinstance(split, str) else []
    ok = len(values) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values)
    if not ok or abs(sum(values) - 1) > 1e-9:
        fractions = f"fractions {of_what} " if of_what else "fractions "
        raise ConfigError(
            f"task.data.split must be three positive {fractions}(train, val, test) that sum to 1, got {split!r} "
            f"({example})"
        )
    return values[0], values[1], values[2]


class Split:
    """What the trainer asks of one split, implemented once: ``len``, ``batches``, ``num_batches``, ``check_labels``.

    A split says how an epoch is cut (:meth:`order`: one item per batch, e.g. index arrays) and how one item becomes
    a batch (:meth:`collate`: a dict of tensors); :meth:`batches` walks that order. Batch numbers count from the
    start of the epoch's order, which depends only on ``seed``: ``start_batch`` skips batches 0 … start_batch − 1
    (an exact mid-epoch resume) and ``limit`` stops before batch number ``limit`` (the epoch's cap, wherever it was
    started). Subclasses: :class:`TensorSplit`, :class:`plmu.data.batching.DictSplit`,
    :class:`plmu.data.stream.StreamSplit`, :class:`plmu.data.seq2seq.TranslationSplit`.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def order(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Sequence[Any]:
        """The epoch's batches, in order, each as :meth:`collate` takes it."""
        raise NotImplementedError

    def collate(self, item: Any) -> dict[str, Tensor]:
        """One item of :meth:`order` as a batch."""
        raise NotImplementedError

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
        start_batch: int = 0,
    ) -> Iterator[dict[str, Tensor]]:
        """The epoch's batches from ``start_batch`` on, stopping before batch ``limit`` (see the class docstring)."""
        order = self.order(batch_size, shuffle, seed)  # drawn in full either way: the same order on resume
        stop = len(order) if limit is None else min(limit, len(order))
        for number in range(start_batch, stop):
            yield self.collate(order[number])

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        """Batches in an epoch of ``batch_size`` (at most ``limit``)."""
        count = -(-len(self) // batch_size)
        return count if limit is None else min(count, limit)

    def check_labels(self, num_classes: int, split: str = "this", key: str = "num_classes") -> None:
        """Raise a DataError unless the targets are class labels in [0, num_classes); here: nothing to check."""


@dataclass
class TensorSplit(Split):
    """Inputs x (N, T, features) and targets y: (N,) class labels or (N, T, outputs) values; a batch is
    ``{"inputs": x (B, T, features), "target": y}``, the dict every task's batches are."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y differ in length: {len(self.x)} vs {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def order(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Sequence[slice | Tensor]:
        """Consecutive slices, or (``shuffle``) slices of a permutation drawn from ``seed`` alone."""
        starts = range(0, len(self), batch_size)
        if not shuffle:
            return [slice(start, start + batch_size) for start in starts]
        permutation = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return [permutation[start : start + batch_size] for start in starts]

    def collate(self, item: slice | Tensor) -> dict[str, Tensor]:
        return {"inputs": self.x[item], "target": self.y[item]}

    def check_labels(self, num_classes: int, split: str = "this", key: str = "num_classes") -> None:
        """Raise a DataError unless y holds class labels (N,) of an integer dtype, all in [0, num_classes).

        A label out of range would otherwise crash cross-entropy in the first training step (or, on a GPU, give a
        device-side assert that names nothing). ``split`` and ``key`` (the config key that set ``num_classes``,
        e.g. ``task.output_size``) only make the message say where to look.
        """
        check_int(key, num_classes, 1, "the number of classes")
        y = self.y
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise DataError(
                f"the {split} split's targets are not class labels: expected a 1-D integer tensor (N,), got "
                f"{str(y.dtype).removeprefix('torch.')} of shape {tuple(y.shape)}; labels are checked for "
                f"classification tasks only (is task.objective right for this data?)"
            )
        if len(y) == 0:
            return
        outside = (y < 0) | (y >= num_classes)
        if not bool(outside.any()):
            return
        low, high = int(y.min()), int(y.max())
        bad = low if low < 0 else high
        fix = (
            "class labels must be non-negative: fix the data"
            if low < 0
            else f"set {key} to at least {high + 1}, or fix the data"
        )
        raise DataError(
            f"the {split} split has {int(outside.sum())} label(s) outside [0, {num_classes}) for {key}={num_classes}, "
            f"e.g. {bad} (its labels range from {low} to {high}): {fix}"
        )


class ThreeSplits:
    """What every container of a run's train / val / test splits shares (DataSplits, TextSplits, StreamSplits,
    TranslationSplits): refusing an empty split by name, and checking every split's labels."""

    def check_not_empty(self, empty: str, fix: str) -> None:
        """Raise ``DataError("the <split> split <empty>: <fix>")`` for the first split of length 0."""
        for name in SPLITS:
            if len(getattr(self, name)) == 0:
                raise DataError(f"the {name} split {empty}: {fix}")

    def check_labels(self, num_classes: int, key: str = "num_classes") -> None:
        """Raise a DataError unless every split's targets are class labels in [0, num_classes).

        Call it before training a classification task, e.g. ``data.check_labels(cfg.task.output_size,
        key="task.output_size")``; the message names the split, a bad label and ``key``.
        """
        for name in SPLITS:
            getattr(self, name).check_labels(num_classes, split=name, key=key)


@dataclass
class DataSplits(ThreeSplits):
    """The three splits a run uses: fit on ``train``, select on ``val``, report ``test``."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    info: dict = field(default_factory=dict)  # what the run should record (permutations, generator settings)

    def __post_init__(self) -> None:
        # The last line of defence for any task: an empty split trains on nothing or divides by zero in a metric,
        # and a sequence of length 0 fails only once the model runs; say which split, here, before training.
        self.check_not_empty(
            "is empty (0 examples)", "every split needs at least one; check the task's split sizes (task.data.*)"
        )
        for name in SPLITS:
            x = getattr(self, name).x
            if x.numel() == 0:
                raise DataError(
                    f"the {name} split's inputs are empty: x has shape {tuple(x.shape)} (no time steps or features); "
                    f"check the task's sequence length (task.data.*)"
                )
