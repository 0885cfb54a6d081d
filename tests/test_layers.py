import re

import pytest
import torch
from conftest import assert_close_to

from plmu import ParallelLMU, ParallelLMUStack
from plmu.layers import LAYER_MODES, activation

ACTIVATIONS = re.escape("['gelu', 'identity', 'relu', 'sigmoid', 'tanh']")

FULL_MODES = ["fused", "chunked", "fft", "direct", "auto"]


def make_pair(mode: str, **kwargs) -> tuple[ParallelLMU, ParallelLMU]:
    """The same weights twice: one layer in ``mode`` and the recurrent reference, float64."""
    layer = ParallelLMU(3, 5, order=6, theta=9.0, memory_d=2, mode=mode, **kwargs).double()
    reference = ParallelLMU(3, 5, order=6, theta=9.0, memory_d=2, mode="recurrent", **kwargs).double()
    reference.load_state_dict(layer.state_dict())
    return layer, reference


@pytest.mark.parametrize("mode", FULL_MODES)
@pytest.mark.parametrize("steps", [1, 7, 90])
def test_full_sequence_paths_equal_the_loop(mode, steps):
    layer, reference = make_pair(mode, f1="tanh", f2="relu")
    x = torch.randn(4, steps, 3, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (4, steps, 5)
    assert_close_to(out, reference(x), atol=1e-10)


@pytest.mark.parametrize("mode", FULL_MODES)
def test_last_step_uses_last_state_and_equals_the_loop(mode):
    layer, reference = make_pair(mode, return_sequences=False)
    x = torch.randn(4, 33, 3, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (4, 5)
    assert_close_to(out, reference(x), atol=1e-10)
    assert layer.resolve_mode(33) == (mode if mode != "auto" else "last_state")


@pytest.mark.parametrize("mode", FULL_MODES)
def test_chunked_forward_with_state_equals_one_shot(mode):
    layer, _ = make_pair(mode)
    x = torch.randn(2, 60, 3, dtype=torch.float64)
    whole, final = layer(x, return_state=True)
    state, pieces = layer.initial_state(2).double(), []
    for chunk in torch.split(x, [3, 40, 17], dim=1):
        out, state = layer(chunk, state)
        pieces.append(out)
    assert_close_to(torch.cat(pieces, 1), whole, atol=1e-10)
    assert_close_to(state, final, atol=1e-10)


def test_step_equals_parallel_forward():
    layer, _ = make_pair("auto", f1="tanh")
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    state, outputs = layer.initial_state(2).double(), []
    for t in range(30):
        o_t, state = layer.step(x[:, t], state)
        outputs.append(o_t)
    assert_close_to(torch.stack(outputs, 1), layer(x), atol=1e-10)


def test_auto_rule():
    wide = ParallelLMU(1, 8, order=16, theta=20.0)  # hidden < memory_d·order: fold W_m into the kernel
    narrow = ParallelLMU(1, 32, order=4, theta=4.0)  # hidden ≥ memory_d·order: materialise the small memory
    assert wide.resolve_mode(500) == "fused"
    assert narrow.resolve_mode(500) == "chunked"  # a small order on a CPU: the chunked scan (plmu.chunked)
    assert narrow.resolve_mode(10) == "direct"
    assert wide.resolve_mode(500, "cuda") == "fused"  # the fused readout was the faster on an H100 too
    assert narrow.resolve_mode(100, "cuda") == "direct" and narrow.resolve_mode(129, "cuda") == "fft"  # per device
    assert ParallelLMU(1, 8, order=16, theta=20.0, return_sequences=False).resolve_mode(500) == "last_state"
    # several memories: the fused kernel's per-frequency complex matmuls lost to the memory path (module docstring)
    assert ParallelLMU(4, 8, order=16, theta=20.0, memory_d=2).resolve_mode(500) == "chunked"
    assert ParallelLMU(4, 8, order=200, theta=20.0, memory_d=2).resolve_mode(500) == "fft"  # a large order: the FFT
    learned = ParallelLMU(4, 8, order=16, theta=20.0, memory_d=2, trainable_theta=True)
    assert learned.resolve_mode(500) == "fft"  # no gradient reaches θ through the chunked scan


@pytest.mark.parametrize(("mode", "memory_d", "sequences"), [("fused", 1, True), ("fft", 1, True), ("direct", 1, True),
                                                            ("auto", 2, False)])  # fmt: skip
def test_layer_gradcheck(mode, memory_d, sequences):
    """Every path's gradients, θ's included; the last state of x (f1 the identity, x no wider than u) too."""
    layer = ParallelLMU(2, 3, order=4, theta=5.0, memory_d=memory_d, mode=mode, trainable_theta=True,
                        return_sequences=sequences).double()  # fmt: skip
    x = torch.randn(2, 9, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(layer.parameters())
    names = [name for name, _ in layer.named_parameters()]

    def forward(inputs, *weights):
        return torch.func.functional_call(layer, dict(zip(names, weights, strict=True)), (inputs,))

    assert torch.autograd.gradcheck(forward, (x, *[p.detach().requires_grad_() for p in params]))


def test_options_skip_dropout_activations():
    layer = ParallelLMU(3, 4, order=5, theta=5.0, skip=False, dropout=0.5, f1="gelu", f2="sigmoid")
    assert layer.input_to_output is None
    x = torch.randn(2, 10, 3)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # dropout is active in training


@pytest.mark.parametrize("return_sequences", [False, True])
def test_memory_dropout_drops_m_in_training_only_and_keeps_every_path_exact(return_sequences):
    layer, reference = make_pair("auto", return_sequences=return_sequences, memory_dropout=0.5)
    x = torch.randn(4, 33, 3, dtype=torch.float64)
    layer.eval(), reference.eval()
    assert_close_to(layer(x), reference(x), atol=1e-10)  # evaluation: no dropout, every path the recurrence
    layer.train()
    assert layer.resolve_mode(33) != "fused"  # fused would never materialise m to drop from
    torch.manual_seed(1)
    dropped = layer(x)
    torch.manual_seed(1)
    assert torch.equal(layer(x), dropped) and not torch.allclose(dropped, layer(x))  # seeded, then fresh masks
    # the mask falls on m: with W_m's weights zeroed, what is left (W_x x + b) is not dropped at all
    with torch.no_grad():
        layer.memory_to_output.weight.zero_()
    assert torch.equal(layer(x), layer(x))


def test_memory_dropout_refuses_the_fused_path_in_training():
    layer = ParallelLMU(2, 3, order=4, theta=5.0, mode="fused", memory_dropout=0.1)
    with pytest.raises(ValueError, match=r"memory_dropout needs the memory materialised while training"):
        layer(torch.randn(1, 6, 2))
    layer.eval()
    assert layer(torch.randn(1, 6, 2)).shape == (1, 6, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(memory_dropout=1.0), r"^memory_dropout must be a number in \[0, 1\), got 1.0$"),
        (
            dict(mode="fast"),
            r"^mode must be one of \['auto', 'fused', 'chunked', 'fft', 'direct', 'recurrent'\], got 'fast'$",
        ),
        (dict(f1="swish"), rf"^f1 must be one of {ACTIVATIONS}, got 'swish'$"),
        (dict(f2="swish"), rf"^f2 must be one of {ACTIVATIONS}, got 'swish'$"),
        (dict(f2=None), rf"^f2 must be one of {ACTIVATIONS}, got None$"),
        (dict(input_size=0), r"^input_size must be a positive int, got 0$"),
        (dict(hidden_size=2.5), r"^hidden_size must be a positive int, got 2.5$"),
        (dict(hidden_size=True), r"^hidden_size must be a positive int, got True$"),
        (dict(skip="no"), r"^skip must be true or false, got 'no'$"),
        (dict(dropout=1), r"^dropout must be a number in \[0, 1\), got 1$"),
        (dict(dropout="0.1"), r"^dropout must be a number in \[0, 1\), got '0.1'$"),
        (dict(return_sequences=None), r"^return_sequences must be true or false, got None$"),
        # the memory's own arguments, checked by LegendreMemory
        (dict(theta=-3.0), r"^theta must be a positive number \(time steps: the memory window\), got -3.0$"),
        (dict(order=0), r"^order must be a positive int \(the number of Legendre coefficients\), got 0$"),
        (dict(memory_d=0), r"^memory_d must be a positive int \(the number of input channels\), got 0$"),
        (dict(discretizer="rk4"), r"^discretizer must be one of \['zoh', 'euler'\], got 'rk4'$"),
        (dict(trainable_theta="off"), r"^trainable_theta must be true or false, got 'off'$"),
    ],
)
def test_bad_layer_arguments(kwargs, message):
    args = dict(input_size=2, hidden_size=3, order=4, theta=4.0) | kwargs
    with pytest.raises(ValueError, match=message):
        ParallelLMU(**args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_layers=0), r"^num_layers must be a positive int, got 0$"),
        (dict(num_layers=2.0), r"^num_layers must be a positive int, got 2.0$"),
        (dict(hidden_size=-1), r"^hidden_size must be a positive int, got -1$"),
        (dict(input_size="2"), r"^input_size must be a positive int, got '2'$"),
        (dict(residual="yes"), r"^residual must be true or false, got 'yes'$"),
        (dict(norm="batch"), r"^norm must be one of \[None, 'layer'\], got 'batch'$"),
        (dict(return_sequences=0), r"^return_sequences must be true or false, got 0$"),
        (dict(mode="fastest"), r"^mode must be one of \["),  # passed on to every layer, which checks it
    ],
)
def test_bad_stack_arguments(kwargs, message):
    args = dict(input_size=2, hidden_size=3, num_layers=2, order=4, theta=4.0) | kwargs
    with pytest.raises(ValueError, match=message):
        ParallelLMUStack(**args)


