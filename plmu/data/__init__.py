"""Data for the benchmark tasks: one module per task, each returning in-memory ``DataSplits``."""

from plmu.data.splits import DataSplits, TensorSplit

__all__ = ["DataSplits", "TensorSplit"]
