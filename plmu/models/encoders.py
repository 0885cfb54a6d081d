"""Recurrent encoders (``nn.LSTM``; ``nn.GRU`` in :mod:`plmu.models.gru`) with the streaming protocol of
``ParallelLMUStack`` (the 2019 LMU's is ``OriginalLMUStack``). :class:`RecurrentEncoder` holds the masking; a family
names its torch module and its state's layout.

Padding (``mask`` (batch, time) bool, True at real steps): padded steps do not touch the state, so a padded batch gives
each example's unpadded result. Each row's real steps must be one block; left and right padding both work:

    right padding   x x x . .   run as it is
    left padding    . . x x x   rolled left to x x x . . first, run the same way, and the outputs rolled back

Once every row's real steps come first, the outputs at real steps do not depend on the padding after them, so the
sequence runs unpacked through the module's fused loop (on a CPU several times faster than a packed sequence, whose
batch shrinks step by step). Only the final state, which must stop at each row's last real step, needs the packed
run: with ``return_state`` (a carried state). Outputs at padded steps are zero. :func:`left_aligned`,
:func:`roll_back` and :func:`last_real` serve any backbone that pads this way (S4D uses them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from plmu.checks import flag, positive_int
from plmu.memory import check_mask
from plmu.models.state import where_state

LSTMState = tuple[Tensor, Tensor]


class RecurrentEncoder(nn.Module):
    """A batch-first ``torch.nn`` RNN (class attribute ``rnn_class``, kept as the attribute ``rnn_name``: its
    tensors' names) with the streaming protocol; subclasses say how their state is laid out (``initial_state``,
    ``top_hidden``)."""

    state_batch_dim = 1  # torch's RNN state layout (layers, batch, hidden); see plmu.models.state
    rnn_class: type[nn.RNNBase] = nn.LSTM
    rnn_name = "lstm"

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, *, return_sequences: bool = True
    ) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        positive_int("num_layers", num_layers)
        flag("return_sequences", return_sequences)
        setattr(self, self.rnn_name, self.rnn_class(input_size, hidden_size, num_layers, batch_first=True))
        self.return_sequences = return_sequences

    @property
    def rnn(self) -> nn.RNNBase:
        return getattr(self, self.rnn_name)

    def top_hidden(self, state: Any) -> Tensor:
        """The top layer's hidden output (batch, hidden) held in ``state``."""
        raise NotImplementedError

    def initial_state(self, batch: int) -> Any:
        raise NotImplementedError

    def forward(
        self, x: Tensor, state: Any = None, return_state: bool | None = None, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Any]:
        """x (batch, time, input) → (batch, time, hidden), or the last real step's (batch, hidden).

        ``state``: before the first step, see ``initial_state``; the final one is returned with ``return_state``
        (default: when a state is given). ``mask`` (batch, time) bool: see the module docstring.
        """
        return_state = state is not None if return_state is None else return_state
        if mask is None:
            out, state = self.rnn(x, state)
            out = out if self.return_sequences else out[:, -1]
        elif return_state:
            out, state = self._forward_masked(x, state, mask)
            out = out if self.return_sequences else self.top_hidden(state)  # after the last real step
        else:
            out = self._outputs_masked(x, state, mask)
            out = out if self.return_sequences else last_real(out, mask)
        return (out, state) if return_state else out

    def _outputs_masked(self, x: Tensor, state: Any, mask: Tensor) -> Tensor:
        """The outputs of the masked forward without its final state: every row left-aligned, run unpacked (the
        padding after a row's real steps cannot reach them), zeroed at padding and rolled back."""
        aligned, lengths, start, steps = left_aligned(x, mask)
        out, _ = self.rnn(aligned, state)
        return roll_back(out.masked_fill(~(steps < lengths[:, None])[..., None], 0.0), start, steps)

    def _forward_masked(self, x: Tensor, state: Any, mask: Tensor) -> tuple[Tensor, Any]:
        batch, time = x.shape[:2]
        aligned, lengths, start, steps = left_aligned(x, mask)
        state = self.initial_state(batch) if state is None else state
        # pack_padded_sequence refuses empty rows: an all-padding row runs one step, undone below.
        packed = pack_padded_sequence(aligned, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, new_state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=time)  # zeros after each row's length
        new_state = where_state(lengths > 0, new_state, state, batch_dim=self.state_batch_dim)
        out = out.masked_fill(~(steps < lengths[:, None])[..., None], 0.0)  # the empty rows' one step
        return roll_back(out, start, steps), new_state

    def step(self, x_t: Tensor, state: Any, mask_t: Tensor | None = None) -> tuple[Tensor, Any]:
        """One step: x_t (batch, input), mask_t (batch,) bool or None → (h_t (batch, hidden), new state).

        Where mask_t is False the state is carried unchanged and the output is zero, as in the masked ``forward``.
        """
        out, new_state = self.rnn(x_t[:, None], state)
        if mask_t is None:
            return out[:, 0], new_state
        new_state = where_state(mask_t, new_state, state, batch_dim=self.state_batch_dim)
        return out[:, 0].masked_fill(~mask_t[:, None], 0.0), new_state


class LSTMEncoder(RecurrentEncoder):
    """``nn.LSTM`` (batch first) with the same protocol; the state is (h, c), each (layers, batch, hidden)."""

    rnn_class = nn.LSTM
    rnn_name = "lstm"

    def top_hidden(self, state: LSTMState) -> Tensor:
        return state[0][-1]

    def initial_state(self, batch: int) -> LSTMState:
        weight = self.lstm.weight_hh_l0
        zeros = weight.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)
        return zeros, zeros.clone()


def last_real(out: Tensor, mask: Tensor) -> Tensor:
    """out (batch, time, hidden) → each row's output at its last real step (batch, hidden); zeros for an empty row,
    as the packed path gives (its state is the initial one, zeros)."""
    lengths = mask.sum(dim=1)
    last = torch.where(mask, torch.arange(mask.shape[1], device=mask.device), -1).amax(dim=1).clamp(min=0)
    picked = out[torch.arange(out.shape[0], device=out.device), last]
    return picked.masked_fill((lengths == 0)[:, None], 0.0)


def _block_start(mask: Tensor, lengths: Tensor) -> Tensor:
    """The first real step of each row (batch,) long, 0 for an empty row; a ValueError unless the real steps are one
    block per row (left or right padding)."""
    steps = torch.arange(mask.shape[1], device=mask.device)
    start = torch.where(mask, steps, mask.shape[1]).amin(dim=1).clamp(max=mask.shape[1] - 1)
    start = torch.where(lengths > 0, start, 0)
    block = (steps >= start[:, None]) & (steps < (start + lengths)[:, None])
    if not torch.equal(block, mask):
        raise ValueError("mask must have one block of real steps per row (left or right padding), not holes")
    return start


def left_aligned(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x with every row rolled left by its first real step, lengths (batch,), those starts (batch,), arange(T)).

    A right-padded row has start 0 and stays put; :func:`roll_back` is the inverse."""
    batch, time = x.shape[:2]
    check_mask(mask, batch, time)
    lengths = mask.sum(dim=1)
    start = _block_start(mask, lengths)
    steps = torch.arange(time, device=x.device)
    gather = ((steps + start[:, None]) % time)[..., None].expand_as(x)
    return x.gather(1, gather), lengths, start, steps


def roll_back(out: Tensor, start: Tensor, steps: Tensor) -> Tensor:
    """Output step t of row b is aligned step t − start[b]: the rows back in place (zeros land on the padding)."""
    scatter = ((steps - start[:, None]) % len(steps))[..., None].expand_as(out)
    return out.gather(1, scatter)
