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


@pytest.mark.parametrize("name", ["classification", "regression"])
def test_sums_stay_on_the_batch_device(name):
    """Found on a GPU: the counts were made on the CPU and could not be stacked with CUDA sums. The meta device
    stands in for any device that is not the CPU, so this runs everywhere."""
    task = objective(name)
    prediction = torch.zeros(4, 10, device="meta") if name == "classification" else torch.zeros(4, 3, 1, device="meta")
    target = torch.zeros(4, dtype=torch.long, device="meta") if name == "classification" else prediction.clone()
    assert task.sums(prediction, target).device.type == "meta"
