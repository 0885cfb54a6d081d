"""S4D (plmu.models.s4d): the kernel is the recurrence's impulse response, the parallel forward equals the RNN
(float64, with and without padding, across chunks), ZOH matches scipy, the initialisations are S4D-Lin and S4D-Inv."""

import math

import numpy as np
import pytest
import torch
from conftest import compose_config
from scipy.signal import cont2discrete

from plmu.checks import ArgumentError
from plmu.models.build import build_model, model_args
from plmu.models.s4d import S4DLayer, S4DStack, depthwise_causal_conv, s4d_parameters


def stack(**options) -> S4DStack:
    settings = {"input_size": 3, "hidden_size": 8, "num_layers": 2, "state_size": 6} | options
    return S4DStack(**settings).double().eval()


def run_steps(model: S4DStack, x: torch.Tensor, mask: torch.Tensor | None = None, state=None):
    state = model.initial_state(x.shape[0]) if state is None else state
    outputs = []
    for t in range(x.shape[1]):
        out, state = model.step(x[:, t], state, None if mask is None else mask[:, t])
        outputs.append(out)
    return torch.stack(outputs, 1), state


def test_zero_order_hold_matches_scipy():
    layer = S4DLayer(2, state_size=4).double()
    dt_a, b_bar, _ = layer.discrete()
    dt = torch.exp(layer.log_dt).detach().numpy()
    a = torch.complex(-torch.exp(layer.a_real), layer.a_imag).detach().numpy()
    b = torch.view_as_complex(layer.b).detach().numpy()
    for h in range(2):
        for n in range(
            2
        ):  # one complex mode as a real 2-d system: [Re x, Im x]' = [[α, −ω], [ω, α]] x + [Re b, Im b] u
            alpha, omega = a[h, n].real, a[h, n].imag
            system = (np.array([[alpha, -omega], [omega, alpha]]), np.array([[b[h, n].real], [b[h, n].imag]]),
                      np.eye(2), np.zeros((2, 1)))  # fmt: skip
            a_d, b_d, *_ = cont2discrete(system, dt[h], method="zoh")
            a_bar = torch.exp(dt_a[h, n]).item()
            assert np.allclose(a_d[:, 0], [a_bar.real, a_bar.imag], atol=1e-12)
            assert np.allclose(b_d[:, 0], [b_bar[h, n].real.item(), b_bar[h, n].imag.item()], atol=1e-12)


def test_initialisations():
    lin, inv = S4DLayer(3, state_size=8, init="lin"), S4DLayer(3, state_size=8, init="inv")
    n = torch.arange(4, dtype=torch.float32)
    assert torch.allclose(lin.a_imag[1], math.pi * n)
    assert torch.allclose(inv.a_imag[2], 8 / math.pi * (8 / (2 * n + 1) - 1))
    assert torch.allclose(-torch.exp(lin.a_real), torch.full((3, 4), -0.5))
    assert ((torch.exp(lin.log_dt) >= 1e-3) & (torch.exp(lin.log_dt) <= 1e-1)).all()


def test_the_kernel_is_the_impulse_response_of_the_recurrence():
    layer = S4DLayer(4, state_size=6).double()
    kernel = layer.kernel(12)
    dt_a, b_bar, c = layer.discrete()
    state, response = torch.zeros(4, 3, dtype=torch.complex128), []
    for t in range(12):
        state = torch.exp(dt_a) * state + b_bar * (1.0 if t == 0 else 0.0)
        response.append(2 * (c * state).sum(-1).real)
    assert torch.allclose(kernel, torch.stack(response), atol=1e-12)


