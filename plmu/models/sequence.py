"""``SequenceModel``: an encoder and a linear head, predicting at the last step or at every step.

    x (batch, T, input_size) → encoder → (batch, [T,] hidden) → head → (batch, [T,] output_size)

psMNIST reads only the last step (``per_step=False``: the parallel LMU then needs m_T alone, one matmul);
Mackey-Glass predicts at every step (``per_step=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from plmu.layers import ParallelLMUStack
from plmu.models.encoders import LSTMEncoder
from plmu.models.sizing import count_parameters
from plmu.original import OriginalLMUStack


def _inputs(batch: Mapping[str, Tensor] | Tensor) -> Tensor:
    """A task's batch is a dict (``inputs``, ``target``, ...); a bare tensor is the inputs."""
    return batch["inputs"] if isinstance(batch, Mapping) else batch


class SequenceModel(nn.Module):
    def __init__(self, encoder: nn.Module, hidden_size: int, output_size: int, per_step: bool) -> None:
        super().__init__()
        self.encoder, self.head, self.per_step = encoder, nn.Linear(hidden_size, output_size), per_step

    def forward(self, batch: Mapping[str, Tensor] | Tensor) -> Tensor:
        """batch["inputs"] (or a tensor) x (batch, T, input_size) → (batch, output_size), or (batch, T,
        output_size) when per_step."""
        return self.head(self.encoder(_inputs(batch)))

    def initial_state(self, batch: int) -> Any:
        return self.encoder.initial_state(batch)

    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step as an RNN: x_t (batch, input_size) → (prediction (batch, output_size), new state)."""
        hidden, state = self.encoder.step(x_t, state)
        return self.head(hidden), state

    def forward_recurrent(self, batch: Mapping[str, Tensor] | Tensor) -> Tensor:
        """The same outputs as ``forward``, computed one step at a time through ``step``."""
        x = _inputs(batch)
        state, outputs = self.initial_state(x.shape[0]), []
        for t in range(x.shape[1]):
            y_t, state = self.step(x[:, t], state)
            if self.per_step:
                outputs.append(y_t)
        return torch.stack(outputs, dim=1) if self.per_step else y_t

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)


def plmu_model(
    input_size: int,
    output_size: int,
    per_step: bool,
    hidden_size: int,
    num_layers: int = 1,
    **layer_kwargs,
) -> SequenceModel:
    """The paper's parallel LMU: a ``ParallelLMUStack`` (order, theta, memory_d, f1, f2, mode, ...) and a head."""
    encoder = ParallelLMUStack(input_size, hidden_size, num_layers, return_sequences=per_step, **layer_kwargs)
    return SequenceModel(encoder, hidden_size, output_size, per_step)


def original_lmu_model(
    input_size: int, output_size: int, per_step: bool, hidden_size: int, num_layers: int = 1, **cell_kwargs
) -> SequenceModel:
    """The 2019 LMU baseline (order, theta, memory_d, init, bias, ...), run step by step."""
    encoder = OriginalLMUStack(input_size, hidden_size, num_layers, return_sequences=per_step, **cell_kwargs)
    return SequenceModel(encoder, hidden_size, output_size, per_step)


def lstm_model(
    input_size: int, output_size: int, per_step: bool, hidden_size: int, num_layers: int = 1
) -> SequenceModel:
    """The LSTM baseline."""
    encoder = LSTMEncoder(input_size, hidden_size, num_layers, return_sequences=per_step)
    return SequenceModel(encoder, hidden_size, output_size, per_step)