def test_stack_accepts_its_options():
    stack = ParallelLMUStack(2, 3, 2, residual=True, norm="layer", return_sequences=False, order=4, theta=4.0)
    assert stack(torch.randn(5, 7, 2)).shape == (5, 3)


def test_activation_by_name():
    assert isinstance(activation("tanh"), torch.nn.Tanh)
    with pytest.raises(ValueError, match=rf"^activation must be one of {ACTIVATIONS}, got 'swish'$"):
        activation("swish")


def test_bad_layer_input():
    layer = ParallelLMU(2, 3, order=4, theta=4.0)
    with pytest.raises(ValueError, match=r"x must be \(batch, time, input_size=2\), got shape \(5, 2\)"):
        layer(torch.zeros(5, 2))


def test_layer_modes_constant():
    assert set(LAYER_MODES) == {"auto", "fused", "chunked", "fft", "direct", "recurrent"}


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", [None, "layer"])
def test_stack_streams_and_steps(residual, norm):
    stack = ParallelLMUStack(3, 6, num_layers=3, residual=residual, norm=norm, order=5, theta=7.0).double()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    whole = stack(x)
    assert whole.shape == (2, 40, 6)
    state, pieces = stack.initial_state(2), []
    state = [s.double() for s in state]
    for chunk in torch.split(x, [11, 29], dim=1):
        out, state = stack(chunk, state)
        pieces.append(out)
    assert_close_to(torch.cat(pieces, 1), whole, atol=1e-10)
    state, steps = [s.double() for s in stack.initial_state(2)], []
    for t in range(40):
        out, state = stack.step(x[:, t], state)
        steps.append(out)
    assert_close_to(torch.stack(steps, 1), whole, atol=1e-10)


