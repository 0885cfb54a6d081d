"""Padding masks: a padded batch gives every example exactly its unpadded result, in every mode, for left and right
padding, whatever the padding holds."""

import pytest
import torch
from conftest import assert_close_to

from plmu import LegendreMemory, OriginalLMUStack, ParallelLMU, ParallelLMUStack
from plmu.layers import last_valid

MODES = ["recurrent", "chunked", "fft", "direct", "fused", "auto"]
LENGTHS = [90, 1, 37, 64]  # the longest fills the batch; 1 is a single real step
STEPS = 90
TOLERANCE = 1e-10


def pad(examples: list[torch.Tensor], steps: int, side: str, fill: float | None = None) -> tuple:
    """(L_i, F) examples → x (batch, steps, F), mask (batch, steps); padding is random garbage, or ``fill``."""
    x = 10 * torch.randn(len(examples), steps, examples[0].shape[-1], dtype=torch.float64)
    if fill is not None:
        x.fill_(fill)
    mask = torch.zeros(len(examples), steps, dtype=torch.bool)
    for i, example in enumerate(examples):
        where = slice(steps - len(example), steps) if side == "left" else slice(0, len(example))
        x[i, where], mask[i, where] = example, True
    return x, mask


def real_steps(values: torch.Tensor, length: int, side: str) -> torch.Tensor:
    """One example's outputs (steps, ...) at its real steps."""
    return values[-length:] if side == "left" else values[:length]


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def make_layer(mode: str, return_sequences: bool = True) -> ParallelLMU:
    # two memories, so "auto" runs the memory path, fft or direct (or last_state without sequences)
    layer = ParallelLMU(3, 5, order=6, theta=9.0, memory_d=2, f1="tanh", mode=mode, return_sequences=return_sequences)
    return layer.double()


def examples(lengths=LENGTHS, features: int = 3) -> list[torch.Tensor]:
    return [torch.randn(length, features, dtype=torch.float64) for length in lengths]


def layer_error(model, side: str, fill: float | None = None) -> float:
    """max |padded − unpadded| over every example's real outputs and its returned state (or states)."""
    xs = examples(features=3)
    x, mask = pad(xs, STEPS, side, fill)
    out, states = model(x, return_state=True, mask=mask)
    worst = 0.0
    for i, example in enumerate(xs):
        ref_out, ref_states = model(example[None], return_state=True)
        got = real_steps(out[i], len(example), side) if out.dim() == 3 else out[i]
        worst = max(worst, max_error(got, ref_out[0]))
        for state, ref_state in zip(_as_list(states), _as_list(ref_states), strict=True):
            worst = max(worst, max_error(state[i], ref_state[0]))
    return worst


def _as_list(states) -> list[torch.Tensor]:
    return states if isinstance(states, list) else [states]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_layer_padding_gives_each_example_its_unpadded_result(mode, return_sequences, side):
    # return_sequences=False is the last-state path (eq. 25) for every mode but recurrent
    assert layer_error(make_layer(mode, return_sequences), side) <= TOLERANCE


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize(("residual", "norm"), [(False, None), (True, "layer")])
@pytest.mark.parametrize("mode", ["fused", "chunked", "fft", "recurrent"])
def test_stack_padding_gives_each_example_its_unpadded_result(mode, residual, norm, return_sequences, side):
    stack = ParallelLMUStack(
        3, 6, num_layers=2, residual=residual, norm=norm, return_sequences=return_sequences, order=5, theta=7.0
    )
    for layer in stack.layers:
        layer.mode = mode
    assert layer_error(stack.double(), side) <= TOLERANCE


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("mode", ["recurrent", "chunked", "fft", "direct", "auto"])
def test_memory_padding_gives_each_example_its_unpadded_result(mode, side):
    memory = LegendreMemory(8, 11.0, memory_d=2).double()
    us = examples(features=2)
    u, mask = pad(us, STEPS, side)
    m, last = memory(u, mode=mode, return_state=True, mask=mask)
    last_only = memory.last_state(u, mask=mask)
    for i, example in enumerate(us):
        reference = memory(example[None], mode="recurrent")[0]
        assert_close_to(real_steps(m[i], len(example), side), reference, atol=TOLERANCE)
        assert_close_to(last[i], reference[-1], atol=TOLERANCE)
        assert_close_to(last_only[i], reference[-1], atol=TOLERANCE)


