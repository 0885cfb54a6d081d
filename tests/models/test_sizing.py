import pytest
import torch

from plmu.layers import ParallelLMUStack
from plmu.models.encoders import LSTMEncoder
from plmu.models.sizing import count_parameters, match_parameters
from plmu.models.transformer import TransformerBackbone


def lstm(hidden: int) -> LSTMEncoder:
    return LSTMEncoder(1, hidden)


def lmu(hidden: int) -> ParallelLMUStack:
    return ParallelLMUStack(1, hidden, 1, order=468, theta=784.0)


def transformer(d_model: int) -> TransformerBackbone:
    return TransformerBackbone(d_model, 2, 4)


def test_match_parameters_returns_the_closest_width():
    assert match_parameters(lstm, count_parameters(LSTMEncoder(1, 17)), range(1, 64)) == 17
    counts = {h: count_parameters(LSTMEncoder(1, h)) for h in range(1, 64)}
    target = (counts[20] + counts[21]) // 2 + 1  # just past halfway: 21 is closer
    assert match_parameters(lstm, target, range(1, 64)) == 21
    assert match_parameters(lstm, target, range(1, 21)) == 20  # the closest among those tried


def test_meta_device_counts_equal_real_ones_and_build_no_storage():
    assert match_parameters(lmu, 162_622, range(300, 400)) == 346  # the paper's psMNIST model, less its head
    real = count_parameters(TransformerBackbone(32, 2, 4))
    with torch.device("meta"):
        meta = TransformerBackbone(32, 2, 4)
    assert count_parameters(meta) == real and next(meta.parameters()).is_meta
    assert match_parameters(transformer, 30_000, range(4, 129, 4), device="cpu") == (
        match_parameters(transformer, 30_000, range(4, 129, 4))
    )


def test_transformer_matched_to_plmu_is_within_a_width_step():
    target = count_parameters(ParallelLMUStack(1, 346, 1, order=468, theta=784.0))
    d = match_parameters(transformer, target, range(4, 257, 4))
    with torch.device("meta"):
        sizes = [count_parameters(TransformerBackbone(w, 2, 4)) for w in (d - 4, d, d + 4)]
    assert sizes[0] <= target <= sizes[2]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="widths"):
        match_parameters(lstm, 100, [])
    with pytest.raises(ValueError, match="target"):
        match_parameters(lstm, 0, [1, 2])
