"""The parallel LMU layer of Chilkuri & Eliasmith (2021), eqs. 18-20, and a stack of them.

    u_t = f1(U_x x_t + b_u)                 input → memory channels   (batch, T, memory_d)
    m_t = Ā m_{t−1} + B̄ u_t                 the Legendre memory        (batch, T, memory_d·order)
    o_t = f2(W_m m_t + W_x x_t + b_o)       readout                    (batch, T, hidden)

No recurrence is nonlinear, so training runs in parallel. How the full sequence is computed (``mode``):

- ``"fused"``: W_m is folded into the kernel, K_s = W_m H_s, and x ↦ W_m m is one causal convolution from memory_d
  to hidden channels. The memory (batch, T, memory_d·order) is never materialised, nor is the big W_m matmul over
  every step done: the fastest full-sequence path for one memory (memory_d = 1) when hidden < order.
- ``"chunked"``/``"fft"``/``"direct"``: the memory is computed (see :class:`LegendreMemory`), then read out.
- ``"recurrent"``: the step loop (the reference, and what ``step`` does one sample at a time).
- ``"auto"``: ``fused`` for one memory (memory_d = 1) when hidden < order, else the memory path (measured the faster
  on a CPU and on an H100: experiments/speed/), which picks chunked/fft/direct by length, order and device type
  (:func:`plmu.chunked.choose_memory_path`). With several memories the fused kernel's per-frequency
  (memory_d × hidden) complex matmuls lose: 16 memories of order 16, hidden 251, batch 32 × 2,048 steps took 23.6 s
  a training step fused and 1.6 s by fft on one CPU thread (3.5x slower at 512 steps; 2 memories of order 64,
  hidden 100: 1.4x).

With ``return_sequences=False`` only o_T is computed, from m_T by one matmul (:meth:`LegendreMemory.last_state`).

Padding: ``forward(x, mask=...)`` takes a bool mask (batch, T), True at real steps. Padded steps feed u = 0 into the
memory in every mode (fused included: u is zeroed before the convolution), so the padding's values never reach a
real step's memory. The skip term and f2 are per step, so every real step's output is the unpadded example's, for
left and right padding alike; the outputs at padded steps are garbage (they see the padding's x and, after right
padding's real steps, the decaying memory): read a last step with :func:`last_valid`, which ``return_sequences=False``
and the returned state already do. In a stack every layer gets the mask, so a layer's garbage at padded steps never
enters the next layer's memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plmu.checks import flag, one_of, positive_int, probability
from plmu.chunked import chunked_readout
from plmu.conv import causal_conv, choose_conv
from plmu.dropout import Dropout
from plmu.memory import LegendreMemory, check_mask, last_valid, last_valid_index, mask_input

__all__ = ["ACTIVATIONS", "LAYER_MODES", "ParallelLMU", "ParallelLMUStack", "SequenceStack", "activation", "last_valid"]

LAYER_MODES = ("auto", "fused", "chunked", "fft", "direct", "recurrent")
READOUT_MULTIPLE = 16  # on a CPU the every-step readout's output width is padded to this (ParallelLMU._readout)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def _last_step(values: Tensor, mask: Tensor | None) -> Tensor:
    """values (batch, T, ...) → (batch, ...) at the last step: T − 1, or each example's last real step with a mask."""
    return values[:, -1] if mask is None else last_valid(values, mask)