def test_depthwise_conv_is_the_direct_sum():
    u, kernel = torch.randn(2, 9, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    direct = torch.stack([sum(kernel[s] * u[:, t - s] for s in range(t + 1)) for t in range(9)], 1)
    assert torch.allclose(depthwise_causal_conv(u, kernel), direct, atol=1e-12)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_parallel_equals_the_rnn(init):
    model, x = stack(init=init), torch.randn(4, 17, 3, dtype=torch.float64)
    parallel, state = model(x, return_state=True)
    recurrent, stepped = run_steps(model, x)
    assert torch.allclose(parallel, recurrent, atol=1e-10)
    for a, b in zip(state, stepped, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_chunks_with_the_carried_state_equal_the_whole_sequence():
    model, x = stack(), torch.randn(3, 20, 3, dtype=torch.float64)
    whole, final = model(x, return_state=True)
    first, state = model(x[:, :8], return_state=True)
    second, carried = model(x[:, 8:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-10)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(carried, final, strict=True))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_gives_each_rows_unpadded_result(side):
    model, lengths, steps = stack(), [5, 9, 1, 0], 9
    x = torch.randn(4, steps, 3, dtype=torch.float64)
    mask = torch.zeros(4, steps, dtype=torch.bool)
    for row, length in enumerate(lengths):  # one block of real steps per row, at the end or at the start
        if length:
            mask[row, (steps - length if side == "left" else 0) : (steps if side == "left" else length)] = True
    parallel, state = model(x, return_state=True, mask=mask)
    recurrent, stepped = run_steps(model, x, mask)
    assert torch.allclose(parallel, recurrent, atol=1e-10)
    assert (parallel[~mask] == 0).all()
    for a, b in zip(state, stepped, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    for row, length in enumerate(lengths):
        if length:
            alone = model(x[row : row + 1][mask[row : row + 1]][None])
            assert torch.allclose(parallel[row][mask[row]], alone[0], atol=1e-10)
    last = stack(return_sequences=False)
    last.load_state_dict(model.state_dict())
    picked = last(x, mask=mask)
    for row, length in enumerate(lengths):
        expected = parallel[row][mask[row]][-1] if length else torch.zeros(8, dtype=torch.float64)
        assert torch.allclose(picked[row], expected, atol=1e-12)


def test_gradients_reach_every_parameter_and_the_count_is_stated():
    model = S4DStack(3, 8, 2, state_size=6)
    model(torch.randn(2, 10, 3)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == s4d_parameters(3, 8, 2, 6)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"state_size": 5}, "state_size"),
        ({"init": "legs"}, "init"),
        ({"dt_min": 0.5}, "dt_min"),
        ({"layer_dropout": 2}, "layer_dropout"),
    ],
)
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ArgumentError) as caught:
        S4DStack(3, 8, **options)
    assert caught.value.argument == key


TASKS = {  # task: what the data would tell (vocabulary, classes)
    "psmnist": {},
    "mackey_glass": {},
    "imdb": {"vocab_size": 16000, "num_classes": 2},
    "qqp": {"vocab_size": 16000, "num_classes": 2},
    "snli": {"vocab_size": 16000, "num_classes": 3},
    "text8": {"vocab_size": 27, "num_classes": 27},
    "iwslt15_en_vi": {"vocab_size": 17000, "num_classes": 7700},
    "imdb_lm": {"vocab_size": 16000, "num_classes": 16000},
}


@pytest.mark.parametrize("task", list(TASKS))
def test_model_s4d_builds_on_every_task_at_the_lstms_count(task):
    """conf/sizes/s4d.yaml: each task's S4D within 0.6% of the LSTM baseline's parameter count (text: the embedding
    is the same for both)."""
    counts = {}
    for family in ("s4d", "lstm"):
        cfg = compose_config([f"task={task}", f"model={family}"])
        model = build_model(cfg, model_args(cfg, TASKS[task]))
        counts[family] = sum(p.numel() for p in model.parameters())
        if family == "s4d":
            assert any(isinstance(module, S4DStack) for module in model.modules())
    assert abs(counts["s4d"] - counts["lstm"]) / counts["lstm"] < 0.006, counts  # Mackey-Glass: +0.54%
