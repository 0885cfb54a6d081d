"""Baseline encoders with the streaming protocol of ``ParallelLMUStack``: the 2019 LMU stack and an LSTM."""

from __future__ import annotations

from torch import Tensor, nn

from plmu.original import OriginalLMU

LSTMState = tuple[Tensor, Tensor]


class OriginalLMUStack(nn.Module):
    """``num_layers`` original (2019) LMU layers: x (batch, T, input_size) → (batch, T, hidden) or (batch, hidden)."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, *, return_sequences: bool = True, **layer_kwargs
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            OriginalLMU(
                input_size if i == 0 else hidden_size,
                hidden_size,
                return_sequences=return_sequences or i < num_layers - 1,
                **layer_kwargs,
            )
            for i in range(num_layers)
        )

    def forward(
        self, x: Tensor, state: list | None = None, return_state: bool | None = None
    ) -> Tensor | tuple[Tensor, list]:
        return_state = state is not None if return_state is None else return_state
        states = []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if state is None else state[i], return_state=True)
            states.append(layer_state)
        return (x, states) if return_state else x

    def initial_state(self, batch: int) -> list:
        return [layer.initial_state(batch) for layer in self.layers]

    def step(self, x_t: Tensor, state: list) -> tuple[Tensor, list]:
        states = []
        for layer, layer_state in zip(self.layers, state, strict=True):
            x_t, layer_state = layer.step(x_t, layer_state)
            states.append(layer_state)
        return x_t, states


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
