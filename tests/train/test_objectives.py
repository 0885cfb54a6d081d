"""Objectives: loss, additive statistics that add up over batches, and the metrics they reduce to."""

import math

import pytest
import torch
import torch.nn.functional as F

from plmu.errors import ConfigError
from plmu.train.objectives import Classification, Regression, TokenCrossEntropy, build_objective


def test_accuracy_counts_examples_not_batches():
    task = Classification()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    target = torch.tensor([0, 0, 0])
    # batches of 2 and 1: a mean of batch accuracies would give (1/2 + 1) / 2 = 0.75
    stats = task.stats(logits[:2], {"target": target[:2]}) + task.stats(logits[2:], {"target": target[2:]})
    metrics = task.reduce(stats)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, target).item())
    assert task.better(0.9, 0.8) and not task.better(0.7, 0.8) and task.better(0.1, None)


def test_nrmse_is_rmse_over_rms_of_the_target():
    task = Regression()
    prediction, target = torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [2.0]])
    batch = {"target": target}
    assert task.value(task.stats(prediction, batch)) == pytest.approx((0.5**0.5) / 2.0)
    assert task.better(0.1, 0.2)
    assert task.loss(prediction, batch).item() == pytest.approx(0.5)


def test_token_cross_entropy_ignores_padding():
    task = TokenCrossEntropy(ignore_index=-100)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    target = torch.randint(0, 7, (2, 5))
    padded = target.clone()
    padded[0, 3:] = -100  # the first sequence has 3 real tokens, the second 5
    batch = {"target": padded}
    real = torch.cat(
        [
            F.cross_entropy(logits[0, :3], target[0, :3], reduction="none"),
            F.cross_entropy(logits[1], target[1], reduction="none"),
        ]
    )
    assert task.loss(logits, batch).item() == pytest.approx(real.mean().item(), rel=1e-6)
    metrics = task.reduce(task.stats(logits, batch))
    assert metrics["loss"] == pytest.approx(real.mean().item(), rel=1e-6)
    assert metrics["bpc"] == pytest.approx(real.mean().item() / math.log(2), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(real.mean().item()), rel=1e-6)
    # garbage logits at padded positions change nothing
    logits[0, 3:] = 1e4 * torch.randn(2, 7)
    assert task.reduce(task.stats(logits, batch))["loss"] == pytest.approx(metrics["loss"], rel=1e-9)


def test_token_statistics_add_up_over_batches():
    task = TokenCrossEntropy()
    logits, target = torch.randn(4, 6, 5), torch.randint(0, 5, (4, 6))
    whole = task.stats(logits, {"target": target})
    parts = task.stats(logits[:1], {"target": target[:1]}) + task.stats(logits[1:], {"target": target[1:]})
    assert torch.allclose(whole, parts)


def test_label_smoothing_changes_the_loss_not_the_reported_cross_entropy():
    logits, target = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    plain, smooth = TokenCrossEntropy(), TokenCrossEntropy(label_smoothing=0.1)
    assert smooth.loss(logits, {"target": target}) != plain.loss(logits, {"target": target})
    assert smooth.reduce(smooth.stats(logits, {"target": target})) == plain.reduce(
        plain.stats(logits, {"target": target})
    )


def test_classification_label_smoothing_changes_the_loss_not_the_reported_metrics():
    logits, target = torch.randn(6, 4), torch.randint(0, 4, (6,))
    plain, smooth = Classification(), Classification(label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(smooth.loss(logits, {"target": target}), expected)
    assert smooth.loss(logits, {"target": target}) != plain.loss(logits, {"target": target})
    batch = {"target": target}
    assert smooth.reduce(smooth.stats(logits, batch)) == plain.reduce(plain.stats(logits, batch))
    built = build_objective({"_target_": "plmu.train.objectives.Classification", "label_smoothing": 0.2})
    assert built.label_smoothing == 0.2
    for bad in (1, -0.1, "0.1", True):
        with pytest.raises(ConfigError, match=r"task.objective.label_smoothing must be a number in \[0, 1\)"):
            Classification(label_smoothing=bad)


def test_objectives_by_target_and_by_name():
    assert isinstance(build_objective({"_target_": "plmu.train.objectives.Classification"}), Classification)
    built = build_objective({"_target_": "plmu.train.objectives.TokenCrossEntropy", "metric": "perplexity"})
    assert built.metric == "perplexity" and not built.higher_is_better
    assert isinstance(build_objective("regression"), Regression)  # the name older checkpoints recorded


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ranking", r"task.objective must be one of \['classification', 'regression', 'token_cross_entropy'\]"),
        ({"_target_": "plmu.train.objectives.TokenCrossEntropy", "metric": "bleu"}, r"task.objective.metric must be"),
        ({"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1}, r"is not a plmu objective"),
    ],
)
def test_bad_objectives_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_objective(spec)


@pytest.mark.parametrize("task", [Classification(), Regression(), TokenCrossEntropy()])
def test_statistics_stay_on_the_batch_device(task):
    """Found on a GPU: counts made on the CPU could not be stacked with CUDA sums. The meta device stands in for any
    device that is not the CPU, so this runs everywhere."""
    if isinstance(task, Classification):
        outputs, target = torch.zeros(4, 10, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
    elif isinstance(task, Regression):
        outputs = torch.zeros(4, 3, 1, device="meta")
        target = outputs.clone()
    else:
        outputs, target = torch.zeros(4, 3, 5, device="meta"), torch.zeros(4, 3, dtype=torch.long, device="meta")
    assert task.stats(outputs, {"target": target}).device.type == "meta"
