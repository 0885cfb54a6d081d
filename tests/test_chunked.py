"""plmu.chunked: the memory and the layer's every-step output as GEMMs over chunks, against the step loop."""

import pytest
import torch
from conftest import assert_close_to

from plmu import LegendreMemory, ParallelLMU
from plmu.chunked import (
    CHUNKED_MAX_ORDER,
    choose_memory_path,
    chunk_length,
    chunk_operators,
    chunked_memory,
    chunked_readout,
)
from plmu.lti import impulse_response


def operators(memory: LegendreMemory, chunk: int, dtype=torch.float64):
    return tuple(
        t.to(dtype) for t in chunk_operators(memory._A64, impulse_response(memory._A64, memory._B64, chunk), chunk)
    )


def test_operators_are_the_impulse_response_and_the_powers_of_the_one_a_bar():
    memory = LegendreMemory(5, 7.0)
    within, ends, carry = operators(memory, 4)
    A = memory._A64
    H = impulse_response(A, memory._B64, 4)
    assert within.shape == (4 + 5, 4 * 5) and ends.shape == (4, 5) and carry.shape == (5, 5)
    blocks = within.view(9, 4, 5)  # (row, local step s, d)
    for r in range(4):
        for s in range(4):
            expected = H[s - r] if s >= r else torch.zeros(5, dtype=torch.float64)
            assert torch.equal(blocks[r, s], expected)
    for s in range(4):
        assert_close_to(blocks[4:, s].t(), torch.linalg.matrix_power(A, s + 1), atol=1e-14)
    assert torch.equal(ends, H.flip(0))
    assert_close_to(carry, torch.linalg.matrix_power(A, 4).t(), atol=1e-14)


@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("steps", [1, 2, 8, 29])  # shorter than, equal to and not a multiple of the chunk
@pytest.mark.parametrize("with_state", [False, True])
def test_memory_and_its_gradients_equal_the_loop(chunk, steps, with_state):
    memory = LegendreMemory(6, 9.0, memory_d=3).double()
    u = torch.randn(2, steps, 3, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 18, dtype=torch.float64, requires_grad=True) if with_state else None
    expected = memory(u, state, return_state=False, mode="recurrent")
    got = chunked_memory(u, state, *operators(memory, chunk))
    assert_close_to(got, expected, atol=1e-12)
    weights = torch.randn_like(expected)
    inputs = [u] + ([state] if with_state else [])
    ours = torch.autograd.grad((got * weights).sum(), inputs)
    loop = torch.autograd.grad((expected * weights).sum(), inputs)
    for a, b in zip(ours, loop, strict=True):
        assert_close_to(a, b, atol=1e-11)


def test_memory_and_readout_pass_gradcheck():
    memory = LegendreMemory(3, 4.0, memory_d=2).double()
    ops = operators(memory, 2)
    u = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, s: chunked_memory(u, s, *ops), (u, state))
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    w_m = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    w_x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    last = torch.tensor([4, 2])

    def readout(u, s, x, w_m, b, w_x):
        out, final = chunked_readout(u, s, x, w_m, b, w_x, ops, last, relu=False, multiple=8)
        return out, final

    assert torch.autograd.gradcheck(readout, (u, state, x, w_m, b, w_x))


def test_readout_pads_the_gemm_and_returns_the_hidden_width():
    layer = ParallelLMU(3, 13, order=4, theta=6.0, memory_d=2, mode="chunked").double()
    out = layer(torch.randn(2, 20, 3, dtype=torch.float64))
    assert out.shape == (2, 20, 13)
    assert out._base is not None and out._base.shape[-1] == 16  # a view of the GEMM's 16-wide output on a CPU


def test_auto_takes_the_chunked_scan_for_small_orders_on_a_cpu_only():
    assert choose_memory_path(500, 16) == "chunked"
    assert choose_memory_path(500, CHUNKED_MAX_ORDER + 1) == "fft"
    assert choose_memory_path(500, 16, "cuda") == "fft"  # not measured on a GPU: the FFT stays
    assert choose_memory_path(40, 16) == "direct"
    assert choose_memory_path(500, 16, fixed_theta=False) == "fft"
    assert chunk_length(4) == 8 and chunk_length(16) == 16 and chunk_length(468) == 64
    # long sequences of small orders: longer chunks (a power of two, at most 128), so the scan stays short
    assert chunk_length(16, 2048) == 32 and chunk_length(4, 5000) == 128 and chunk_length(16, 512) == 16
    memory = LegendreMemory(4, 8.0)
    memory(torch.randn(1, 300, 1), mode="chunked")
    memory(torch.randn(1, 5000, 1), mode="chunked")
    assert sorted(key[2] for key in memory._chunk_cache) == [8, 128]  # one set of operators per chunk length


def test_a_learned_theta_is_refused_by_name():
    memory = LegendreMemory(4, 5.0, trainable_theta=True)
    with pytest.raises(ValueError, match=r"mode must not be 'chunked' with trainable_theta=True .*use mode auto"):
        memory(torch.randn(1, 80, 1), mode="chunked")


def test_float32_layer_is_close_to_float64_and_bf16_autocast_takes_the_memory_path():
    torch.manual_seed(0)
    layer = ParallelLMU(4, 10, order=8, theta=12.0, memory_d=3, mode="chunked")
    x = torch.randn(3, 70, 4)
    reference = layer.double()(x.double())
    assert_close_to(layer.float()(x), reference.float(), rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = layer(x)  # the memory in float32, the readout by autocast: no chunked_readout under autocast
    assert lowered.shape == (3, 70, 10)
    assert (lowered.float() - reference.float()).abs().max() < 0.1
