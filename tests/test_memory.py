import numpy as np
import pytest
import torch
from conftest import assert_close_to
from scipy.signal import cont2discrete

from plmu import LegendreMemory
from plmu.lti import impulse_response, legendre_delay_system

PARALLEL = ["chunked", "fft", "direct", "auto"]
# (order, theta, memory_d, batch, steps): short, odd, T ≫ θ, a small order with a long tail, many channels
CASES = [
    (4, 4.0, 1, 1, 1),
    (6, 10.0, 1, 3, 17),
    (8, 5.5, 3, 2, 64),
    (2, 5.0, 2, 2, 200),  # d = 2: the impulse response still ~2e-5 at 5θ
    (12, 3.0, 1, 2, 301),  # T ≈ 100 θ
    (32, 40.0, 4, 3, 45),
]


def reference_loop(memory: LegendreMemory, u: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
    """m_t = Ā m_{t−1} + B̄ u_t written out per channel, in float64, from scipy's Ā and B̄."""
    A, B = legendre_delay_system(memory.order)
    theta = float(torch.as_tensor(memory.theta).detach())
    system = (A.numpy() / theta, B.numpy() / theta, np.eye(memory.order), np.zeros((memory.order, 1)))
    A_bar, B_bar, *_ = cont2discrete(system, dt=1, method="zoh")
    A_bar, B_bar = torch.from_numpy(A_bar), torch.from_numpy(B_bar)[:, 0]
    batch, steps, channels = u.shape
    m = torch.zeros(batch, channels, memory.order, dtype=torch.float64)
    if state is not None:
        m = state.double().reshape(batch, channels, memory.order).clone()
    out = []
    for t in range(steps):
        m = torch.einsum("ij,bcj->bci", A_bar, m) + u[:, t, :, None].double() * B_bar
        out.append(m.reshape(batch, -1))
    return torch.stack(out, 1)


@pytest.mark.parametrize(("order", "theta", "memory_d", "batch", "steps"), CASES)
@pytest.mark.parametrize("mode", ["recurrent", *PARALLEL])
def test_every_path_equals_the_recurrence_float64(order, theta, memory_d, batch, steps, mode):
    memory = LegendreMemory(order, theta, memory_d).double()
    u = torch.randn(batch, steps, memory_d, dtype=torch.float64)
    m = memory(u, mode=mode)
    assert m.shape == (batch, steps, memory_d * order) and m.dtype == torch.float64
    assert_close_to(m, reference_loop(memory, u), atol=1e-10)


@pytest.mark.parametrize(("order", "theta", "memory_d", "batch", "steps"), CASES)
@pytest.mark.parametrize("mode", ["recurrent", *PARALLEL])
def test_every_path_float32_within_1e5_relative(order, theta, memory_d, batch, steps, mode):
    memory = LegendreMemory(order, theta, memory_d)
    u = torch.randn(batch, steps, memory_d)
    m = memory(u, mode=mode)
    assert m.dtype == torch.float32
    assert_close_to(m, reference_loop(memory, u), rtol=1e-5)


def test_psmnist_size_fft_in_float32():
    memory = LegendreMemory(256, 784.0)
    u = torch.rand(2, 784, 1)
    assert_close_to(memory(u, mode="fft"), reference_loop(memory, u), atol=2e-6)


@pytest.mark.parametrize(("order", "theta", "memory_d", "batch", "steps"), CASES)
def test_last_state_is_the_final_memory(order, theta, memory_d, batch, steps):
    memory = LegendreMemory(order, theta, memory_d).double()
    u = torch.randn(batch, steps, memory_d, dtype=torch.float64)
    last = memory.last_state(u)
    assert last.shape == (batch, memory_d * order)
    assert_close_to(last, reference_loop(memory, u)[:, -1], atol=1e-10)


@pytest.mark.parametrize("mode", ["recurrent", *PARALLEL])
def test_chunked_streaming_with_carried_state_equals_one_shot(mode):
    memory = LegendreMemory(10, 12.0, memory_d=2).double()
    u = torch.randn(3, 71, 2, dtype=torch.float64)
    whole = reference_loop(memory, u)
    state, pieces = memory.initial_state(3), []
    for chunk in torch.split(u, [1, 5, 33, 2, 30], dim=1):
        last = memory.last_state(chunk, state)
        m, state = memory(chunk, state, mode=mode)
        assert_close_to(last, state, atol=1e-10)
        pieces.append(m)
    assert_close_to(torch.cat(pieces, 1), whole, atol=1e-10)
    assert_close_to(state, whole[:, -1], atol=1e-10)


def test_step_one_sample_at_a_time():
    memory = LegendreMemory(7, 9.0, memory_d=3).double()
    u = torch.randn(2, 25, 3, dtype=torch.float64)
    state, outputs = memory.initial_state(2), []
    for t in range(25):
        m_t, state = memory.step(u[:, t], state)
        outputs.append(m_t)
    assert_close_to(torch.stack(outputs, 1), reference_loop(memory, u), atol=1e-12)


def test_return_state_without_initial_state():
    memory = LegendreMemory(5, 6.0)
    u = torch.randn(2, 9, 1)
    m, last = memory(u, return_state=True)
    torch.testing.assert_close(last, m[:, -1])


def test_channel_major_layout():
    # Channel c's memory sits at flat indices c·order .. c·order + order − 1.
    memory = LegendreMemory(4, 5.0, memory_d=2).double()
    u = torch.zeros(1, 6, 2, dtype=torch.float64)
    u[:, :, 1] = torch.randn(6, dtype=torch.float64)
    m = memory(u)
    assert m[..., :4].abs().max() == 0
    assert_close_to(m[..., 4:], LegendreMemory(4, 5.0).double()(u[:, :, 1:]), atol=1e-12)


def test_A_B_are_float64_exact_after_double_and_default_dtype():
    reference_A, reference_B = LegendreMemory(20, 30.0)._A64, LegendreMemory(20, 30.0)._B64
    memory = LegendreMemory(20, 30.0)
    assert memory.A.dtype == torch.float32 and memory.A.shape == (20, 20) and memory.B.shape == (20, 1)
    memory.double()
    assert memory.A.dtype == torch.float64
    torch.testing.assert_close(memory.A, reference_A, rtol=0, atol=0)
    torch.testing.assert_close(memory.B, reference_B, rtol=0, atol=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.testing.assert_close(LegendreMemory(20, 30.0).A, reference_A, rtol=0, atol=0)
    finally:
        torch.set_default_dtype(previous)


def test_kernel_cache_follows_dtype():
    memory = LegendreMemory(6, 8.0)
    u = torch.randn(1, 40, 1, dtype=torch.float64)
    memory(u.float())
    memory.double()  # clears the float32 cache; the float64 kernel is rebuilt from float64 Ā
    assert_close_to(memory(u, mode="fft"), reference_loop(memory, u), atol=1e-12)


def test_kernel_cache_keeps_one_kernel_per_dtype_grown_to_the_longest_length():
    memory = LegendreMemory(12, 30.0).double()
    for length in [5, 300, 17, 300, 1000, 3]:
        H = memory.impulse_response(length)
        # a prefix of the cached kernel is bit-identical to a fresh build at exactly that length
        assert torch.equal(H, impulse_response(memory._A64, memory._B64, length))
        assert list(memory._kernel_cache) == [(torch.float64, torch.device("cpu"))]
    # grown to the next power of two ≥ the longest length (krylov doubles to it anyway), never shrunk
    assert memory._kernel_cache[(torch.float64, torch.device("cpu"))].shape == (1024, 12)
    memory.impulse_response(77, torch.float32)
    assert {key: H.shape[0] for key, H in memory._kernel_cache.items()} == {
        (torch.float64, torch.device("cpu")): 1024,
        (torch.float32, torch.device("cpu")): 128,
    }
    assert torch.equal(memory.impulse_response(77, torch.float32), memory.impulse_response(77).float())


def test_kernel_cache_stays_bounded_under_ragged_lengths():
    memory = LegendreMemory(6, 10.0)
    for length in torch.randint(1, 600, (200,)).tolist():
        memory(torch.randn(1, length, 1), mode="fft" if length > 64 else "auto")
    (cached,) = memory._kernel_cache.values()
    assert cached.shape == (1024, 6)


def test_kernel_cache_cleared_by_casts_and_bypassed_by_trainable_theta():
    memory = LegendreMemory(6, 8.0)
    memory.impulse_response(40)
    assert list(memory._kernel_cache) == [(torch.float32, torch.device("cpu"))]
    memory.double()
    assert memory._kernel_cache == {}
    memory.to(torch.float32)
    assert memory._kernel_cache == {}
    learned = LegendreMemory(6, 8.0, trainable_theta=True)
    learned(torch.randn(1, 40, 1))
    learned.last_state(torch.randn(1, 40, 1))
    assert learned._kernel_cache == {}
    with pytest.raises(ValueError, match="length must be positive, got 0"):
        memory.impulse_response(0)


@pytest.mark.parametrize("mode", PARALLEL)
def test_gradcheck_parallel_paths(mode):
    memory = LegendreMemory(5, 7.0, memory_d=2).double()
    u = torch.randn(2, 11, 2, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: memory(a, mode=mode), (u,))
    assert torch.autograd.gradcheck(lambda a, s: memory(a, s, mode=mode)[0], (u, state))
    assert torch.autograd.gradcheck(lambda a, s: memory.last_state(a, s), (u, state))


class _LastState(torch.nn.Module):
    def __init__(self, memory: LegendreMemory) -> None:
        super().__init__()
        self.memory = memory

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.memory.last_state(u)


@pytest.mark.parametrize("mode", ["recurrent", *(m for m in PARALLEL if m != "chunked"), "last_state"])
def test_trainable_theta_gradcheck(mode):
    """(The chunked scan refuses a learned θ: tests/test_chunked.py.)"""
    memory = LegendreMemory(4, 6.0, trainable_theta=True).double()
    module, kwargs = (_LastState(memory), {}) if mode == "last_state" else (memory, {"mode": mode})
    name = "memory.log_theta" if mode == "last_state" else "log_theta"
    u = torch.randn(2, 13, 1, dtype=torch.float64)
    log_theta = torch.tensor(np.log(6.0), dtype=torch.float64, requires_grad=True)
    forward = lambda lt: torch.func.functional_call(module, {name: lt}, (u,), kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(forward, (log_theta,))


def test_trainable_theta_learns_and_recomputes():
    memory = LegendreMemory(4, 6.0, trainable_theta=True)
    assert [name for name, _ in memory.named_parameters()] == ["log_theta"]
    assert memory.theta.item() == pytest.approx(6.0)
    u = torch.randn(2, 40, 1)
    before = memory(u).detach()
    loss = memory(u).square().mean()
    loss.backward()
    assert memory.log_theta.grad is not None and memory.log_theta.grad.abs() > 0
    with torch.no_grad():
        memory.log_theta += 0.5
    assert not torch.allclose(memory(u), before)  # no stale cached kernel
    assert_close_to(memory(u, mode="fft"), reference_loop(memory, u), rtol=1e-5)


def test_euler_discretizer_when_stable():
    memory = LegendreMemory(4, 20.0, discretizer="euler").double()
    u = torch.randn(1, 30, 1, dtype=torch.float64)
    A = torch.eye(4, dtype=torch.float64) + legendre_delay_system(4)[0] / 20.0
    torch.testing.assert_close(memory.A, A, rtol=0, atol=1e-15)
    assert_close_to(memory(u, mode="fft"), memory(u, mode="recurrent"), atol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(order=0, theta=4.0), "order must be a positive int.*got 0"),
        (dict(order=-2, theta=4.0), "order must be a positive int.*got -2"),
        (dict(order=4, theta=0.0), "theta must be a positive number.*got 0.0"),
        (dict(order=4, theta=-1.0), "theta must be a positive number.*got -1.0"),
        (dict(order=4, theta=float("nan")), "theta must be a positive number.*got nan"),
        (dict(order=4, theta=4.0, memory_d=0), "memory_d must be a positive int.*got 0"),
        (
            dict(order=4, theta=4.0, discretizer="tustin"),
            r"^discretizer must be one of \['zoh', 'euler'\], got 'tustin'$",
        ),
        (
            dict(order=2.0, theta=4.0),
            r"^order must be a positive int \(the number of Legendre coefficients\), got 2.0$",
        ),
        (dict(order=4, theta=True), r"^theta must be a positive number \(time steps: the memory window\), got True$"),
        (dict(order=4, theta="4"), r"^theta must be a positive number .*, got '4'$"),
        (dict(order=4, theta=4.0, memory_d=True), r"^memory_d must be a positive int .*, got True$"),
        (dict(order=4, theta=4.0, memory_d=1.5), r"^memory_d must be a positive int .*, got 1.5$"),
        (dict(order=4, theta=4.0, trainable_theta="yes"), r"^trainable_theta must be true or false, got 'yes'$"),
        (dict(order=4, theta=4.0, trainable_theta=1), r"^trainable_theta must be true or false, got 1$"),
        (dict(order=4, theta=4.0, discretizer="euler"), r"discretizer='euler' is unstable for order=4, theta=4.0.*zoh"),
        (dict(order=256, theta=784.0, discretizer="euler"), r"unstable for order=256, theta=784.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LegendreMemory(**kwargs)


def test_bad_inputs_name_the_shape_and_the_fix():
    memory = LegendreMemory(4, 4.0, memory_d=2)
    with pytest.raises(ValueError, match=r"u must be \(batch, time, memory_d=2\), got shape \(3, 2\)"):
        memory(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"memory_d=2\), got shape \(3, 5, 1\)"):
        memory(torch.zeros(3, 5, 1))
    with pytest.raises(
        ValueError, match=r"mode must be one of \('auto', 'recurrent', 'chunked', 'fft', 'direct'\), got 'ffft'"
    ):
        memory(torch.zeros(3, 5, 2), mode="ffft")
    with pytest.raises(ValueError, match=r"state must be \(batch, memory_d·order\) = \(3, 8\), got \(3, 4\)"):
        memory(torch.zeros(3, 5, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"u_t must be \(batch, memory_d=2\)"):
        memory.step(torch.zeros(3, 5, 2), memory.initial_state(3))
    with pytest.raises(ValueError, match="no time steps"):
        memory(torch.zeros(3, 0, 2))


def test_bf16_autocast_runs_the_memory_in_float32():
    memory = LegendreMemory(16, 20.0)
    u = torch.randn(2, 50, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for mode in ["recurrent", "fft", "direct"]:
            m = memory(u.bfloat16(), mode=mode)
            assert m.dtype == torch.float32
            assert_close_to(m, reference_loop(memory, u.bfloat16().float()), rtol=1e-5)
