"""In-memory splits and a batch iterator: every task's data fits in memory as tensors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TensorSplit:
    """Inputs x (N, T, features) and targets y: (N,) class labels or (N, T, outputs) values."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y differ in length: {len(self.x)} vs {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, limit: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) batches; a shuffled order depends only on ``seed``, so a resumed epoch sees the same batches."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)) if shuffle else None
        for number, start in enumerate(range(0, len(self), batch_size)):
            if limit is not None and number >= limit:
                return
            index = slice(start, start + batch_size) if order is None else order[start : start + batch_size]
            yield self.x[index], self.y[index]

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        count = -(-len(self) // batch_size)
        return count if limit is None else min(count, limit)


@dataclass
class DataSplits:
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    info: dict = field(default_factory=dict)  # what the run should record (permutations, generator settings)
