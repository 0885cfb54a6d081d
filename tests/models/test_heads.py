import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close_to

from plmu.memory import last_valid_index
from plmu.models.heads import (
    LastStepHead,
    MaxPoolHead,
    MeanPoolHead,
    PairHead,
    PerStepHead,
    last_valid,
    masked_max,
    masked_mean,
    pair_features,
    pool,
)

# Row 0 right-padded (3 real steps of 5), row 1 left-padded (2 real), row 2 unpadded, row 3 all padding.
MASK = torch.tensor(
    [
        [True, True, True, False, False],
        [False, False, False, True, True],
        [True, True, True, True, True],
        [False, False, False, False, False],
    ]
)


def test_last_valid_index_left_and_right_padding():
    assert last_valid_index(MASK).tolist() == [2, 4, 4, 4]  # an all-padding row reads the last position


def test_last_valid_reads_the_last_real_step():
    h = torch.randn(4, 5, 3)
    picked = last_valid(h, MASK)
    assert torch.equal(picked, torch.stack([h[0, 2], h[1, 4], h[2, 4], h[3, 4]]))
    assert torch.equal(last_valid(h), h[:, -1])


def test_masked_mean_equals_mean_of_unpadded_example():
    h = torch.randn(4, 5, 3)
    h[~MASK] = float("nan")  # whatever a backbone leaves at padded steps must not leak in
    mean = masked_mean(h, MASK)
    assert_close_to(mean[0], h[0, :3].mean(0), atol=1e-6)
    assert_close_to(mean[1], h[1, 3:].mean(0), atol=1e-6)
    assert_close_to(mean[2], h[2].mean(0), atol=1e-6)
    assert torch.equal(mean[3], torch.zeros(3))  # an all-padding row: zeros, not NaN
    assert_close_to(masked_mean(h[2:3]), h[2:3].mean(1), atol=0.0)


def test_masked_max_is_the_max_of_the_unpadded_example():
    h = torch.randn(4, 5, 3)
    h[~MASK] = 1e9  # whatever a backbone leaves at padded steps must not win the max
    pooled = masked_max(h, MASK)
    assert torch.equal(pooled[0], h[0, :3].amax(0)) and torch.equal(pooled[1], h[1, 3:].amax(0))
    assert torch.equal(pooled[2], h[2].amax(0))
    assert torch.equal(pooled[3], torch.zeros(3))  # an all-padding row: zeros, not the dtype's lowest
    assert torch.equal(masked_max(h[2:3]), h[2:3].amax(1))
    head = MaxPoolHead(3, 2)
    assert torch.equal(head(h, MASK), F.linear(pooled, head.weight, head.bias))
    assert pool(h, MASK, "max").shape == (4, 3)


def test_masked_max_gradient_reaches_the_maximal_real_step_only():
    h = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        h[~MASK] = 1e9  # padding never wins, so never receives a gradient
    weights = torch.randn(4, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((masked_max(h, MASK) * weights).sum(), h)
    expected = torch.zeros_like(h)
    for row, steps in ((0, range(0, 3)), (1, range(3, 5)), (2, range(0, 5))):
        index = torch.tensor(list(steps))[h[row, list(steps)].argmax(0)]
        expected[row, index, torch.arange(3)] = weights[row]
    assert torch.equal(grad, expected)  # row 3 (all padding) pooled to zeros: no gradient anywhere
    # without a mask the same as amax's (no ties among random values), through the same function
    h2 = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    (g_ours,) = torch.autograd.grad(masked_max(h2, torch.ones(2, 6, dtype=torch.bool)).sum(), h2)
    (g_amax,) = torch.autograd.grad(h2.amax(1).sum(), h2)
    assert torch.equal(g_ours, g_amax)


def test_last_step_head_and_mean_pool_head_apply_their_linear():
    h = torch.randn(4, 5, 3)
    last, mean = LastStepHead(3, 2), MeanPoolHead(3, 2)
    assert torch.equal(last(h, MASK), F.linear(last_valid(h, MASK), last.weight, last.bias))
    assert torch.equal(
        last(h[:, -1]), F.linear(h[:, -1], last.weight, last.bias)
    )  # from a backbone with return_sequences=False
    assert torch.equal(mean(h, MASK), F.linear(masked_mean(h, MASK), mean.weight, mean.bias))
    assert mean(h).shape == (4, 2)


def test_per_step_head_shapes():
    head = PerStepHead(3, 2)
    assert head(torch.randn(4, 5, 3), MASK).shape == (4, 5, 2)
    assert head(torch.randn(4, 3)).shape == (4, 2)


def test_mask_is_checked():
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        last_valid(torch.randn(4, 5, 3), MASK.long())
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        masked_mean(torch.randn(4, 6, 3), MASK)


def test_pair_features_construction():
    a = torch.tensor([[1.0, -2.0]])
    b = torch.tensor([[3.0, 0.5]])
    assert pair_features(a, b).tolist() == [[1.0, -2.0, 3.0, 0.5, 2.0, 2.5, 3.0, -1.0]]
    # Swapping a and b swaps the first two blocks and leaves the symmetric |a − b| and a · b alone.
    swapped = pair_features(b, a)
    assert torch.equal(swapped[:, :4], torch.cat([b, a], 1))
    assert torch.equal(swapped[:, 4:], pair_features(a, b)[:, 4:])
    with pytest.raises(ValueError, match="a and b"):
        pair_features(a, torch.randn(1, 3))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_pair_head_is_an_mlp_on_pair_features(act):
    head = PairHead(3, 4, mlp_hidden=6, act=act, dropout=0.5).eval()
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    first, nonlinearity, _, second = head.mlp
    expected = second(nonlinearity(first(pair_features(a, b))))
    assert torch.equal(head(a, b), expected)
    assert head(a, b).shape == (5, 4)
    with pytest.raises(ValueError, match="dropout"):
        PairHead(3, 4, 6, dropout=1.0)
