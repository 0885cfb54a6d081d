"""S4D, the diagonal state-space model (Gu, Gupta, Goel & Ré 2022, "On the Parameterization and Initialization of
Diagonal State Space Models"): the family LMU users compare with, in plmu's streaming protocol.

Like the LMU's memory, each layer is a linear time-invariant system, trained as a convolution and run as an RNN;
unlike it, the system is learnt. Per channel h (``hidden_size`` of them) and state n (``state_size`` / 2 complex
states, each standing for a conjugate pair):

    x_t = Ā x_{t-1} + B̄ u_t,   y_t = 2 Re(C x_t) + D u_t,   Ā = exp(Δ A),  B̄ = (Ā − 1) / A · B   (zero-order hold)
    A = −exp(a) + i ω;  S4D-Lin: a = log ½, ω_n = π n;  S4D-Inv: ω_n = N/π (N / (2n + 1) − 1);  Δ = exp(log Δ)

The parallel form convolves u with the kernel K_l = 2 Re(Σ_n C_n B̄_n Ā_n^l) (a Vandermonde product, then an FFT,
channel by channel); ``step`` is the recurrence. A layer: LayerNorm → S4D → GELU → dropout → Linear → + its input.
The stack: a linear map of the input to ``hidden_size``, then ``num_layers`` layers.

    x (batch, time, input_size), mask (batch, time) or None → (batch, time, hidden_size), or the last real step's
    (batch, hidden_size). State: a list per layer of x (batch, hidden_size, state_size / 2), complex.

Padding (``mask``): padded steps do not touch the state and output zeros, as in :mod:`plmu.models.encoders`; each
row's real steps must be one block (left or right padding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plmu.checks import ArgumentError, flag, one_of, positive_int, positive_number, probability
from plmu.dropout import Dropout
from plmu.models.encoders import last_real, left_aligned, roll_back
from plmu.models.state import where_state

INITS = ("lin", "inv")


def depthwise_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """u (batch, T, C), kernel (T, C) → y (batch, T, C), y[t, c] = Σ_{s ≤ t} kernel[s, c] · u[t − s, c], by FFT."""
    steps = u.shape[1]
    n = 2 * steps  # ≥ 2T − 1: the circular convolution is the linear one on [0, T)
    spectrum = torch.fft.rfft(u, n=n, dim=1) * torch.fft.rfft(kernel, n=n, dim=0)
    return torch.fft.irfft(spectrum, n=n, dim=1)[:, :steps]


class S4DLayer(nn.Module):
    """One S4D layer over ``channels`` channels (module docstring): (batch, T, channels) → the same shape."""

    def __init__(
        self,
        channels: int,
        state_size: int = 64,
        init: str = "lin",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        layer_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        positive_int("channels", channels)
        if positive_int("state_size", state_size) % 2:
            raise ArgumentError(
                "state_size", f"be even (conjugate pairs: state_size / 2 complex states), got {state_size}"
            )
        one_of("init", init, INITS)
        if not positive_number("dt_min", dt_min) < positive_number("dt_max", dt_max):
            raise ArgumentError("dt_min", f"be below dt_max={dt_max}, got {dt_min}")
        half = state_size // 2
        n = torch.arange(half, dtype=torch.float32)
        imag = math.pi * n if init == "lin" else state_size / math.pi * (state_size / (2 * n + 1) - 1)
        self.log_dt = nn.Parameter(torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.a_real = nn.Parameter(torch.full((channels, half), math.log(0.5)))  # A's real part is −exp(a_real) < 0
        self.a_imag = nn.Parameter(imag.repeat(channels, 1))
        self.b = nn.Parameter(torch.stack((torch.ones(channels, half), torch.zeros(channels, half)), -1))
        self.c = nn.Parameter(torch.randn(channels, half, 2) * math.sqrt(0.5))
        self.d = nn.Parameter(torch.randn(channels))
        self.norm = nn.LayerNorm(channels)
        self.dropout = Dropout(probability("layer_dropout", layer_dropout))
        self.mix = nn.Linear(channels, channels)

    def discrete(self) -> tuple[Tensor, Tensor, Tensor]:
        """(Δ A, B̄, C), each (channels, state_size / 2) complex: the zero-order hold of the continuous system."""
        a = torch.complex(-torch.exp(self.a_real), self.a_imag)
        dt_a = torch.exp(self.log_dt)[:, None] * a
        b, c = torch.view_as_complex(self.b), torch.view_as_complex(self.c)
        return dt_a, (torch.exp(dt_a) - 1) / a * b, c

    def kernel(self, steps: int) -> Tensor:
        """K (steps, channels): K_l = 2 Re(Σ_n C_n B̄_n Ā_n^l)."""
        dt_a, b_bar, c = self.discrete()
        powers = torch.exp(dt_a[..., None] * torch.arange(steps, device=dt_a.device, dtype=dt_a.real.dtype))
        return 2 * torch.einsum("hn,hnl->lh", c * b_bar, powers).real

    def ssm(
        self, u: Tensor, state: Tensor | None = None, lengths: Tensor | None = None, final_state: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """The system over left-aligned rows: u (batch, T, channels), each row's real steps first (``lengths``
        (batch,) of them; None: all T) → (y (batch, T, channels), the state after each row's last real step, or
        None without ``final_state``: training needs only y, and the state costs a batch × T × channels × N/2
        product)."""
        batch, steps, _ = u.shape
        dt_a, b_bar, c = self.discrete()
        y = depthwise_causal_conv(u, self.kernel(steps)) + self.d * u
        time = torch.arange(steps + 1, device=u.device, dtype=u.dtype)
        lengths = torch.full((batch,), steps, device=u.device) if lengths is None else lengths
        if state is not None:  # x_t also holds Ā^{t+1} x_{-1}: y_t += 2 Re(Σ_n C_n Ā_n^{t+1} x_n)
            y = y + 2 * torch.einsum("bhn,hnt->bth", c * state, torch.exp(dt_a[..., None] * time[1:])).real
        if not final_state:
            return y, None
        # The state after step L − 1 of a row: Σ_{k<L} Ā^{L−1−k} B̄ u_k (+ Ā^L x_{-1}). Each row moved right so that
        # its real steps end at T − 1 (zeros before them) makes the powers Ā^{T−1−k} one tensor for the batch.
        real = torch.arange(steps, device=u.device) < lengths[:, None]
        shift = (torch.arange(steps, device=u.device) - (steps - lengths)[:, None]) % steps
        ends = u.masked_fill(~real[..., None], 0).gather(1, shift[..., None].expand_as(u))
        powers = torch.exp(dt_a[..., None] * time[:steps].flip(0))  # Ā^{T−1−k}
        final = torch.einsum("bkh,hnk->bhn", ends.to(powers.dtype), b_bar[..., None] * powers)
        if state is not None:
            final = final + torch.exp(dt_a * lengths[:, None, None].to(u.dtype)) * state
        return y, final

    def forward(
        self, x: Tensor, state: Tensor | None = None, lengths: Tensor | None = None, final_state: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """x (batch, T, channels), left-aligned (see :meth:`ssm`) → (the layer's output, its final state or None)."""
        y, final = self.ssm(self.norm(x), state, lengths, final_state)
        return x + self.mix(self.dropout(F.gelu(y))), final

    def step(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """x_t (batch, channels), state (batch, channels, state_size / 2) complex → (output, new state)."""
        dt_a, b_bar, c = self.discrete()
        u = self.norm(x_t)
        state = torch.exp(dt_a) * state + b_bar * u[..., None]
        y = 2 * (c * state).sum(-1).real + self.d * u
        return x_t + self.mix(self.dropout(F.gelu(y))), state


class S4DStack(nn.Module):
    """The backbone: Linear(input_size → hidden_size), then ``num_layers`` :class:`S4DLayer` (module docstring)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        return_sequences: bool = True,
        state_size: int = 64,
        init: str = "lin",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        layer_dropout: float = 0.0,
    ) -> None:
        """The options are each :class:`S4DLayer`'s."""
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("hidden_size", hidden_size)
        positive_int("num_layers", num_layers)
        self.return_sequences = flag("return_sequences", return_sequences)
        self.encoder = nn.Linear(input_size, hidden_size)
        options = {"state_size": state_size, "init": init, "dt_min": dt_min, "dt_max": dt_max}
        self.layers = nn.ModuleList(
            S4DLayer(hidden_size, **options, layer_dropout=layer_dropout) for _ in range(num_layers)
        )

    def initial_state(self, batch: int) -> list[Tensor]:
        like = self.layers[0].c
        dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
        return [like.new_zeros(batch, *layer.c.shape[:2], dtype=dtype) for layer in self.layers]

    def forward(
        self, x: Tensor, state: list[Tensor] | None = None, return_state: bool | None = None, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """x (batch, time, input_size) → (batch, time, hidden_size), or the last real step's (batch, hidden_size);
        with ``return_state`` (default: when a state is given) also the state after each row's last real step."""
        return_state = state is not None if return_state is None else return_state
        lengths = start = steps = None
        if mask is not None:  # every row's real steps first; zeros and the rows' places restored at the end
            x, lengths, start, steps = left_aligned(x, mask)
        h, finals = self.encoder(x), []
        for number, layer in enumerate(self.layers):
            h, final = layer(h, None if state is None else state[number], lengths, final_state=return_state)
            finals.append(final)
        if mask is not None:
            h = roll_back(h.masked_fill(~(steps < lengths[:, None])[..., None], 0.0), start, steps)
        out = h if self.return_sequences else (h[:, -1] if mask is None else last_real(h, mask))
        return (out, finals) if return_state else out

    def step(self, x_t: Tensor, state: list[Tensor], mask_t: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """One step: x_t (batch, input_size), mask_t (batch,) bool or None → (h_t (batch, hidden_size), state).
        Where mask_t is False the state is kept and the output is zero, as in the masked ``forward``."""
        h, new_state = self.encoder(x_t), []
        for layer, layer_state in zip(self.layers, state, strict=True):
            h, layer_state = layer.step(h, layer_state)
            new_state.append(layer_state)
        if mask_t is None:
            return h, new_state
        return h.masked_fill(~mask_t[:, None], 0.0), where_state(mask_t, new_state, state)

    def extra_repr(self) -> str:
        return f"layers={len(self.layers)}, return_sequences={self.return_sequences}"


def s4d_parameters(input_size: int, hidden_size: int, num_layers: int, state_size: int = 64) -> int:
    """The stack's parameter count (for sizing it to another family's)."""
    per_layer = hidden_size * (2 + 3 * state_size + 2 + hidden_size + 1)
    return input_size * hidden_size + hidden_size + num_layers * per_layer
