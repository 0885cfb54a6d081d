"""An LSTM encoder with the streaming protocol of ``ParallelLMUStack`` (the 2019 LMU's is ``OriginalLMUStack``)."""

from __future__ import annotations

from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]


class LSTMEncoder(nn.Module):
    """``nn.LSTM`` (batch first) with the same protocol; the state is (h, c), each (layers, batch, hidden)."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, *, return_sequences: bool = True
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.return_sequences = return_sequences

    def forward(
        self, x: Tensor, state: LSTMState | None = None, return_state: bool | None = None
    ) -> Tensor | tuple[Tensor, LSTMState]:
        return_state = state is not None if return_state is None else return_state
        out, state = self.lstm(x, state)
        out = out if self.return_sequences else out[:, -1]
        return (out, state) if return_state else out

    def initial_state(self, batch: int) -> LSTMState:
        weight = self.lstm.weight_hh_l0
        zeros = weight.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)
        return zeros, zeros.clone()

    def step(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        out, state = self.lstm(x_t[:, None], state)
        return out[:, 0], state
