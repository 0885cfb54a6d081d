import pytest
import torch

from plmu import conv
from plmu.conv import causal_conv, choose_conv, fft_size


def reference_conv(u, kernel):
    batch, steps, _ = u.shape
    y = torch.zeros(batch, steps, kernel.shape[2], dtype=u.dtype)
    for t in range(steps):
        for s in range(t + 1):
            y[:, t] += u[:, t - s] @ kernel[s]
    return y


@pytest.mark.parametrize("mode", ["fft", "direct"])
@pytest.mark.parametrize(("channels", "outputs", "steps"), [(1, 5, 7), (3, 4, 10), (2, 1, 13), (1, 1, 1)])
def test_causal_conv_matches_the_sum(mode, channels, outputs, steps):
    u = torch.randn(3, steps, channels, dtype=torch.float64)
    kernel = torch.randn(steps + 2, channels, outputs, dtype=torch.float64)  # longer kernels are cut to T
    bias = torch.randn(outputs, dtype=torch.float64)
    expected = reference_conv(u, kernel[:steps]) + bias
    torch.testing.assert_close(causal_conv(u, kernel, mode, bias), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("channels", "outputs"), [(1, 4), (3, 2), (2, 1)])
def test_fft_conv_gradients(channels, outputs, monkeypatch):
    monkeypatch.setattr(conv, "FFT_CHUNK_BYTES", 1)  # one sample per chunk: the chunked loops are exercised
    u = torch.randn(3, 9, channels, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(9, channels, outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(outputs, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k, b: causal_conv(a, k, "fft", b), (u, kernel, bias))


def test_chunk_size_does_not_change_the_result(monkeypatch):
    u, kernel = torch.randn(7, 20, 2), torch.randn(20, 2, 3)
    whole = causal_conv(u, kernel, "fft")
    monkeypatch.setattr(conv, "FFT_CHUNK_BYTES", 1)
    torch.testing.assert_close(causal_conv(u, kernel, "fft"), whole, rtol=0, atol=0)


def test_fft_size_is_smooth_and_minimal():
    assert fft_size(1567) == 1568  # 2^5·7^2
    assert fft_size(97) == 98
    for n in range(1, 300):
        size = fft_size(n)
        assert size >= n
        rest = size
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        assert rest == 1


def test_choose_conv_rule():
    assert choose_conv(1) == "direct"
    assert choose_conv(conv.DIRECT_MAX_STEPS) == "direct"
    assert choose_conv(conv.DIRECT_MAX_STEPS + 1) == "fft"
    cuda_limit = conv.DIRECT_MAX_STEPS_BY_DEVICE["cuda"]
    assert choose_conv(cuda_limit, "cuda") == "direct" and choose_conv(cuda_limit + 1, "cuda") == "fft"
    assert choose_conv(conv.DIRECT_MAX_STEPS + 1, "mps") == "fft"  # a device type not measured: the CPU's rule


def test_the_fft_conv_chunks_the_batch_on_a_cpu_only():
    cpu, gpu_like = torch.empty(0), torch.empty(0, device="meta")
    assert len(conv._chunks(64, 2048, 256, cpu)) > 1
    assert conv._chunks(64, 2048, 256, gpu_like) == [slice(0, 64)]


def test_unknown_conv_mode():
    with pytest.raises(ValueError, match=r"conv mode must be one of \('fft', 'direct'\), got 'fast'"):
        causal_conv(torch.zeros(1, 2, 1), torch.zeros(2, 1, 1), "fast")
