"""Every step's Legendre memory as GEMMs over chunks of time: no FFT, no layout copies of the memory.

Cut the sequence into chunks of L steps. Within chunk j (steps jL … jL + L − 1, local step s), with S_{j−1} the
memory at the end of the previous chunk,

    m_{jL+s} = Σ_{r ≤ s} H_{s−r} u_{jL+r}  +  Ā^{s+1} S_{j−1}                  (H_k = Ā^k B̄)

so one GEMM gives a whole chunk: the row [u_{jL} … u_{jL+L−1}, S_{j−1}] (L + d numbers per channel) times a fixed
(L + d) × (L·d) matrix (``within``: the Toeplitz block of H over the chunk, then Ā^{s+1}). The chunk ends satisfy
S_j = Ā^L S_{j−1} + e_j, with e_j = Σ_r H_{L−1−r} u_{jL+r} (the paper's eq. 25 on one chunk): a scan over T/L
chunks of (batch·channels × d) @ (d × d) products, the only sequential part.

Cost per step and channel: (L + d)·d multiply-adds in one large GEMM, against an FFT's O(d log T) in memory-bound
passes over complex spectra twice the memory's size. For the small orders of the text models (d = 8 … 16, many
channels) this is several times faster on a CPU (experiments/speed/); for large orders (psMNIST's d = 468) the d²
term loses to the FFT, which is why :func:`choose_memory_path` picks by order.

The memory comes out in the layout the readout W_m reads, (batch, T, channels·d), through one copy of contiguous
d-blocks; the backward pass is the same GEMM transposed and the scan reversed (:class:`_ChunkedMemory`). Every
operator is built in float64 from the one Ā, B̄ (:mod:`plmu.lti`) and cast late. θ must be fixed here (no gradient
reaches Ā or H); a trainable θ takes the FFT path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from plmu.conv import choose_conv

# The chunked scan costs (L + d)·d per step and channel, the FFT O(d log T): on a CPU (one thread, fp32, forward and
# backward) chunked was 2.4-2.7x faster than fft at d = 8 … 128 (T 512-2,048, 1-32 channels) and 2x slower at
# d = 468 (experiments/speed/cpu/memory_paths.md). On CUDA it has not been measured, so the FFT stays there.
CHUNKED_MAX_ORDER = 128
CHUNKED_DEVICES = ("cpu",)


def choose_memory_path(steps: int, order: int, device_type: str = "cpu", fixed_theta: bool = True) -> str:
    """The path ``mode="auto"`` takes for every step's memory: ``direct`` for short sequences
    (:func:`plmu.conv.choose_conv`), else ``chunked`` for a fixed θ, order ≤ ``CHUNKED_MAX_ORDER`` on a CPU, else
    ``fft``. A learned θ needs the convolution paths (the chunked scan passes no gradient to Ā)."""
    conv = choose_conv(steps, device_type)
    if conv == "direct" or not fixed_theta or order > CHUNKED_MAX_ORDER or device_type not in CHUNKED_DEVICES:
        return conv
    return "chunked"


SCAN_CHUNKS = 64  # about at most this many chunks: each is a small product and a Python call, forward and backward


def chunk_length(order: int, steps: int = 1) -> int:
    """L for a memory of ``order`` over ``steps``: the chunk GEMM costs (L + d)·d multiply-adds a step and channel,
    the scan T/L small products. L = d (8 … 64) balances the two for the text models; a long sequence of a small
    order takes longer chunks, a power of two up to 128, so that the scan stays near ``SCAN_CHUNKS`` calls
    (Mackey-Glass, T 5,000, order 4: 625 chunks at L 8, 40 at L 128, the step as fast or up to 10% faster)."""
    by_steps = 1 << max(0, (-(-steps // SCAN_CHUNKS) - 1).bit_length())  # ceil(T / SCAN_CHUNKS), a power of two
    return max(8, min(64, order), min(128, by_steps))


def chunk_operators(A_bar: Tensor, impulse: Tensor, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    """The fixed matrices of the chunked scan, in the dtype of ``A_bar`` (build them in float64, cast late).

    Args:
        A_bar: Ā (d, d).
        impulse: H (≥ chunk, d), H_k = Ā^k B̄.
        chunk: L.

    Returns:
        within (L + d, L·d): rows r < L map input r to every local step's memory (H_{s−r} at column block s ≥ r,
            zeros before it); rows L + k map the carried state's coordinate k (column block s holds Ā^{s+1}[:, k]).
        ends (L, d): a chunk's inputs to its end state from zero, H_{L−1−r} in row r.
        carry (d, d): (Ā^L)ᵀ, so that S_j = S_{j−1} @ carry + e_j for row vectors.
    """
    d = A_bar.shape[0]
    H = impulse[:chunk]
    lag = torch.arange(chunk)[None, :] - torch.arange(chunk)[:, None]  # (r, s): s − r
    toeplitz = torch.where((lag >= 0)[..., None], H[lag.clamp(min=0)], H.new_zeros(()))  # (r, s, d)
    powers, power = [], A_bar
    for _ in range(chunk):  # Ā^{s+1}, s = 0 … L − 1
        powers.append(power)
        power = A_bar @ power
    state_rows = torch.stack(powers, 0).permute(2, 0, 1)  # (k, s, d'): Ā^{s+1}[d', k]
    within = torch.cat([toeplitz.reshape(chunk, chunk * d), state_rows.reshape(d, chunk * d)], 0)
    carry = powers[-1].transpose(0, 1).contiguous()  # (Ā^L)ᵀ
    return within, H.flip(0).contiguous(), carry


def chunked_memory(u: Tensor, state: Tensor | None, within: Tensor, ends: Tensor, carry: Tensor) -> Tensor:
    """m (batch, T, C·d) for u (batch, T, C) and a carried state (batch, C·d) or None (zeros).

    ``within``, ``ends``, ``carry`` from :func:`chunk_operators` in u's dtype. Differentiable in u and the state.
    """
    return _ChunkedMemory.apply(u, state, within, ends, carry)


def chunked_readout(
    u: Tensor,
    state: Tensor | None,
    x: Tensor,
    memory_weight: Tensor,
    bias: Tensor,
    skip_weight: Tensor | None,
    operators: tuple[Tensor, Tensor, Tensor],
    last_index: Tensor,
    relu: bool,
    multiple: int = 1,
) -> tuple[Tensor, Tensor]:
    """The parallel LMU's every-step output before its dropout, with the memory never leaving the function.

        o_t = f2(W_m m_t + W_x x_t + b_o),  f2 = ReLU (``relu``) or the identity

    Args:
        u: (batch, T, C), the memory's input (masked already); state: (batch, C·d) or None.
        x: (batch, T, I), the layer's input (the skip term's); ``skip_weight`` W_x (H, I), or None for no skip.
        memory_weight: W_m (H, C·d); bias: b_o (H,).
        operators: (within, ends, carry) from :func:`chunk_operators`, in u's dtype.
        last_index: (batch,) long, the step whose memory is returned as the state (T − 1, or the last real step).
        multiple: the readout GEMM's output width is H rounded up to this (zero rows; module
            :mod:`plmu.layers` says why), sliced off again.

    Returns:
        o (batch, T, H), a view of a (batch, T, H′) buffer; the memory at ``last_index`` (batch, C·d).

    Why one function: m is written straight into one buffer beside x, so the readout is one GEMM of K = C·d + I
    (forward) and two (backward) instead of two and four; ReLU runs in place; the backward pass reads the
    gradient at width H, with no padding to undo. Differentiable in u, state, x and the three weights.
    """
    skip = skip_weight is not None
    weights = (memory_weight, bias) + ((skip_weight,) if skip else ())
    return _ChunkedReadout.apply(u, state, x, *operators, last_index, relu, multiple, skip, *weights)


def _scan(ends_of_chunks: Tensor, first: Tensor, carry: Tensor) -> Tensor:
    """The state entering each chunk: out[0] = first, out[j] = out[j − 1] @ carry + ends_of_chunks[j − 1].

    ends_of_chunks (n, rows, d), first (rows, d) → (n, rows, d); each step one small addmm, written in place.
    """
    out = ends_of_chunks.new_empty(ends_of_chunks.shape)
    out[0] = first
    for j in range(1, out.shape[0]):
        torch.addmm(ends_of_chunks[j - 1], out[j - 1], carry, out=out[j])
    return out


def _memory_forward(u: Tensor, state: Tensor | None, within: Tensor, ends: Tensor, carry: Tensor, out: Tensor) -> None:
    """Write m for u (batch, T, C) into ``out`` (batch, T, C, d), any strides (module docstring)."""
    batch, steps, channels = u.shape
    chunk, d = ends.shape
    chunks = -(-steps // chunk)
    if chunks * chunk != steps:  # zeros after the end change no earlier step (causality); the copy is 1/d of m's size
        u = F.pad(u, (0, 0, 0, chunks * chunk - steps))
    # (batch, chunks, C, L): each channel's chunk of inputs as one row
    rows = u.reshape(batch, chunks, chunk, channels).transpose(2, 3).contiguous()
    flat = rows.transpose(0, 1).reshape(chunks, batch * channels, chunk)  # chunk-major for the scan
    first = rows.new_zeros(batch * channels, d) if state is None else state.reshape(batch * channels, d)
    entering = _scan(flat @ ends, first, carry)  # (chunks, batch·C, d)
    entering = entering.view(chunks, batch, channels, d).transpose(0, 1)
    local = torch.cat([rows, entering], -1).reshape(-1, chunk + d) @ within  # (batch·chunks·C, L·d)
    _chunks_to_steps(local.view(batch, chunks, channels, chunk, d), out)


def _memory_backward(
    grad_m: Tensor, within: Tensor, ends: Tensor, carry: Tensor, channels: int
) -> tuple[Tensor, Tensor]:
    """(grad of u (batch, T, C), grad of the entering state (batch, C·d)) from grad_m (batch, T, C·d), any strides."""
    batch, steps = grad_m.shape[:2]
    chunk, d = ends.shape
    chunks = -(-steps // chunk)
    local = _steps_to_chunks(grad_m, chunks, chunk, channels, d)  # (batch, chunks, C, L·d)
    grad_rows = local.reshape(-1, chunk * d) @ within.transpose(0, 1)  # (batch·chunks·C, L + d)
    grad_rows = grad_rows.view(batch, chunks, channels, chunk + d)
    # The scan backwards: the gradient reaching each chunk's entering state flows on to the previous chunk's
    # end state through Ā^L, and from there into that chunk's inputs through ``ends``.
    grad_entering = grad_rows[..., chunk:].transpose(0, 1).reshape(chunks, batch * channels, d)
    grad_ends = grad_entering.new_empty(grad_entering.shape)
    grad_ends[-1] = 0  # the last chunk's end state enters no chunk
    total = grad_entering[-1].clone()
    carry_t = carry.transpose(0, 1)
    for j in range(chunks - 1, 0, -1):
        grad_ends[j - 1] = total
        total = torch.addmm(grad_entering[j - 1], total, carry_t)
    from_ends = (grad_ends @ ends.transpose(0, 1)).view(chunks, batch, channels, chunk).transpose(0, 1)
    grad_u = (grad_rows[..., :chunk] + from_ends).transpose(2, 3).reshape(batch, chunks * chunk, channels)
    return grad_u[:, :steps], total.reshape(batch, channels * d)


class _ChunkedMemory(torch.autograd.Function):
    """The chunked scan (module docstring), forward and backward by hand: autograd would record one node per chunk
    of the scan and a copy per layout change; this keeps two GEMMs, two copies and one scan each way."""

    @staticmethod
    def forward(ctx, u: Tensor, state: Tensor | None, within: Tensor, ends: Tensor, carry: Tensor) -> Tensor:
        batch, steps, channels = u.shape
        m = u.new_empty(batch, steps, channels, ends.shape[1])
        _memory_forward(u, state, within, ends, carry, m)
        ctx.save_for_backward(within, ends, carry)
        ctx.channels = channels
        return m.view(batch, steps, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_m: Tensor) -> tuple[Tensor | None, ...]:
        within, ends, carry = ctx.saved_tensors
        grad_u, grad_state = _memory_backward(grad_m, within, ends, carry, ctx.channels)
        return grad_u, grad_state if ctx.needs_input_grad[1] else None, None, None, None


class _ChunkedReadout(torch.autograd.Function):
    """:func:`chunked_readout`: the memory (written beside x), the readout GEMM and f2, forward and backward."""

    @staticmethod
    def forward(ctx, u, state, x, within, ends, carry, last_index, relu, multiple, skip, memory_weight, bias, *rest):
        batch, steps, channels = u.shape
        memory_width, hidden = memory_weight.shape[1], memory_weight.shape[0]
        weight = torch.cat([memory_weight, rest[0]], 1) if skip else memory_weight  # (H, C·d + I)
        pad = -hidden % multiple
        padded_weight, padded_bias = F.pad(weight, (0, 0, 0, pad)), F.pad(bias, (0, pad))
        inputs = u.new_empty(batch, steps, weight.shape[1])  # [m_t | x_t] per step: the readout GEMM's one input
        _memory_forward(u, state, within, ends, carry, inputs[..., :memory_width].view(batch, steps, channels, -1))
        if skip:
            inputs[..., memory_width:] = x
        out = torch.addmm(padded_bias, inputs.view(batch * steps, -1), padded_weight.t())
        if relu:
            out.relu_()
        out = out.view(batch, steps, hidden + pad)[..., :hidden]
        last = inputs[torch.arange(batch, device=u.device), last_index, :memory_width]
        ctx.save_for_backward(inputs, out, padded_weight, within, ends, carry, last_index)
        ctx.options = (relu, skip, channels, memory_width)
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        inputs, out, weight, within, ends, carry, last_index = ctx.saved_tensors
        relu, skip, channels, memory_width = ctx.options
        batch, steps, hidden = out.shape
        # The gradient before f2, at the padded width (zeros in the padding): the GEMMs below then run at K = H′.
        grad = grad_out.new_empty(batch, steps, weight.shape[0])
        grad[..., hidden:] = 0
        if relu:
            torch.ops.aten.threshold_backward.grad_input(grad_out, out, 0, grad_input=grad[..., :hidden])
        else:
            grad[..., :hidden] = grad_out
        grad = grad.view(batch * steps, -1)
        grad_inputs = (grad @ weight).view(batch, steps, -1)  # (batch, T, C·d + I): m's and x's gradients at once
        grad_weight = (grad.t() @ inputs.view(batch * steps, -1))[:hidden]
        grad_bias = grad.sum(0)[:hidden]
        grad_m = grad_inputs[..., :memory_width]
        if grad_last is not None:
            grad_m[torch.arange(batch, device=grad_m.device), last_index] += grad_last
        grad_u, grad_state = _memory_backward(grad_m, within, ends, carry, channels)
        grad_x = grad_inputs[..., memory_width:] if skip and ctx.needs_input_grad[2] else None
        grads = [grad_weight[:, :memory_width], grad_bias] + ([grad_weight[:, memory_width:]] if skip else [])
        state_grad = grad_state if ctx.needs_input_grad[1] else None
        return (grad_u, state_grad, grad_x, None, None, None, None, None, None, None, *grads)


def _chunks_to_steps(local: Tensor, out: Tensor) -> None:
    """(batch, chunks, C, L, d) → ``out`` (batch, steps, C, d), the padding after ``steps`` dropped: one copy of
    d-blocks (``out`` may be a strided view, e.g. the first columns of a wider buffer)."""
    chunk, steps = local.shape[3], out.shape[1]
    whole = steps // chunk
    if whole:
        out[:, : whole * chunk].unflatten(1, (whole, chunk)).copy_(local[:, :whole].transpose(2, 3))
    if (rest := steps - whole * chunk) > 0:
        out[:, whole * chunk :].copy_(local[:, whole, :, :rest].transpose(1, 2))


def _steps_to_chunks(grad: Tensor, chunks: int, chunk: int, channels: int, d: int) -> Tensor:
    """(batch, steps, C·d) → (batch, chunks, C, L·d), zeros after ``steps``: the inverse layout of
    :func:`_chunks_to_steps`."""
    batch, steps = grad.shape[:2]
    grad = grad.reshape(batch, steps, channels, d)
    out = grad.new_empty(batch, chunks, channels, chunk, d)
    whole = steps // chunk
    if whole:
        out[:, :whole].copy_(grad[:, : whole * chunk].reshape(batch, whole, chunk, channels, d).transpose(2, 3))
    if (rest := steps - whole * chunk) > 0:
        out[:, whole, :, :rest].copy_(grad[:, whole * chunk :].transpose(1, 2))
        out[:, whole, :, rest:] = 0
    return out.view(batch, chunks, channels, chunk * d)
