"""Causal convolution of a sequence with a kernel over time: the parallel form of any LTI memory.

    y[b, t, o] = Σ_{s=0..t} Σ_c kernel[s, c, o] · u[b, t − s, c]

Two exact ways to compute it: ``fft`` (O(T log T), zero-padded so the circular convolution is the linear one)
and ``direct`` (a dense conv1d, O(T²), faster for short sequences). The rule that picks one is
:func:`choose_conv`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CONV_MODES = ("fft", "direct")

# Below this many time steps the O(T²) conv1d beats the FFT's fixed cost, per device type (measured by
# `plmu-bench --crossover`: experiments/speed/README.md for the CPU, experiments/speed/gpu/ for CUDA); above it the
# FFT wins at every size we tried. A device type not listed uses the CPU's rule.
DIRECT_MAX_STEPS = 64
DIRECT_MAX_STEPS_BY_DEVICE = {"cpu": DIRECT_MAX_STEPS, "cuda": 128}  # cuda: an H100, direct faster to T = 128


def choose_conv(steps: int, device_type: str = "cpu") -> str:
    """The conv that ``mode="auto"`` uses for a sequence of ``steps`` time steps on a device of this type."""
    limit = DIRECT_MAX_STEPS_BY_DEVICE.get(device_type, DIRECT_MAX_STEPS)
    return "direct" if steps <= limit else "fft"


def fft_size(n: int) -> int:
    """The smallest 2^a·3^b·5^c·7^d ≥ n: pocketfft (and cuFFT) are 2-4x faster on such smooth lengths."""
    size = max(n, 1)
    while True:
        rest = size
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


# On a CPU the FFT conv runs a batch chunk at a time, sized so its complex intermediates (chunk, F, channels) stay
# near this many bytes: they then live in cache instead of streaming hundreds of MB through memory on every pass.
# A GPU takes the whole batch at once: its memory is fast, and every chunk costs kernel launches (with chunks of a
# few rows, launches were most of a step: experiments/speed/gpu/).
FFT_CHUNK_BYTES = 4 << 20


def causal_conv(u: Tensor, kernel: Tensor, mode: str = "fft", bias: Tensor | None = None) -> Tensor:
    """u (batch, T, C), kernel (K ≥ T, C, O), bias (O,) or None → y (batch, T, O) (+ bias at every step).

    Only the first T taps of the kernel are used. Runs in the dtype of ``u`` and ``kernel`` (which must agree):
    float32 or float64.
    """
    steps = u.shape[1]
    kernel = kernel[:steps]
    if mode == "fft":
        return _FFTConv.apply(u, kernel, bias)
    if mode == "direct":
        weight = kernel.flip(0).permute(2, 1, 0)  # (O, C, T): conv1d correlates, so flip time
        padded = F.pad(u.transpose(1, 2), (steps - 1, 0))  # (batch, C, 2T − 1), causal left padding
        return F.conv1d(padded, weight, bias).transpose(1, 2)
    raise ValueError(f"conv mode must be one of {CONV_MODES}, got {mode!r}")


def _per_frequency(x_f: Tensor, k_f: Tensor) -> Tensor:
    """(chunk, I, F) × (I, J, F) → (chunk, J, F), an I×J matrix product at each frequency.

    CPU complex batched matmul is slow for thin matrices, so one input or one output channel (the memory's
    depthwise conv, a 1-d input, a backward pass into it) is a broadcast product instead (4-6x faster).
    """
    if x_f.shape[1] == 1:
        return x_f[:, 0, None, :] * k_f[0]
    if k_f.shape[1] == 1:
        return (x_f * k_f[:, 0]).sum(1, keepdim=True)
    return torch.matmul(x_f.permute(2, 0, 1), k_f.permute(2, 0, 1)).permute(1, 2, 0)


def _batch_outer_sum(a_f: Tensor, b_f: Tensor) -> Tensor:
    """Σ_b conj(a[b, i, f]) · b[b, j, f] → (I, J, F): the kernel's gradient spectrum from one chunk."""
    if a_f.shape[1] == 1 or b_f.shape[1] == 1:
        return (a_f.conj()[:, :, None, :] * b_f[:, None, :, :]).sum(0)
    return torch.matmul(a_f.conj().permute(2, 1, 0), b_f.permute(2, 0, 1)).permute(1, 2, 0)


