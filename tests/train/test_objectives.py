import pytest
import torch

from plmu.errors import ConfigError
from plmu.train.objectives import objective


def test_accuracy_over_batches():
    task = objective("classification")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    sums = task.sums(logits[:2], torch.tensor([0, 0])) + task.sums(logits[2:], torch.tensor([0]))
    assert task.reduce(sums) == pytest.approx(2 / 3)
    assert task.better(0.9, 0.8) and not task.better(0.7, 0.8) and task.better(0.1, None)


def test_nrmse_is_rmse_over_rms_of_the_target():
    task = objective("regression")
    prediction, target = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [2.0]])
    assert task.reduce(task.sums(prediction, target)) == pytest.approx((0.5**0.5) / 2.0)
    assert task.better(0.1, 0.2)
    assert task.loss(prediction, target).item() == pytest.approx(0.5)


def test_unknown_objective():
    with pytest.raises(ConfigError, match=r"task.objective must be one of \['classification', 'regression'\]"):
        objective("ranking")
