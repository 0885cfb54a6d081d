from typing import NamedTuple

import pytest
import torch
from conftest import assert_close_to

from plmu.layers import ParallelLMUStack
from plmu.models.encoders import LSTMEncoder
from plmu.models.s4d import S4DStack
from plmu.models.state import detach_state, map_state, select_state, state_batch_dim, where_state
from plmu.models.transformer import TransformerBackbone
from plmu.original import OriginalLMUStack

IN = 4
BACKBONES = {
    "lstm": lambda: LSTMEncoder(IN, 6, 2),
    "plmu": lambda: ParallelLMUStack(IN, 6, 2, order=5, theta=8.0),
    "original_lmu": lambda: OriginalLMUStack(IN, 6, 2, order=5, theta=8.0),
    "transformer": lambda: TransformerBackbone(IN, 2, 2, dim_feedforward=8, causal=True),
    "s4d": lambda: S4DStack(IN, 6, 2, state_size=4),
}


class Pair(NamedTuple):
    first: torch.Tensor
    second: list


def test_batch_dims():
    assert state_batch_dim(LSTMEncoder(IN, 6)) == 1
    assert state_batch_dim(ParallelLMUStack(IN, 6, 1, order=5, theta=8.0)) == 0
    assert state_batch_dim(TransformerBackbone(IN, 1, 2, causal=True)) == 0


def test_map_state_keeps_the_nesting():
    state = {"a": (torch.ones(2), [torch.zeros(3), None]), "b": Pair(torch.ones(1), [torch.ones(2)]), "n": 3}
    doubled = map_state(state, lambda s: 2 * s)
    assert isinstance(doubled["a"], tuple) and isinstance(doubled["a"][1], list) and isinstance(doubled["b"], Pair)
    assert doubled["a"][1][1] is None and doubled["n"] == 3
    assert torch.equal(doubled["b"].second[0], torch.full((2,), 2.0))


@pytest.mark.parametrize("family", BACKBONES)
def test_detach_state(family):
    model = BACKBONES[family]()
    _, state = model(torch.randn(3, 5, IN), model.initial_state(3))
    leaves = []
    map_state(state, leaves.append)
    assert any(s.requires_grad for s in leaves)
    detached = []
    map_state(detach_state(state), detached.append)
    assert not any(s.requires_grad for s in detached)
    assert all(torch.equal(a, b) and a.data_ptr() == b.data_ptr() for a, b in zip(leaves, detached, strict=True))


@pytest.mark.parametrize("family", BACKBONES)
def test_select_state_then_continue_equals_running_the_selected_rows(family):
    """Beam search: reorder (and repeat) the batch mid-sequence; the continuation must be the selected rows'."""
    model = BACKBONES[family]().double().eval()
    x = torch.randn(3, 9, IN, dtype=torch.float64)
    index = torch.tensor([2, 0, 0, 1])
    _, state = model(x[:, :5], model.initial_state(3))
    state = select_state(state, index, state_batch_dim(model))
    outputs = []
    for t in range(5, 9):
        y_t, state = model.step(x[index, t], state)
        outputs.append(y_t)
    reference = model(x[index])[:, 5:]
    assert_close_to(torch.stack(outputs, 1), reference, atol=1e-10)


def test_select_state_batch_dim_and_index_checks():
    h = torch.arange(12.0).view(2, 3, 2)  # (layers, batch, hidden)
    assert torch.equal(select_state((h,), torch.tensor([2, 0]), batch_dim=1)[0], h[:, [2, 0]])
    with pytest.raises(ValueError, match="index"):
        select_state((h,), torch.tensor([0.0]))


def test_where_state_blends_along_the_batch_dim():
    new = (torch.ones(2, 3, 4), torch.ones(2, 3, 4))
    old = (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    keep = torch.tensor([True, False, True])
    blended = where_state(keep, new, old, batch_dim=1)
    assert torch.equal(blended[0][:, :, 0], keep.double().expand(2, 3).float())
    with pytest.raises(ValueError, match="keep_new"):
        where_state(keep.long(), new, old)