@pytest.mark.parametrize("mode", ["recurrent", "chunked", "fft", "direct"])
def test_masked_memory_with_a_state_is_a_zero_input_at_padding(mode):
    # A carried state decays through padded steps (u = 0); "last" is each example's last real step.
    memory = LegendreMemory(6, 9.0, memory_d=2).double()
    u = torch.randn(3, 30, 2, dtype=torch.float64)
    mask = torch.rand(3, 30) > 0.3
    mask[0, :] = True
    mask[1, 20:] = False  # right padding; row 2 has holes
    state = torch.randn(3, 12, dtype=torch.float64)
    zeroed = u * mask[..., None]
    reference = memory(zeroed, state, mode="recurrent")[0]
    m, last = memory(u, state, mode=mode, mask=mask)
    assert_close_to(m, reference, atol=TOLERANCE)
    assert_close_to(last, last_valid(reference, mask), atol=TOLERANCE)
    assert_close_to(memory.last_state(u, state, mask=mask), last, atol=TOLERANCE)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("model", ["layer", "stack"])
def test_stepping_with_mask_t_equals_the_parallel_masked_result(model, side):
    if model == "layer":
        net = make_layer("auto", return_sequences=True)
    else:
        net = ParallelLMUStack(3, 6, num_layers=2, residual=True, norm="layer", order=5, theta=7.0).double()
    xs = examples()
    x, mask = pad(xs, STEPS, side)
    parallel, parallel_state = net(x, return_state=True, mask=mask)
    state = net.initial_state(len(xs))
    state = [s.double() for s in state] if isinstance(state, list) else state.double()
    outputs = []
    for t in range(STEPS):
        o_t, state = net.step(x[:, t], state, mask_t=mask[:, t])
        outputs.append(o_t)
    stepped = torch.stack(outputs, 1)
    if side == "left":  # from a zero state, holding it and feeding u = 0 agree even at the padding
        assert_close_to(stepped, parallel, atol=TOLERANCE)
    for i, example in enumerate(xs):
        length = len(example)
        assert_close_to(real_steps(stepped[i], length, side), real_steps(parallel[i], length, side), atol=TOLERANCE)
    for held, last in zip(_as_list(state), _as_list(parallel_state), strict=True):
        assert_close_to(held, last, atol=TOLERANCE)


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_no_mask_is_bit_identical(mode, return_sequences):
    layer = make_layer(mode, return_sequences)
    x = torch.randn(3, 40, 3, dtype=torch.float64)
    state = torch.randn(3, 12, dtype=torch.float64)
    assert torch.equal(layer(x, mask=None), layer(x))
    for got, expected in zip(layer(x, state, mask=None), layer(x, state), strict=True):
        assert torch.equal(got, expected)
    stack = ParallelLMUStack(3, 6, num_layers=2, return_sequences=return_sequences, order=5, theta=7.0).double()
    assert torch.equal(stack(x, mask=None), stack(x))
    states = [s.double() for s in stack.initial_state(3)]
    assert torch.equal(stack.step(x[:, 0], states, mask_t=None)[0], stack.step(x[:, 0], states)[0])
    assert torch.equal(layer.step(x[:, 0], state, mask_t=None)[1], layer.step(x[:, 0], state)[1])


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_all_true_mask_equals_no_mask(mode, return_sequences):
    layer = make_layer(mode, return_sequences)
    x = torch.randn(3, 40, 3, dtype=torch.float64)
    state = torch.randn(3, 12, dtype=torch.float64)
    mask = torch.ones(3, 40, dtype=torch.bool)
    for got, expected in zip(layer(x, state, mask=mask), layer(x, state), strict=True):
        assert_close_to(got, expected, atol=1e-12)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_nan_and_inf_padding_never_reach_a_real_output(mode, return_sequences, side):
    layer = make_layer(mode, return_sequences)
    assert layer_error(layer, side, fill=float("nan")) <= TOLERANCE
    assert layer_error(layer, side, fill=float("inf")) <= TOLERANCE


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize(("mode", "return_sequences"), [("fused", True), ("fft", True), ("auto", False)])
def test_gradients_equal_the_unpadded_ones(mode, return_sequences, side):
    # Finite garbage: a loss on the real outputs gives every parameter exactly the unpadded examples' gradient.
    layer = make_layer(mode, return_sequences)
    xs = examples()
    x, mask = pad(xs, STEPS, side)
    out = layer(x, mask=mask)
    padded_loss = (out * mask[..., None]).square().sum() if return_sequences else out.square().sum()
    padded = torch.autograd.grad(padded_loss, list(layer.parameters()))
    loss = sum(layer(example[None]).square().sum() for example in xs)
    unpadded = torch.autograd.grad(loss, list(layer.parameters()))
    for got, expected in zip(padded, unpadded, strict=True):
        assert_close_to(got, expected, atol=TOLERANCE)


