"""plmu.dropout: the cheaper CPU mask is still dropout (rate, scale, independence, reproducibility)."""

import pytest
import torch
from torch import nn

from plmu.dropout import LEVELS, Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keeps_each_element_with_probability_one_minus_p_and_stays_unbiased(p):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = torch.ones(400_000)
    out = layer(x)
    kept = (out != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 5 * ((p * (1 - p) / x.numel()) ** 0.5)  # within 5 standard errors
    assert abs(out.double().mean().item() - 1) < 0.01  # the kept values are scaled by 1 / (1 − p)
    values = out.unique()
    assert len(values) == 2 and values[0] == 0
    assert values[1].item() == pytest.approx(1 / (1 - round(p * LEVELS) / LEVELS), rel=1e-6)


def test_every_16_bit_lane_is_uniform_and_the_lanes_are_independent():
    torch.manual_seed(1)
    keep, p = keep_mask((4, 250_000), 0.5)
    lanes = keep.view(-1, 4).double()  # four lanes of one 64-bit draw side by side
    assert p == 0.5
    assert (lanes.mean(0) - 0.5).abs().max() < 0.005
    correlation = torch.corrcoef(lanes.t())
    assert (correlation - torch.eye(4)).abs().max() < 0.01


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(50, 40, requires_grad=True)
    out = Dropout(0.3).train()(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, out.detach() / x.detach(), rtol=1e-6)  # d out / d x: the mask times the scale


def test_reproducible_from_the_seed_and_identity_in_eval_or_at_p_zero():
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = Dropout(0.4).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.4).train()(x)
    assert torch.equal(a, b)
    assert torch.equal(Dropout(0.4).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros(1000))


def test_same_module_interface_as_torch_dropout():
    layer = Dropout(0.2)
    assert isinstance(layer, nn.Dropout) and layer.p == 0.2 and layer.state_dict() == {}
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
