"""Loss and metric per kind of task. A metric is accumulated over a whole split, then reduced."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from plmu.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    """What a task optimises (``loss``) and reports (``metric``, better when ``higher_is_better``)."""

    name: str
    metric: str
    higher_is_better: bool

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        if self.name == "classification":
            return F.cross_entropy(prediction.float(), target)
        return F.mse_loss(prediction.float(), target)

    def sums(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Additive statistics of one batch, (3,): reduced by :meth:`reduce` once the split is done."""
        prediction = prediction.detach().float()
        if self.name == "classification":
            correct = (prediction.argmax(-1) == target).sum().float()
            return torch.stack([correct, torch.full_like(correct, len(target)), torch.zeros_like(correct)])
        squared_error = (prediction - target).pow(2).sum()
        count = torch.full_like(squared_error, target.numel())  # on the batch's device, like the sums
        return torch.stack([squared_error, target.pow(2).sum(), count])

    def reduce(self, sums: Tensor) -> float:
        if self.name == "classification":
            return float(sums[0] / sums[1])  # accuracy
        return float((sums[0] / sums[1]).sqrt())  # NRMSE = RMSE / RMS(target) over the split

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


OBJECTIVES = {
    "classification": Objective("classification", "accuracy", higher_is_better=True),
    "regression": Objective("regression", "nrmse", higher_is_better=False),
}


def objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"task.objective must be one of {sorted(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name]
