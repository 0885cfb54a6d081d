import math

import pytest
import torch
from conftest import assert_close_to

from plmu import OriginalLMU, OriginalLMUCell, OriginalLMUStack


def test_cell_follows_the_2019_equations():
    cell = OriginalLMUCell(3, 5, order=4, theta=6.0, memory_d=2).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    h, m = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    h_new, (h_state, m_new) = cell(x, (h, m))
    u = x @ cell.input_encoders.weight.T + h @ cell.hidden_encoders.weight.T + m @ cell.memory_encoders.weight.T
    A, B = cell.memory.A, cell.memory.B
    m_expected = (m.reshape(2, 2, 4) @ A.T + u[..., None] * B[:, 0]).reshape(2, 8)
    h_expected = torch.tanh(
        x @ cell.input_kernel.weight.T + h @ cell.hidden_kernel.weight.T + m_expected @ cell.memory_kernel.weight.T
    )
    assert_close_to(m_new, m_expected, atol=1e-14)
    assert_close_to(h_new, h_expected, atol=1e-14)
    assert h_state is h_new


def test_layer_equals_the_cell_step_by_step_and_streams():
    layer = OriginalLMU(3, 5, order=4, theta=6.0, init="2019", bias=True).double()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    whole, final = layer(x, return_state=True)
    state, outputs = layer.initial_state(2), []
    for t in range(20):
        h, state = layer.step(x[:, t], state)
        outputs.append(h)
    assert_close_to(torch.stack(outputs, 1), whole, atol=1e-14)
    first, state = layer(x[:, :7], layer.initial_state(2))
    second, state = layer(x[:, 7:], state)
    assert_close_to(torch.cat([first, second], 1), whole, atol=1e-14)
    assert_close_to(state[1], final[1], atol=1e-14)


def test_last_step_only():
    layer = OriginalLMU(1, 4, order=3, theta=5.0, return_sequences=False)
    x = torch.randn(2, 9, 1)
    full = OriginalLMU(1, 4, order=3, theta=5.0)
    full.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x), full(x)[:, -1])


def test_2019_initialisers():
    cell = OriginalLMUCell(50, 200, order=64, theta=10.0)
    assert cell.memory_encoders.weight.abs().max() == 0
    limit = math.sqrt(3 / 50)
    assert cell.input_encoders.weight.abs().max() <= limit
    for weight in (cell.input_kernel.weight, cell.hidden_kernel.weight, cell.memory_kernel.weight):
        std = math.sqrt(2 / sum(weight.shape))
        assert weight.std().item() == pytest.approx(std, rel=0.05)
        assert weight.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6  # truncated at 2σ


def test_psmnist_init():
    cell = OriginalLMUCell(1, 212, order=256, theta=784.0, init="psmnist")
    assert torch.all(cell.input_encoders.weight == 1)
    for layer in (cell.hidden_encoders, cell.memory_encoders, cell.input_kernel, cell.hidden_kernel):
        assert layer.weight.abs().max() == 0
    # The 2019 psMNIST model: 212 units, order 256: ~102k parameters with a 10-class head (keras counts all).
    head = 212 * 10 + 10
    assert sum(p.numel() for p in cell.parameters()) + head == pytest.approx(102_000, rel=0.01)


def test_shares_the_memory_system():
    cell = OriginalLMUCell(1, 4, order=6, theta=7.0)
    from plmu import LegendreMemory

    torch.testing.assert_close(cell.memory.A, LegendreMemory(6, 7.0).A)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(init="xavier"), r"^init must be one of \['2019', 'psmnist'\], got 'xavier'$"),
        (dict(init=2019), r"^init must be one of \['2019', 'psmnist'\], got 2019$"),  # the int is not the name
        (dict(bias="maybe"), r"^bias must be true or false, got 'maybe'$"),
        (dict(input_size=0), r"^input_size must be a positive int, got 0$"),
        (dict(hidden_size=4.0), r"^hidden_size must be a positive int, got 4.0$"),
        (dict(theta=0), r"^theta must be a positive number \(time steps: the memory window\), got 0$"),
        (dict(memory_d=False), r"^memory_d must be a positive int \(the number of input channels\), got False$"),
    ],
)
def test_bad_cell_arguments(kwargs, message):
    args = dict(input_size=1, hidden_size=4, order=6, theta=7.0) | kwargs
    with pytest.raises(ValueError, match=message):
        OriginalLMUCell(**args)
    with pytest.raises(ValueError, match=message):  # the layer and the stack pass them on to the cell
        OriginalLMU(**args)
    with pytest.raises(ValueError, match=message):
        OriginalLMUStack(**{"num_layers": 2} | args)


def test_bad_layer_and_stack_arguments():
    with pytest.raises(ValueError, match=r"^return_sequences must be true or false, got 'no'$"):
        OriginalLMU(1, 4, order=6, theta=7.0, return_sequences="no")
    with pytest.raises(ValueError, match=r"^num_layers must be a positive int, got 0$"):
        OriginalLMUStack(1, 4, 0, order=6, theta=7.0)
    with pytest.raises(ValueError, match=r"^init must be one of \['2019', 'psmnist'\], got 'glorot'$"):
        OriginalLMUCell(1, 4, order=6, theta=7.0).reset_parameters("glorot")


def test_bad_input():
    with pytest.raises(ValueError, match=r"x must be \(batch, time, input_size=1\)"):
        OriginalLMU(1, 4, order=6, theta=7.0)(torch.zeros(2, 3))


def test_bf16_autocast_and_float64():
    layer = OriginalLMU(2, 6, order=4, theta=5.0)
    x = torch.randn(3, 15, 2)
    reference = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    assert_close_to(out.float(), reference, atol=3e-2)
    assert layer.double()(x.double()).dtype == torch.float64


def test_torch_compile_matches_eager():
    layer = OriginalLMU(2, 6, order=4, theta=5.0)
    x = torch.randn(3, 12, 2)
    assert_close_to(torch.compile(layer)(x), layer(x), atol=1e-5)
