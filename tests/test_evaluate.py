"""plmu.evaluate: the metric of a model over a split, as an RNN or in parallel, and the recurrent-vs-parallel check."""

from functools import partial

import pytest
import torch

from plmu.data.splits import TensorSplit
from plmu.errors import OutOfMemoryError
from plmu.evaluate import evaluate
from plmu.models.sequence import sequence_model
from plmu.train.objectives import Classification, Regression

plmu_model = partial(sequence_model, backbone="plmu")


def classifier() -> torch.nn.Module:
    model = plmu_model(input_size=1, output_size=3, per_step=False, hidden_size=6, order=4, theta=10.0)
    return model.double().eval()


def split(rows: int = 10, steps: int = 12) -> TensorSplit:
    return TensorSplit(torch.randn(rows, steps, 1, dtype=torch.float64), torch.randint(0, 3, (rows,)))


@pytest.mark.parametrize("mode", ["recurrent", "parallel"])
def test_the_metric_is_the_models_accuracy_in_either_mode(mode):
    model, data = classifier(), split()
    result = evaluate(model, data, Classification(), mode=mode, batch_size=4)
    with torch.no_grad():
        expected = (model({"inputs": data.x}).argmax(-1) == data.y).double().mean().item()
    assert result["metric"] == "accuracy" and result["value"] == pytest.approx(expected)
    assert result["samples"] == 10 and result["batches"] == 3
    assert result["time_steps_per_second"] > 0 and result["samples_per_second"] > 0
    # float64: the RNN equals the parallel forward to rounding; recurrent mode checks every batch, parallel the first
    assert result["max_abs_difference_recurrent_vs_parallel"] < 1e-12
    assert result["batches_compared_recurrent_vs_parallel"] == (3 if mode == "recurrent" else 1)


def test_a_limit_scores_only_the_first_batches():
    result = evaluate(classifier(), split(), Classification(), batch_size=4, limit_batches=2)
    assert result["samples"] == 8 and result["batches"] == 2


def test_a_per_step_model_is_scored_at_every_step():
    model = plmu_model(input_size=1, output_size=1, per_step=True, hidden_size=5, order=3, theta=4.0).double().eval()
    data = TensorSplit(torch.randn(4, 9, 1, dtype=torch.float64), torch.randn(4, 9, 1, dtype=torch.float64))
    result = evaluate(model, data, Regression(), batch_size=4)
    with torch.no_grad():
        mse = ((model({"inputs": data.x}) - data.y) ** 2).mean().item()
    assert result["metrics"]["mse"] == pytest.approx(mse)
    assert result["max_relative_difference_recurrent_vs_parallel"] < 1e-12


def test_a_difference_between_the_two_forms_is_reported():
    model = classifier()
    original = model.forward_recurrent
    model.forward_recurrent = lambda batch: original(batch) + 0.5  # an RNN that disagrees with the parallel form
    result = evaluate(model, split(), Classification(), batch_size=5)
    assert result["max_abs_difference_recurrent_vs_parallel"] == pytest.approx(0.5)


def test_bad_mode_and_out_of_memory_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate(classifier(), split(), Classification(), mode="stream", batch_size=4)

    def out_of_memory(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    model = classifier()
    model.forward_recurrent = out_of_memory
    with pytest.raises(OutOfMemoryError, match=r"^out of memory on cpu at batch size 4$"):
        evaluate(model, split(), Classification(), batch_size=4)
