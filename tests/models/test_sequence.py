import pytest
import torch
from conftest import assert_close_to

from plmu.models import lstm_model, original_lmu_model, plmu_model

BUILDERS = {
    "plmu": lambda per_step: plmu_model(2, 3, per_step, hidden_size=6, num_layers=2, order=5, theta=7.0),
    "original_lmu": lambda per_step: original_lmu_model(
        2, 3, per_step, hidden_size=6, num_layers=2, order=5, theta=7.0
    ),
    "lstm": lambda per_step: lstm_model(2, 3, per_step, hidden_size=6, num_layers=2),
}


@pytest.mark.parametrize("family", BUILDERS)
@pytest.mark.parametrize("per_step", [True, False])
def test_recurrent_forward_equals_parallel(family, per_step):
    model = BUILDERS[family](per_step).double().eval()
    x = torch.randn(3, 25, 2, dtype=torch.float64)
    out = model(x)
    assert out.shape == ((3, 25, 3) if per_step else (3, 3))
    assert_close_to(model.forward_recurrent(x), out, atol=1e-10)


def test_paper_parameter_counts():
    assert plmu_model(1, 10, False, hidden_size=346, order=468, theta=784).num_parameters == 166_092
    assert (
        original_lmu_model(1, 10, False, hidden_size=212, order=256, theta=784, init="psmnist").num_parameters
        == 102_027
    )
    assert lstm_model(1, 1, True, hidden_size=25, num_layers=4).num_parameters == 18_426
    assert (
        original_lmu_model(1, 1, True, hidden_size=49, num_layers=4, order=4, theta=4, bias=True).num_parameters
        == 18_246
    )


def test_last_step_plmu_uses_last_state():
    model = plmu_model(1, 10, False, hidden_size=8, order=16, theta=20.0)
    assert model.encoder.layers[-1].resolve_mode(100) == "last_state"
