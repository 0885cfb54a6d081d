"""The original LMU (Voelker, Kajić & Eliasmith, NeurIPS 2019): the baseline the parallel LMU is compared with.

    u_t = e_xᵀ x_t + e_hᵀ h_{t−1} + e_mᵀ m_{t−1}
    m_t = Ā m_{t−1} + B̄ u_t
    h_t = tanh(W_x x_t + W_h h_{t−1} + W_m m_t)

u depends on h_{t−1} and m_{t−1}, so this can only run step by step. Ā and B̄ come from the same
:class:`LegendreMemory` as the parallel layer's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from plmu.checks import flag, one_of, positive_int
from plmu.layers import SequenceStack
from plmu.memory import LegendreMemory

INITS = ("2019", "psmnist")


def _lecun_uniform_(weight: Tensor) -> None:
    """Keras' lecun_uniform: U(±sqrt(3 / fan_in))."""
    limit = math.sqrt(3.0 / weight.shape[1])
    nn.init.uniform_(weight, -limit, limit)


def _glorot_normal_(weight: Tensor) -> None:
    """Keras' glorot_normal: a normal truncated at 2σ, rescaled so its std is sqrt(2 / (fan_in + fan_out))."""
    std = math.sqrt(2.0 / sum(weight.shape)) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class OriginalLMUCell(nn.Module):
    """One step of the 2019 LMU. State: (h (batch, hidden), m (batch, memory_d·order)).

    Args:
        init: ``"2019"``, the 2019 code's initialisers (e_x, e_h lecun_uniform; e_m zero; W_x, W_h, W_m
            glorot_normal), or ``"psmnist"``, its psMNIST setting (e_x = 1; e_h = e_m = W_x = W_h = 0; W_m glorot).
        bias: add a bias inside the tanh (the 2019 cell has none).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        order: int,
        theta: float,
        memory_d: int = 1,
        *,
        init: str = "2019",
        bias: bool = False,
        discretizer: str = "zoh",
        trainable_theta: bool = False,
    ) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        one_of("init", init, INITS)
        flag("bias", bias)
        # LegendreMemory checks order, theta, memory_d, discretizer and trainable_theta.
        self.memory = LegendreMemory(order, theta, memory_d, discretizer, trainable_theta)
        memory_size = memory_d * order
        self.input_encoders = nn.Linear(input_size, memory_d, bias=False)  # e_x
        self.hidden_encoders = nn.Linear(hidden_size, memory_d, bias=False)  # e_h
        self.memory_encoders = nn.Linear(memory_size, memory_d, bias=False)  # e_m
        self.input_kernel = nn.Linear(input_size, hidden_size, bias=bias)  # W_x
        self.hidden_kernel = nn.Linear(hidden_size, hidden_size, bias=False)  # W_h
        self.memory_kernel = nn.Linear(memory_size, hidden_size, bias=False)  # W_m
        self.hidden_size = hidden_size
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str = "2019") -> None:
        one_of("init", init, INITS)
        if init == "psmnist":
            self.input_encoders.weight.fill_(1.0)
            for layer in (self.hidden_encoders, self.memory_encoders, self.input_kernel, self.hidden_kernel):
                layer.weight.zero_()
        else:
            _lecun_uniform_(self.input_encoders.weight)
            _lecun_uniform_(self.hidden_encoders.weight)
            self.memory_encoders.weight.zero_()
            _glorot_normal_(self.input_kernel.weight)
            _glorot_normal_(self.hidden_kernel.weight)
        _glorot_normal_(self.memory_kernel.weight)
        if self.input_kernel.bias is not None:
            self.input_kernel.bias.zero_()

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        weight = self.hidden_kernel.weight
        h = torch.zeros(batch, self.hidden_size, dtype=weight.dtype, device=weight.device)
        return h, self.memory.initial_state(batch, weight.dtype, weight.device)

    def forward(self, x_t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x_t (batch, input_size), state (h, m) → (h_t, (h_t, m_t))."""
        h, m = state
        u = self.input_encoders(x_t) + self.hidden_encoders(h) + self.memory_encoders(m)
        m, _ = self.memory.step(u, m)
        h = torch.tanh(self.input_kernel(x_t) + self.hidden_kernel(h) + self.memory_kernel(m.to(h.dtype)))
        return h, (h, m)


class OriginalLMU(nn.Module):
    """The 2019 LMU over a sequence: x (batch, T, input_size) → h (batch, T, hidden) or (batch, hidden).

    Runs the cell step by step (there is no parallel form); takes and returns the same (h, m) state.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        order: int,
        theta: float,
        memory_d: int = 1,
        *,
        return_sequences: bool = True,
        **cell_kwargs,
    ) -> None:
        super().__init__()
        flag("return_sequences", return_sequences)  # the cell checks the rest
        self.cell = OriginalLMUCell(input_size, hidden_size, order, theta, memory_d, **cell_kwargs)
        self.input_size, self.hidden_size, self.return_sequences = input_size, hidden_size, return_sequences

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        return self.cell.initial_state(batch)

    def step(self, x_t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return self.cell(x_t, state)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, return_state: bool | None = None
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (batch, time, input_size={self.input_size}), got shape {tuple(x.shape)}")
        return_state = state is not None if return_state is None else return_state
        state = self.initial_state(x.shape[0]) if state is None else state
        outputs = []
        for t in range(x.shape[1]):
            h, state = self.cell(x[:, t], state)
            if self.return_sequences:
                outputs.append(h)
        out = torch.stack(outputs, dim=1) if self.return_sequences else h
        return (out, state) if return_state else out


class OriginalLMUStack(SequenceStack):
    """A stack of :class:`OriginalLMU` layers (see :class:`SequenceStack` for the options)."""

    layer_class = OriginalLMU
