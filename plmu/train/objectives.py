"""What a task optimises and reports, chosen by config (``task.objective._target_``).

An objective sees the model's outputs and the whole batch (a dict: ``target`` and, for text, masks), so the
trainer and ``plmu-eval`` hold no task-specific code. Each has

- ``loss(outputs, batch)``: the training loss (a scalar tensor);
- ``stats(outputs, batch)``: additive statistics of one batch, a 1-D tensor on the batch's device whose entries are
  named by ``stat_names`` (sums and counts, so batches and, later, processes can simply be added up);
- ``reduce(stats)``: the metrics those statistics give, a dict; ``metric`` names the one to monitor and
  ``higher_is_better`` its direction;
- ``loss_count(batch)``: how many terms ``loss`` averages over in ``batch`` (examples, values or tokens), so
  that processes training on parts of one batch (``plmu.train.distributed``) weight their losses exactly.

Accuracy counts examples (or tokens), never batches; NRMSE and cross-entropy are over the whole split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from plmu.errors import ConfigError

Batch = Mapping[str, Tensor]


class Objective:
    """The interface; subclasses set ``metric``, ``higher_is_better`` and ``stat_names``."""

    name: ClassVar[str]
    metric: str
    higher_is_better: bool
    stat_names: ClassVar[tuple[str, ...]]

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        raise NotImplementedError

    def stats(self, outputs: Tensor, batch: Batch) -> Tensor:
        raise NotImplementedError

    def reduce(self, stats: Tensor) -> dict[str, float]:
        raise NotImplementedError

    def loss_count(self, batch: Batch) -> int:
        """How many terms ``loss`` averages over in ``batch``: its examples, unless a subclass says otherwise."""
        return len(batch["target"])

    def value(self, stats: Tensor) -> float:
        """The monitored metric of accumulated statistics."""
        return self.reduce(stats)[self.metric]

    def zeros(self) -> Tensor:
        """Statistics of no batch: the start of an accumulation."""
        return torch.zeros(len(self.stat_names), dtype=torch.float64)

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric={self.metric!r})"


def _smoothing(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"task.objective.label_smoothing must be a number in [0, 1), got {value!r}")
    return float(value)


def _stack(*values: Tensor) -> Tensor:
    """Scalars as one float64 vector on their device (float64: sums over millions of tokens stay exact)."""
    return torch.stack([v.detach().double() for v in values])


class Classification(Objective):
    """Cross-entropy on one label per example: outputs (batch, classes), ``batch["target"]`` (batch,) long.

    ``label_smoothing`` (a regulariser: the target puts that much mass evenly on every class) changes the training
    loss only; the reported ``loss`` is the true cross-entropy.
    """

    name = "classification"
    stat_names = ("correct", "examples", "loss_sum")

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = _smoothing(label_smoothing)
        self.metric, self.higher_is_better = "accuracy", True

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.float(), batch["target"], label_smoothing=self.label_smoothing)

    def stats(self, outputs: Tensor, batch: Batch) -> Tensor:
        target, outputs = batch["target"], outputs.detach().float()
        correct = (outputs.argmax(-1) == target).sum()
        loss_sum = F.cross_entropy(outputs, target, reduction="sum")
        return _stack(correct, torch.full_like(loss_sum, len(target)), loss_sum)

    def reduce(self, stats: Tensor) -> dict[str, float]:
        correct, examples, loss_sum = stats.tolist()
        if examples == 0:
            return {"accuracy": math.nan, "loss": math.nan}
        return {"accuracy": correct / examples, "loss": loss_sum / examples}


class Regression(Objective):
    """Mean squared error; reports NRMSE = RMSE / RMS(target) over the split. Outputs and target alike in shape."""

    name = "regression"
    stat_names = ("squared_error", "squared_target", "values")

    def __init__(self) -> None:
        self.metric, self.higher_is_better = "nrmse", False

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.mse_loss(outputs.float(), batch["target"])

    def loss_count(self, batch: Batch) -> int:
        """Every value of the target (the MSE is their mean)."""
        return batch["target"].numel()

    def stats(self, outputs: Tensor, batch: Batch) -> Tensor:
        target, outputs = batch["target"], outputs.detach().float()
        squared_error = (outputs - target).pow(2).sum()
        return _stack(squared_error, target.pow(2).sum(), torch.full_like(squared_error, target.numel()))

    def reduce(self, stats: Tensor) -> dict[str, float]:
        squared_error, squared_target, values = stats.tolist()
        if values == 0 or squared_target == 0:
            return {"nrmse": math.nan, "mse": math.nan}
        return {"nrmse": math.sqrt(squared_error / squared_target), "mse": squared_error / values}


class TokenCrossEntropy(Objective):
    """Cross-entropy at every position: outputs (batch, time, vocab), ``batch["target"]`` (batch, time) long.

    Positions whose target is ``ignore_index`` (padding) count nowhere. Metrics: ``loss`` (nats per token),
    ``bpc`` (bits per token: bits per character for a character model), ``perplexity`` and token ``accuracy``.
    ``label_smoothing`` changes the training loss only; the reported cross-entropy is the true one.
    """

    name = "token_cross_entropy"
    stat_names = ("nll_sum", "tokens", "correct")
    METRICS: ClassVar[dict[str, bool]] = {"bpc": False, "loss": False, "perplexity": False, "accuracy": True}

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0, metric: str = "bpc") -> None:
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ConfigError(f"task.objective.ignore_index must be an integer, got {ignore_index!r}")
        if metric not in self.METRICS:
            raise ConfigError(f"task.objective.metric must be one of {sorted(self.METRICS)}, got {metric!r}")
        self.ignore_index, self.label_smoothing = ignore_index, _smoothing(label_smoothing)
        self.metric, self.higher_is_better = metric, self.METRICS[metric]

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(
            outputs.float().flatten(0, -2),
            batch["target"].flatten(),
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def loss_count(self, batch: Batch) -> int:
        """The positions whose target is not ``ignore_index`` (the cross-entropy is their mean)."""
        return int((batch["target"] != self.ignore_index).sum())

    def stats(self, outputs: Tensor, batch: Batch) -> Tensor:
        logits, target = outputs.detach().float().flatten(0, -2), batch["target"].flatten()
        valid = target != self.ignore_index
        nll_sum = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        correct = ((logits.argmax(-1) == target) & valid).sum()
        return _stack(nll_sum, valid.sum(), correct)

    def reduce(self, stats: Tensor) -> dict[str, float]:
        nll_sum, tokens, correct = stats.tolist()
        if tokens == 0:
            return dict.fromkeys(self.METRICS, math.nan)
        loss = nll_sum / tokens
        return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss), "accuracy": correct / tokens}


# The names task configs used before objectives were chosen by `_target_`; checkpoints of those runs still load.
OBJECTIVES: dict[str, type[Objective]] = {
    "classification": Classification,
    "regression": Regression,
    "token_cross_entropy": TokenCrossEntropy,
}


def build_objective(spec: Any) -> Objective:
    """``task.objective``: a ``_target_`` mapping (instantiated by Hydra) or one of the names in ``OBJECTIVES``."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        if spec not in OBJECTIVES:
            raise ConfigError(
                f"task.objective must be one of {sorted(OBJECTIVES)} or a _target_ mapping, got {spec!r} "
                f"(e.g. task.objective._target_=plmu.train.objectives.Classification)"
            )
        return OBJECTIVES[spec]()
    if isinstance(spec, Mapping) and "_target_" in spec:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            built = instantiate(spec)
        except InstantiationException as error:
            cause = error.__cause__ or error
            if isinstance(cause, ConfigError):
                raise cause from None
            raise ConfigError(f"task.objective ({spec['_target_']}) could not be built: {cause}") from None
        if not isinstance(built, Objective):
            raise ConfigError(f"task.objective._target_={spec['_target_']!r} is not a plmu objective")
        return built
    raise ConfigError(f"task.objective must be a name or a _target_ mapping, got {spec!r}")