def _chunks(batch: int, n: int, channels: int, like: Tensor) -> list[slice]:
    if like.device.type != "cpu":
        return [slice(0, batch)]
    size = max(1, FFT_CHUNK_BYTES // (n * channels * like.element_size()))
    return [slice(i, i + size) for i in range(0, batch, size)]


def _rfft_time(x: Tensor, n: int) -> Tensor:
    """(chunk, T, C) → spectrum (chunk, C, F): pocketfft is ~20% faster with time as the last axis."""
    return torch.fft.rfft(x.transpose(1, 2), n=n, dim=2)


def _irfft_time(x_f: Tensor, n: int, steps: int) -> Tensor:
    """Spectrum (chunk, C, F) → (chunk, T, C), the first ``steps`` samples."""
    return torch.fft.irfft(x_f, n=n, dim=2)[:, :, :steps].transpose(1, 2)


class _FFTConv(torch.autograd.Function):
    """Causal convolution by zero-padded FFT, a batch chunk at a time in forward and backward.

    With n ≥ 2T − 1 the circular convolution equals the linear one on [0, T), and so do the two circular
    correlations of the backward pass: grad_u[j] = Σ_t g[t] k[t − j] (spectrum G·conj(K)) and
    grad_k[s] = Σ_b Σ_t g[b, t] u[b, t − s] (spectrum Σ_b conj(U_b)·G_b, summed over the batch in frequency).
    """

    @staticmethod
    def forward(ctx, u: Tensor, kernel: Tensor, bias: Tensor | None) -> Tensor:
        steps, outputs = u.shape[1], kernel.shape[2]
        n = fft_size(2 * steps - 1)
        k_f = torch.fft.rfft(kernel.permute(1, 2, 0), n=n, dim=2)  # (C, O, F)
        y = u.new_empty(u.shape[0], steps, outputs)
        for rows in _chunks(u.shape[0], n, outputs, u):
            y_rows = _irfft_time(_per_frequency(_rfft_time(u[rows], n), k_f), n, steps)
            # The bias is added while the chunk is in cache, not as another pass over the whole output.
            y[rows] = y_rows if bias is None else y_rows + bias
        ctx.save_for_backward(u, k_f)
        ctx.n = n
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        u, k_f = ctx.saved_tensors
        n, steps = ctx.n, u.shape[1]
        grad_u = u.new_empty(u.shape) if ctx.needs_input_grad[0] else None
        grad_k_f = torch.zeros_like(k_f) if ctx.needs_input_grad[1] else None
        grad_bias = grad_y.new_zeros(grad_y.shape[2]) if ctx.needs_input_grad[2] else None
        k_f_adjoint = k_f.conj().transpose(0, 1)  # (O, C, F)
        for rows in _chunks(u.shape[0], n, grad_y.shape[2], u):
            g_f = _rfft_time(grad_y[rows], n)  # (chunk, O, F)
            if grad_bias is not None:
                grad_bias += grad_y[rows].sum((0, 1))
            if grad_u is not None:
                grad_u[rows] = _irfft_time(_per_frequency(g_f, k_f_adjoint), n, steps)
            if grad_k_f is not None:
                grad_k_f += _batch_outer_sum(_rfft_time(u[rows], n), g_f)  # (C, O, F)
        grad_kernel = None if grad_k_f is None else torch.fft.irfft(grad_k_f, n=n, dim=2)[..., :steps].permute(2, 0, 1)
        return grad_u, grad_kernel, grad_bias
