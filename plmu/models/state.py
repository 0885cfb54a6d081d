"""One set of helpers for every backbone's recurrent state: detach it, reorder it along the batch, blend two.

A state is whatever a backbone's ``initial_state(batch)`` returns: a tensor, or tuples, lists, named tuples and dicts
of them, nested (non-tensor leaves such as None or ints pass through unchanged):

    ParallelLMUStack      list per layer of m (batch, memory_d·order)                       batch dim 0
    OriginalLMUStack      list per layer of (h (batch, hidden), m (batch, memory_d·order))  batch dim 0
    TransformerBackbone   TransformerState: keys/values per layer (batch, heads, t, head_dim),
                          valid (batch, t)                                                   batch dim 0
    LSTMEncoder           (h, c), each (layers, batch, hidden): nn.LSTM's own layout         batch dim 1

The convention: every tensor of one backbone's state has its batch at the same dimension, ``state_batch_dim(module)``:
the module's ``state_batch_dim`` attribute, 0 when it has none. Only the LSTM says 1; it keeps nn.LSTM's layout
because that is what nn.LSTM takes and returns (transposing at every call would cost copies and break the bit-identical
no-mask path). A wrapper around a backbone (a model = adapter → backbone → head) must expose its backbone's value.

Language models carry the state across chunks (``detach_state`` cuts the graph between them, truncated BPTT); beam
search reorders it after each step (``select_state`` with the surviving beams' parent indices).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


def state_batch_dim(module: nn.Module) -> int:
    """The dimension of the batch in every tensor of ``module``'s state (see the module docstring)."""
    return int(getattr(module, "state_batch_dim", 0))


def map_state(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor in ``state``; the nesting (tuple, named tuple, list, dict) is kept."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a named tuple takes its fields positionally
        return type(state)(*(map_state(s, fn) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(s, fn) for s in state)
    if isinstance(state, dict):
        return type(state)((key, map_state(s, fn)) for key, s in state.items())
    return state


def detach_state(state: Any) -> Any:
    """The same state cut from the autograd graph (shares storage; no copy)."""
    return map_state(state, Tensor.detach)


def select_state(state: Any, index: Tensor, batch_dim: int = 0) -> Any:
    """Rows ``index`` (batch',) of every tensor along ``batch_dim``: reorder, repeat or drop batch entries.

    Beam search: ``select_state(state, parents, state_batch_dim(model))`` where ``parents[i]`` is the beam that
    beam i continues. ``index`` may repeat rows (a beam with two children) and have another length than the batch.
    """
    if index.dim() != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(f"index must be a 1-D integer tensor (batch',), got {index.dtype} {tuple(index.shape)}")
    return map_state(state, lambda s: s.index_select(batch_dim, index.to(s.device)))


def where_state(keep_new: Tensor, new: Any, old: Any, batch_dim: int = 0) -> Any:
    """``new`` where ``keep_new`` (batch,) is True, else ``old``: how a padded step leaves the state as it was.

    ``new`` and ``old`` must have the same nesting; their tensors the same shapes.
    """
    if keep_new.dim() != 1 or keep_new.dtype != torch.bool:
        raise ValueError(f"keep_new must be a bool tensor (batch,), got {keep_new.dtype} {tuple(keep_new.shape)}")
    olds = iter(_leaves(old))

    def blend(n: Tensor) -> Tensor:
        o = next(olds)
        shape = [1] * n.dim()
        shape[batch_dim] = -1  # keep_new broadcast along the batch dimension only
        return torch.where(keep_new.view(shape), n, o)

    return map_state(new, blend)


def _leaves(state: Any) -> list[Tensor]:
    """The tensors of ``state`` in the order ``map_state`` visits them."""
    leaves: list[Tensor] = []

    def collect(s: Tensor) -> Tensor:
        leaves.append(s)
        return s

    map_state(state, collect)
    return leaves
