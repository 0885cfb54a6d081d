import pytest
import torch
from conftest import assert_close_to

from plmu.models.encoders import LSTMEncoder

IN, HIDDEN, LAYERS, T = 3, 5, 2, 7


def padded_batch(left: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Examples of lengths 7, 4, 1, 0 padded with garbage to T steps; the mask; the examples alone (1, t, IN)."""
    lengths = [7, 4, 1, 0]
    examples = [torch.randn(1, n, IN) for n in lengths]
    x = 100 * torch.randn(len(lengths), T, IN)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for row, (n, example) in enumerate(zip(lengths, examples, strict=True)):
        real = slice(T - n, T) if left else slice(0, n)
        x[row, real], mask[row, real] = example[0], True
    return x, mask, examples


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("carried", [True, False])
def test_padded_batch_equals_each_example_alone(left, carried):
    encoder = LSTMEncoder(IN, HIDDEN, LAYERS).double()
    x, mask, examples = padded_batch(left)
    x = x.double()
    state = tuple(s.double().normal_() for s in encoder.initial_state(4)) if carried else encoder.initial_state(4)
    out, (h, c) = encoder(x, state, mask=mask)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    for row, example in enumerate(examples):
        row_state = (state[0][:, row : row + 1], state[1][:, row : row + 1])
        if example.shape[1] == 0:  # nothing real: the state passes through unchanged
            assert torch.equal(h[:, row], state[0][:, row]) and torch.equal(c[:, row], state[1][:, row])
            continue
        ref, (ref_h, ref_c) = encoder(example.double(), row_state)
        assert_close_to(out[row][mask[row]], ref[0], atol=1e-12)
        assert_close_to(h[:, row], ref_h[:, 0], atol=1e-12)
        assert_close_to(c[:, row], ref_c[:, 0], atol=1e-12)


@pytest.mark.parametrize("left", [True, False])
def test_last_step_output_is_the_last_real_step(left):
    encoder = LSTMEncoder(IN, HIDDEN, LAYERS, return_sequences=False)
    x, mask, examples = padded_batch(left)
    last = encoder(x, mask=mask)
    assert last.shape == (4, HIDDEN)
    for row, example in enumerate(examples[:3]):
        assert_close_to(last[row], encoder(example)[0], atol=1e-6)
    assert torch.equal(last[3], torch.zeros(HIDDEN))  # an empty row: the initial state's h


@pytest.mark.parametrize("left", [True, False])
def test_step_with_mask_equals_masked_forward(left):
    encoder = LSTMEncoder(IN, HIDDEN, LAYERS).double()
    x, mask, _ = padded_batch(left)
    x = x.double()
    out, (h, c) = encoder(x, return_state=True, mask=mask)
    state, outputs = encoder.initial_state(4), []
    for t in range(T):
        y_t, state = encoder.step(x[:, t], state, mask[:, t])
        outputs.append(y_t)
    assert_close_to(torch.stack(outputs, 1), out, atol=1e-12)
    assert_close_to(state[0], h, atol=1e-12)
    assert_close_to(state[1], c, atol=1e-12)


def test_no_mask_path_is_unchanged():
    encoder = LSTMEncoder(IN, HIDDEN, LAYERS)
    x = torch.randn(4, T, IN)
    out, state = encoder.lstm(x)
    assert torch.equal(encoder(x), out)
    full, (h, c) = encoder(x, return_state=True)
    assert torch.equal(full, out) and torch.equal(h, state[0]) and torch.equal(c, state[1])
    y_t, _ = encoder.step(x[:, 0], encoder.initial_state(4))
    assert torch.equal(y_t, encoder.lstm(x[:, :1])[0][:, 0])


def test_mask_with_holes_or_wrong_shape_is_refused():
    encoder = LSTMEncoder(IN, HIDDEN)
    x = torch.randn(2, 4, IN)
    holes = torch.tensor([[True, False, True, True], [True, True, True, True]])
    with pytest.raises(ValueError, match="one block of real steps"):
        encoder(x, mask=holes)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        encoder(x, mask=torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_the_unpacked_path_equals_the_packed_one(left, return_sequences):
    """Without a returned state the padded batch runs unpacked (faster on a CPU): the same outputs, padding zeroed,
    the last real step read for return_sequences=False, an empty row zeros."""
    encoder = LSTMEncoder(IN, HIDDEN, LAYERS, return_sequences=return_sequences).double()
    x, mask, examples = padded_batch(left)
    x = x.double()
    fast = encoder(x, mask=mask)  # return_state defaults to False without a state: unpacked
    packed, _ = encoder(x, encoder.initial_state(4), mask=mask)  # with a state: the packed path
    assert_close_to(fast, packed, atol=1e-12)
    for row, example in enumerate(examples):
        if example.shape[1] == 0:
            assert torch.equal(fast[row], torch.zeros_like(fast[row]))
        elif not return_sequences:
            assert_close_to(fast[row], encoder(example.double())[0], atol=1e-12)