def activation(name: str) -> nn.Module:
    """An element-wise nonlinearity by name (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS[one_of("activation", name, sorted(ACTIVATIONS))]()


class ParallelLMU(nn.Module):
    """One parallel LMU layer: x (batch, T, input_size) → o (batch, T, hidden_size), or (batch, hidden_size).

    Args:
        input_size, hidden_size: feature sizes of x and o.
        order, theta, memory_d, discretizer, trainable_theta: the memory (see :class:`LegendreMemory`).
        f1, f2: names of the nonlinearities on u and o (``ACTIVATIONS``); the paper leaves them open.
        skip: include the W_x x_t term (the input fed straight to the readout).
        dropout: dropout on o.
        memory_dropout: dropout on the memory m before the readout W_m (on m_T alone when only the last step is
            read): a regulariser of the readout's input. While training with it, full sequences take the memory path
            (``chunked``/``fft``/``direct``) instead of ``fused``, which never materialises m.
        return_sequences: every step's output (True) or only the last (False, via ``last_state``).
        mode: how the full sequence is computed, one of ``LAYER_MODES`` (see the module docstring).
    """

    supports_mask = True  # SequenceStack passes a padding mask only to layer classes that say they take one

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        order: int,
        theta: float,
        memory_d: int = 1,
        *,
        f1: str = "identity",
        f2: str = "relu",
        skip: bool = True,
        dropout: float = 0.0,
        memory_dropout: float = 0.0,
        return_sequences: bool = True,
        mode: str = "auto",
        discretizer: str = "zoh",
        trainable_theta: bool = False,
    ) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        one_of("f1", f1, sorted(ACTIVATIONS))
        one_of("f2", f2, sorted(ACTIVATIONS))
        flag("skip", skip)
        probability("dropout", dropout)
        probability("memory_dropout", memory_dropout)
        flag("return_sequences", return_sequences)
        one_of("mode", mode, LAYER_MODES)
        # LegendreMemory checks order, theta, memory_d, discretizer and trainable_theta.
        self.memory = LegendreMemory(order, theta, memory_d, discretizer, trainable_theta)
        self.input_to_memory = nn.Linear(input_size, memory_d)  # U_x, b_u
        self.memory_to_output = nn.Linear(memory_d * order, hidden_size)  # W_m, b_o
        self.input_to_output = nn.Linear(input_size, hidden_size, bias=False) if skip else None  # W_x
        self.f1, self.f2 = activation(f1), activation(f2)
        self.dropout = Dropout(dropout)
        self.memory_dropout = Dropout(memory_dropout)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.return_sequences, self.mode = return_sequences, mode

    def resolve_mode(self, steps: int, device_type: str = "cpu") -> str:
        """The concrete path ``mode="auto"`` takes for ``steps`` time steps on a device of this type (a fixed rule,
        see module doc)."""
        if self.mode != "auto":
            return self.mode
        if not self.return_sequences:
            return "last_state"
        dropping = self.training and self.memory_dropout.p > 0  # fused never materialises m, to drop from
        if self.memory.memory_d == 1 and self.hidden_size < self.memory.order and not dropping:
            return "fused"
        return self.memory.choose_path(steps, device_type)

    def forward(
        self, x: Tensor, state: Tensor | None = None, return_state: bool | None = None, *, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (batch, T, input_size) → o (batch, T, hidden) or (batch, hidden); with a state also the final state.

        ``state`` is the memory state before the first step, (batch, memory_d·order); see ``initial_state``.
        ``mask`` (bool (batch, T), False at padding): padded steps feed u = 0 to the memory; the last step
        (``return_sequences=False``) and the returned state are each example's last real step (module docstring).
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (batch, time, input_size={self.input_size}), got shape {tuple(x.shape)}")
        if mask is not None:
            check_mask(mask, x.shape[0], x.shape[1])
        return_state = state is not None if return_state is None else return_state
        mode = self.resolve_mode(x.shape[1], x.device.type)
        new_state = None
        if not self.return_sequences and mode != "recurrent":  # m_T alone, eq. 25
            new_state = self._last_memory(x, state, mask)
            readout = self.memory_to_output(self.memory_dropout(new_state))
            out = self.dropout(self.f2(self._add_skip(readout, _last_step(x, mask))))
            return (out, new_state) if return_state else out
        u = self.f1(self.input_to_memory(x))  # (batch, T, memory_d)
        if mode == "fused":
            if self.training and self.memory_dropout.p > 0:
                raise ValueError(
                    "memory_dropout needs the memory materialised while training: use mode auto, fft or direct"
                )
            if mask is not None:
                u = mask_input(u, mask)
            readout = self._fused_readout(u, state)
            if return_state:
                new_state = self.memory.last_state(u, state, mask=mask)
        elif mode == "chunked" and self._reads_out_in_chunks(x, u):  # every step, m never leaves plmu.chunked
            out, new_state = self._chunked_readout(u, state, x, mask)
            return (self.dropout(out), new_state) if return_state else self.dropout(out)
        else:
            m, new_state = self.memory(u, state, return_state=True, mode=mode, mask=mask)
            if not self.return_sequences:  # with a mask, new_state is m at each example's last real step
                m, x = m[:, -1] if mask is None else new_state, _last_step(x, mask)
            else:  # every step: the readout GEMMs are the bulk of the work, so they get a CPU-friendly width
                out = self.dropout(self.f2(self._readout(self.memory_dropout(m), x)))
                out = out[..., : self.hidden_size]  # a view: the padding columns are never read
                return (out, new_state) if return_state else out
            readout = self.memory_to_output(self.memory_dropout(m))
        out = self.dropout(self.f2(self._add_skip(readout, x)))
        return (out, new_state) if return_state else out

    def _last_memory(self, x: Tensor, state: Tensor | None, mask: Tensor | None) -> Tensor:
        """m_T (batch, memory_d·order) by eq. 25 (:meth:`LegendreMemory.last_state`).

        With f1 the identity the memory is linear in x: m_T(U x + b) = U m_T(x) + b Σ_k H_k. So when x has no more
        channels than u, eq. 25's GEMM runs on x itself, and for an x that needs no gradient (psMNIST's pixels) the
        backward pass then has no GEMM through it: its gradient reaches only U and b (a sixth of psMNIST's step)."""
        linear = isinstance(self.f1, nn.Identity) and self.input_size <= self.memory.memory_d
        if not linear or mask is not None or state is not None:
            return self.memory.last_state(self.f1(self.input_to_memory(x)), state, mask=mask)
        self.memory._check_input(x.new_empty(x.shape[0], x.shape[1], self.memory.memory_d), None)
        dtype = LegendreMemory._compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):  # eq. 25 in float32 (LegendreMemory.last_state says why)
            of_inputs = self.memory.last_states_of(x.to(dtype))  # (batch, I, d)
            of_ones = self.memory._reversed_response(x.shape[1], dtype).sum(0)  # (d,): the memory of u ≡ 1
            weight, bias = self.input_to_memory.weight.to(dtype), self.input_to_memory.bias.to(dtype)
            m = torch.einsum("ci,bik->bck", weight, of_inputs) + bias[:, None] * of_ones
        return m.reshape(x.shape[0], -1)

    def _reads_out_in_chunks(self, x: Tensor, u: Tensor) -> bool:
        """Whether the every-step output can come from :func:`plmu.chunked.chunked_readout`: f2 ReLU or the identity,
        no memory dropout to apply, float32/float64 without autocast (under bf16 autocast the readout is autocast's,
        through the separate memory path)."""
        dropping = self.training and self.memory_dropout.p > 0
        plain = x.dtype == u.dtype and u.dtype in (torch.float32, torch.float64)
        autocast = torch.is_autocast_enabled(x.device.type)
        return isinstance(self.f2, nn.ReLU | nn.Identity) and not dropping and plain and not autocast

    def _chunked_readout(
        self, u: Tensor, state: Tensor | None, x: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """f2(W_m m + W_x x + b_o) at every step and the last (real) step's memory, the memory never materialised
        apart from the readout's input buffer (:func:`plmu.chunked.chunked_readout`)."""
        self.memory._check_input(u, state)
        if mask is not None:
            u = mask_input(u, mask)
        batch, steps = x.shape[:2]
        last = torch.full((batch,), steps - 1, device=x.device) if mask is None else last_valid_index(mask)
        skip = None if self.input_to_output is None else self.input_to_output.weight
        return chunked_readout(
            u,
            None if state is None else state.to(u.dtype),
            x,
            self.memory_to_output.weight,
            self.memory_to_output.bias,
            skip,
            self.memory.chunk_operators(u.dtype, steps),
            last,
            relu=isinstance(self.f2, nn.ReLU),
            multiple=READOUT_MULTIPLE if x.device.type == "cpu" else 1,
        )

    def _readout(self, m: Tensor, x: Tensor) -> Tensor:
        """W_m m + b_o + W_x x at every step: m (batch, T, memory_d·order), x (batch, T, input) → (batch, T, H′).

        On a CPU H′ is hidden_size rounded up to a multiple of ``READOUT_MULTIPLE``, the weights padded with zero
        rows: the GEMM's output width decides its speed (MKL, one thread: 41 GFLOPS at 251 columns, 60 at 256), and
        the extra columns cost 2% more work. Elsewhere H′ = hidden_size. The caller slices the padding off."""
        weight, bias = self.memory_to_output.weight, self.memory_to_output.bias
        skip = None if self.input_to_output is None else self.input_to_output.weight
        pad = -self.hidden_size % READOUT_MULTIPLE if m.device.type == "cpu" else 0
        if pad:
            weight, bias = F.pad(weight, (0, 0, 0, pad)), F.pad(bias, (0, pad))
            skip = None if skip is None else F.pad(skip, (0, 0, 0, pad))
        shape = (*m.shape[:-1], self.hidden_size + pad)
        out = torch.addmm(bias, m.reshape(-1, m.shape[-1]), weight.t())
        if skip is not None:
            out = torch.addmm(out, x.reshape(-1, self.input_size).to(out.dtype), skip.t())
        return out.view(shape)

    def _add_skip(self, readout: Tensor, x: Tensor) -> Tensor:
        """readout + W_x x, as one addmm: a pass over (batch, T, hidden) fewer than a matmul, then a sum."""
        if self.input_to_output is None:
            return readout
        shape = readout.shape
        x = x.reshape(-1, self.input_size).to(readout.dtype)
        return torch.addmm(readout.reshape(-1, shape[-1]), x, self.input_to_output.weight.t()).view(shape)

    def readout_kernel(self, steps: int, dtype: torch.dtype) -> Tensor:
        """K (steps, memory_d, hidden): K_s[c, h] = Σ_k W_m[h, c·d + k] H_s[k], so W_m m_t = Σ_s K_s u_{t−s}."""
        H = self.memory.impulse_response(steps, dtype)  # (T, d)
        W = self.memory_to_output.weight.to(dtype).reshape(self.hidden_size, self.memory.memory_d, self.memory.order)
        return torch.einsum("sk,hck->sch", H, W)

    def _fused_readout(self, u: Tensor, state: Tensor | None) -> Tensor:
        """W_m m_t + b_o for every t without materialising m: (batch, T, hidden)."""
        steps = u.shape[1]
        dtype = LegendreMemory._compute_dtype(u)
        with torch.autocast(u.device.type, enabled=False):
            u = u.to(dtype)
            bias = self.memory_to_output.bias
            out = causal_conv(u, self.readout_kernel(steps, dtype), choose_conv(steps, u.device.type), bias.to(dtype))
            if state is not None:  # the carried state's free response Ā^(t+1) m_0, read out
                free = self.memory._free_response(state.to(dtype), steps)  # (batch·C, T, d)
                free = free.reshape(u.shape[0], -1, steps, self.memory.order).transpose(1, 2).flatten(2)
                out = out + free @ self.memory_to_output.weight.to(dtype).transpose(0, 1)
        return out

    def initial_state(self, batch: int) -> Tensor:
        """The memory state before any input: zeros (batch, memory_d·order)."""
        return self.memory.initial_state(batch)

    def step(self, x_t: Tensor, state: Tensor, *, mask_t: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step as an RNN, O(1) in the sequence length: x_t (batch, input_size) → (o_t, new state).

        ``mask_t`` (bool (batch,), False = padding) carries those examples' state unchanged; their o_t is garbage.
        """
        u_t = self.f1(self.input_to_memory(x_t))
        m_t, state = self.memory.step(u_t, state, mask_t=mask_t)
        readout = self.memory_to_output(self.memory_dropout(m_t))
        return self.dropout(self.f2(self._add_skip(readout, x_t))), state


class SequenceStack(nn.Module):
    """``num_layers`` layers of ``layer_class``, each (batch, T, ·) → (batch, T, hidden_size), streamable.

    A layer class takes (input_size, hidden_size, return_sequences=..., **layer_kwargs) and has
    ``forward(x, state, return_state)``, ``initial_state(batch)`` and ``step(x_t, state)``; one whose
    ``supports_mask`` is True also takes ``mask=`` and ``mask_t=`` (a padding mask, passed to every layer).

    Args:
        residual: add each layer's input to its output where the sizes match (every layer after the first).
        norm: ``"layer"`` for a LayerNorm after each layer (after the residual sum), or None.
        return_sequences: the stack's output is every step's (True) or only the last step's (False); inner layers
            always return sequences.
        **layer_kwargs: passed to every layer (for ParallelLMU: order, theta, memory_d, f1, f2, mode, ...).
    """

    layer_class: type[nn.Module]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        residual: bool = False,
        norm: str | None = None,
        return_sequences: bool = True,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        positive_int("num_layers", num_layers)
        flag("residual", residual)
        one_of("norm", norm, (None, "layer"))
        flag("return_sequences", return_sequences)
        self.layers = nn.ModuleList(
            self.layer_class(
                input_size if i == 0 else hidden_size,
                hidden_size,
                return_sequences=return_sequences or i < num_layers - 1,
                **layer_kwargs,
            )
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) if norm else nn.Identity() for _ in range(num_layers))
        self.residual = residual

    def _combine(self, i: int, x: Tensor, out: Tensor) -> Tensor:
        if self.residual and x.shape[-1] == out.shape[-1]:
            out = out + x
        return self.norms[i](out)

    def _check_supports_mask(self) -> None:
        if not getattr(self.layer_class, "supports_mask", False):
            raise ValueError(f"{self.layer_class.__name__} does not take a padding mask; call it without mask=")

    def forward(
        self, x: Tensor, state: list | None = None, return_state: bool | None = None, *, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, list]:
        """x (batch, T, input_size) → (batch, T, hidden) or (batch, hidden); states are one per layer.

        ``mask`` (bool (batch, T), False at padding) goes to every layer, so padded steps feed u = 0 to every memory
        and the last step is each example's last real step (see :func:`last_valid`).
        """
        return_state = state is not None if return_state is None else return_state
        # The keyword is passed only with a mask: layer classes without mask support run unchanged.
        masked = {} if mask is None else {"mask": mask}
        if mask is not None:
            self._check_supports_mask()
        new_states = []
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else state[i]
            out = layer(x, layer_state, return_state=return_state, **masked)
            if return_state:
                out, layer_state = out
                new_states.append(layer_state)
            skip_x = x if layer.return_sequences else _last_step(x, mask)
            x = self._combine(i, skip_x, out)
        return (x, new_states) if return_state else x

    def initial_state(self, batch: int) -> list:
        return [layer.initial_state(batch) for layer in self.layers]

    def step(self, x_t: Tensor, state: list, *, mask_t: Tensor | None = None) -> tuple[Tensor, list]:
        """One time step through every layer: x_t (batch, input_size) → (o_t (batch, hidden), new states).

        ``mask_t`` (bool (batch,), False = padding) carries those examples' states unchanged in every layer.
        """
        masked = {} if mask_t is None else {"mask_t": mask_t}
        if mask_t is not None:
            self._check_supports_mask()
        new_states = []
        for i, layer in enumerate(self.layers):
            out, layer_state = layer.step(x_t, state[i], **masked)
            new_states.append(layer_state)
            x_t = self._combine(i, x_t, out)
        return x_t, new_states


class ParallelLMUStack(SequenceStack):
    """A stack of :class:`ParallelLMU` layers (see :class:`SequenceStack` for the options)."""

    layer_class = ParallelLMU