def test_stack_last_step_only():
    stack = ParallelLMUStack(3, 6, num_layers=2, return_sequences=False, order=5, theta=7.0).double()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    assert [layer.return_sequences for layer in stack.layers] == [True, False]
    full = ParallelLMUStack(3, 6, num_layers=2, order=5, theta=7.0).double()
    full.load_state_dict(stack.state_dict())
    assert_close_to(stack(x), full(x)[:, -1], atol=1e-10)


def test_bf16_autocast():
    layer = ParallelLMU(3, 8, order=16, theta=20.0)
    x = torch.randn(2, 100, 3)
    reference = layer(x)
    for mode in ["fused", "fft", "recurrent"]:
        layer.mode = mode
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        assert_close_to(out.float(), reference, rtol=3e-2)


def test_torch_compile_matches_eager():
    layer = ParallelLMU(2, 8, order=16, theta=20.0)
    x = torch.randn(2, 100, 2)
    compiled = torch.compile(layer)
    for mode in ["fused", "fft", "direct"]:
        layer.mode = mode
        torch._dynamo.reset()
        assert_close_to(compiled(x), layer(x), rtol=1e-5)
    out = compiled(x.requires_grad_())
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_equal_the_loop():
    layer, reference = make_pair("auto")
    x = torch.randn(4, 50, 3, dtype=torch.float64)
    expected = reference(x)
    layer = layer.cuda()
    for mode in FULL_MODES:
        layer.mode = mode
        assert_close_to(layer(x.cuda()).cpu(), expected, atol=1e-10)


@pytest.mark.parametrize(("input_size", "memory_d"), [(1, 1), (2, 3)])
@pytest.mark.parametrize("x_needs_grad", [False, True])
def test_last_state_of_the_inputs_equals_the_loop_with_gradients(input_size, memory_d, x_needs_grad):
    """f1 the identity: m_T(U x + b) = U m_T(x) + b Σ H_k, eq. 25 run on x (ParallelLMU._last_memory)."""
    torch.manual_seed(0)
    layer = ParallelLMU(input_size, 5, order=7, theta=11.0, memory_d=memory_d, return_sequences=False).double()
    x = torch.randn(3, 40, input_size, dtype=torch.float64, requires_grad=x_needs_grad)
    weights = torch.randn(3, 5, dtype=torch.float64)
    inputs = [*layer.parameters()] + ([x] if x_needs_grad else [])
    fast = torch.autograd.grad((layer(x) * weights).sum(), inputs)
    layer.mode = "recurrent"
    loop = torch.autograd.grad((layer(x) * weights).sum(), inputs)
    for a, b in zip(fast, loop, strict=True):
        assert_close_to(a, b, atol=1e-10)
