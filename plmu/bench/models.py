"""The models every speed benchmark times, built from the library's own builders, and one training step.

``build(path, ...)`` returns a ``plmu.models.SequenceModel`` for one computation path: the parallel LMU in each of its
modes, the 2019 LMU (eager, or its cell under ``torch.compile``), ``nn.LSTM`` (cuDNN on a GPU) and the library's
causal transformer. The one model that is not the library's is :class:`NaiveFFTLMU`, the textbook "plain FFT"
reference that the fast paths are measured against; it is a ``ParallelLMU`` whose forward computes the whole memory
by one unchunked FFT under autograd, built from the layer's public parts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plmu.layers import ParallelLMU, ParallelLMUStack
from plmu.models import (
    IdentityAdapter,
    SequenceModel,
    head_for,
    sequence_model,
)


class NaiveFFTLMU(ParallelLMU):
    """The textbook parallel LMU: the memory m (batch, T, d) by one unchunked FFT under autograd, then the readout."""

    def forward(self, x: Tensor, state: Tensor | None = None, return_state: bool | None = None) -> Tensor:
        if state is not None or return_state:
            raise ValueError("NaiveFFTLMU is a timing reference: it takes no state")
        u = self.f1(self.input_to_memory(x))  # (batch, T, C)
        steps, n = x.shape[1], 2 * x.shape[1]
        H = self.memory.impulse_response(steps, u.dtype)  # (T, d)
        u_f = torch.fft.rfft(u.transpose(1, 2), n=n)[..., None, :]  # (batch, C, 1, F)
        m = torch.fft.irfft(u_f * torch.fft.rfft(H.t(), n=n), n=n)[..., :steps]  # (batch, C, d, T)
        m = m.permute(0, 3, 1, 2).reshape(x.shape[0], steps, -1)  # (batch, T, C·d)
        readout = self.memory_to_output(m)
        if self.input_to_output is not None:
            readout = readout + self.input_to_output(x)
        out = self.dropout(self.f2(readout))
        return out if self.return_sequences else out[:, -1]


class NaiveFFTStack(ParallelLMUStack):
    layer_class = NaiveFFTLMU


# path name → (what the table calls it, the parallel LMU's mode or the baseline's family)
PATHS = {
    "recurrent": "recurrent loop (mode=recurrent)",
    "last_state": "last state, one matmul (eq. 25; mode=auto)",
    "naive_fft": "plain FFT, memory materialised (naive)",
    "fft": "FFT, memory materialised (mode=fft; batch-chunked on CPU)",
    "direct": "direct conv, memory materialised (mode=direct)",
    "fused": "fused: W_m folded into the kernel (mode=fused)",
    "auto": "mode=auto (what this device's rule picks)",
    "original": "original LMU 2019, step loop",
    "lstm": "LSTM (nn.LSTM; cuDNN on a GPU)",
    "transformer": "causal transformer (plmu TransformerBackbone)",
}


def build(
    path: str,
    *,
    input_size: int,
    classes: int,
    hidden: int,
    order: int,
    theta: float,
    memory_d: int = 1,
    full: bool = True,
    compile_original: bool = False,
) -> SequenceModel:
    """The model of one path (a key of ``PATHS``): one layer of ``hidden`` units and a linear head (per step if
    ``full``). ``last_state`` is the parallel LMU reading its last step only (``full`` must be False)."""
    lmu = dict(order=order, theta=theta, memory_d=memory_d)
    if path in ("recurrent", "fft", "direct", "fused", "auto", "last_state"):
        if path == "last_state" and full:
            raise ValueError("path 'last_state' reads the last step only: build it with full=False")
        mode = "auto" if path == "last_state" else path
        return sequence_model(input_size, classes, full, hidden, backbone="plmu", mode=mode, **lmu)
    if path == "naive_fft":
        backbone = NaiveFFTStack(input_size, hidden, 1, return_sequences=full, **lmu)
        return SequenceModel(IdentityAdapter(input_size), backbone, head_for(full, hidden, classes))
    if path == "original":
        model = sequence_model(input_size, classes, full, hidden, backbone="original_lmu", **lmu)
        if compile_original:  # the cell, as a careful user would: compiling the T-step loop would unroll it
            for layer in model.backbone.layers:
                layer.cell = torch.compile(layer.cell)
        return model
    if path == "lstm":
        return sequence_model(input_size, classes, full, hidden, backbone="lstm")
    if path == "transformer":
        if not full:
            raise ValueError("the transformer path is timed on the full-sequence case only")
        return sequence_model(
            input_size, classes, True, hidden, backbone="transformer", num_heads=4, dim_feedforward=2 * hidden
        )
    raise ValueError(f"path must be one of {sorted(PATHS)}, got {path!r}")


def training_step(model: nn.Module, x: Tensor, y: Tensor, full: bool) -> Callable[[], None]:
    """One step (forward, cross-entropy, backward, Adam) of ``model`` on x (batch, T, input), y (batch,) classes.

    ``full``: the loss is on every step's prediction (the class repeated over T); else on the last step's.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = y.repeat_interleave(x.shape[1]) if full else y

    def step() -> None:
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
