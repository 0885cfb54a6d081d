import pytest
import torch
from conftest import assert_close_to

from plmu.models.transformer import TransformerBackbone, attention_allowed, sinusoidal_encoding

D, HEADS, LAYERS = 16, 4, 2


def backbone(causal: bool) -> TransformerBackbone:
    return TransformerBackbone(D, LAYERS, HEADS, dim_feedforward=24, dropout=0.0, causal=causal).eval()


def pad(x: torch.Tensor, length: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x (1, t, D) padded with garbage to (1, length, D), and its mask."""
    garbage = 100 * torch.randn(1, length - x.shape[1], D)
    mask = torch.tensor([[False] * garbage.shape[1] + [True] * x.shape[1]])
    if left:
        return torch.cat([garbage, x], 1), mask
    return torch.cat([x, garbage], 1), mask.flip(1)


@pytest.mark.parametrize("grad", [True, False])  # no grad in eval mode takes PyTorch's fused fast path
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("left", [True, False])
def test_padded_batch_equals_each_example_alone(causal, left, grad):
    model = backbone(causal)
    examples = [torch.randn(1, t, D) for t in (7, 3, 1)]
    padded = [pad(x, 7, left) for x in examples]
    x = torch.cat([p[0] for p in padded] + [torch.randn(1, 7, D)])  # and a row of padding only
    mask = torch.cat([p[1] for p in padded] + [torch.zeros(1, 7, dtype=torch.bool)])
    with torch.set_grad_enabled(grad):
        out = model(x, mask=mask)
        assert out.isfinite().all()  # leading pads under a causal mask, the all-padding row: no NaN
        assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
        for row, example in enumerate(examples):
            assert_close_to(out[row][mask[row]], model(example)[0], atol=1e-5)


def test_causal_outputs_do_not_depend_on_the_future():
    model = backbone(causal=True)
    x = torch.randn(2, 9, D)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 4, D)
    assert_close_to(model(y)[:, :5], model(x)[:, :5], atol=1e-5)
    assert (backbone(causal=False)(y)[:, :5] - backbone(causal=False)(x)[:, :5]).abs().max() > 1e-3


def test_step_by_step_equals_causal_forward():
    model = backbone(causal=True)
    x = torch.randn(3, 12, D)
    state, outputs = model.initial_state(3), []
    for t in range(12):
        y_t, state = model.step(x[:, t], state)
        outputs.append(y_t)
    assert_close_to(torch.stack(outputs, 1), model(x), atol=1e-5)
    assert state.keys[0].shape == (3, HEADS, 12, D // HEADS) and state.valid.shape == (3, 12)


def test_chunks_with_padding_equal_the_whole():
    model = backbone(causal=True)
    x = torch.randn(2, 10, D)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :3] = False  # left padding, split across the two chunks
    mask[1, 8:] = False  # right padding
    whole = model(x, mask=mask)
    first, state = model(x[:, :2], return_state=True, mask=mask[:, :2])
    second, state = model(x[:, 2:], state, mask=mask[:, 2:])
    assert_close_to(torch.cat([first, second], 1), whole, atol=1e-5)
    # and one padded step at a time
    state, outputs = model.initial_state(2), []
    for t in range(10):
        y_t, state = model.step(x[:, t], state, mask[:, t])
        outputs.append(y_t)
    assert_close_to(torch.stack(outputs, 1), whole, atol=1e-5)


def test_training_mode_runs_and_backpropagates():
    model = TransformerBackbone(D, LAYERS, HEADS, dropout=0.1, causal=True).train()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :2] = False
    out = model(torch.randn(2, 6, D), mask=mask)
    out.sum().backward()
    assert out.isfinite().all()
    assert all(p.grad is not None for p in model.parameters())


def test_attention_allowed_always_lets_a_step_see_itself():
    valid = torch.tensor([[False, False, True, True]])
    allowed = attention_allowed(valid, 4, causal=True)[0]
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)
    assert torch.equal(attention_allowed(valid, 1, causal=True)[0], torch.tensor([[False, False, True, True]]))


def test_sinusoidal_encoding():
    pe = sinusoidal_encoding(torch.arange(3), 5, torch.float64)
    assert pe.shape == (3, 5)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    assert pe[2, 0].item() == pytest.approx(torch.sin(torch.tensor(2.0, dtype=torch.float64)).item())


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, 1, 1), {}, r"^d_model must be a positive int \(the model's width\), got 0$"),
        ((8.0, 1, 2), {}, r"^d_model must be a positive int \(the model's width\), got 8.0$"),
        ((8, True, 2), {}, r"^num_layers must be a positive int, got True$"),
        ((8, 1, 0), {}, r"^num_heads must be a positive int, got 0$"),  # before num_heads divides d_model
        ((8, 1, 3), {}, r"^num_heads must divide d_model=8, got 3$"),
        ((8, 1, 2), dict(dim_feedforward=0), r"^dim_feedforward must be a positive int \(or null for 4 · d_model\)"),
        ((8, 1, 2), dict(dropout=1), r"^dropout must be a number in \[0, 1\), got 1$"),
        ((8, 1, 2), dict(dropout="abc"), r"^dropout must be a number in \[0, 1\), got 'abc'$"),
        ((8, 1, 2), dict(causal="no"), r"^causal must be true or false, got 'no'$"),
    ],
)
def test_bad_arguments_name_the_argument(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerBackbone(*args, **kwargs)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="num_heads must divide"):
        TransformerBackbone(10, 1, 3)
    with pytest.raises(ValueError, match="num_layers"):
        TransformerBackbone(8, 0, 2)
    with pytest.raises(ValueError, match="dropout"):
        TransformerBackbone(8, 1, 2, dropout=1.5)
    with pytest.raises(ValueError, match="causal=True"):
        backbone(causal=False).initial_state(2)
    with pytest.raises(ValueError, match="d_model=16"):
        backbone(causal=False)(torch.randn(2, 3, 8))