def test_last_valid_reads_each_examples_last_real_step():
    values = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3)
    left = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    right = torch.tensor([[True, True, False, False, False], [True, False, False, False, False]])
    holes = torch.tensor([[True, False, True, False, False], [False, False, False, False, False]])
    assert torch.equal(last_valid(values, left), values[:, -1])
    assert torch.equal(last_valid(values, right), torch.stack([values[0, 1], values[1, 0]]))
    # a row with no real step reads the last position
    assert torch.equal(last_valid(values, holes), torch.stack([values[0, 2], values[1, 4]]))
    assert torch.equal(last_valid(values[..., 0], right), torch.stack([values[0, 1, 0], values[1, 0, 0]]))


def test_bad_masks_name_the_shape():
    layer = make_layer("auto")
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \(batch, time\) = \(2, 7\).*torch.float32"):
        layer(x, mask=torch.ones(2, 7))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \(batch, time\) = \(2, 7\).*\(2, 6\)"):
        layer(x, mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask_t must be a bool tensor \(batch,\) = \(2,\)"):
        layer.step(x[:, 0], layer.initial_state(2).double(), mask_t=torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="OriginalLMU does not take a padding mask"):
        OriginalLMUStack(3, 4, num_layers=1, order=4, theta=4.0)(x.float(), mask=torch.ones(2, 7, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("side", ["left", "right"])
def test_cuda_padding_gives_each_example_its_unpadded_result(side):
    xs = examples()
    x, mask = pad(xs, STEPS, side)
    for return_sequences in [True, False]:
        for mode in MODES:
            layer = make_layer(mode, return_sequences)
            expected = [layer(example[None], return_state=True) for example in xs]
            out, state = layer.cuda()(x.cuda(), return_state=True, mask=mask.cuda())
            out, state = out.cpu(), state.cpu()
            for i, (ref_out, ref_state) in enumerate(expected):
                got = real_steps(out[i], len(xs[i]), side) if return_sequences else out[i]
                assert_close_to(got, ref_out[0], atol=TOLERANCE)
                assert_close_to(state[i], ref_state[0], atol=TOLERANCE)
            held = layer.initial_state(len(xs))
            for t in range(STEPS):
                _, held = layer.step(x[:, t].cuda(), held, mask_t=mask[:, t].cuda())
            assert_close_to(held.cpu(), state, atol=TOLERANCE)
