from functools import partial

import pytest
import torch
from conftest import assert_close_to

from plmu.errors import ConfigError
from plmu.models import sequence_model

# The families on real-valued sequences, as the task configs build them (conf/task/{psmnist,mackey_glass}.yaml)
plmu_model = partial(sequence_model, backbone="plmu")
original_lmu_model = partial(sequence_model, backbone="original_lmu")
lstm_model = partial(sequence_model, backbone="lstm")
transformer_model = partial(sequence_model, backbone="transformer")

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
    assert model.backbone.layers[-1].resolve_mode(100) == "last_state"


@pytest.mark.parametrize("per_step", [True, False])
def test_transformer_model_streams_exactly_when_causal(per_step):
    model = transformer_model(2, 3, per_step, hidden_size=8, num_layers=2, num_heads=2, causal=True).double().eval()
    x = torch.randn(3, 17, 2, dtype=torch.float64)
    out = model(x)
    assert out.shape == ((3, 17, 3) if per_step else (3, 3))
    assert_close_to(model.forward_recurrent(x), out, atol=1e-10)


def test_transformer_model_is_causal_for_per_step_tasks_and_bidirectional_otherwise():
    assert transformer_model(1, 1, True, hidden_size=8, num_heads=2).backbone.causal is True
    assert transformer_model(1, 10, False, hidden_size=8, num_heads=2).backbone.causal is False
    with pytest.raises(ValueError, match="causal must be true for a per-step task"):
        transformer_model(1, 1, True, hidden_size=8, num_heads=2, causal=False)
    bidirectional = transformer_model(1, 10, False, hidden_size=8, num_heads=2)
    with pytest.raises(ConfigError, match="cannot run as an RNN"):
        bidirectional.forward_recurrent(torch.randn(2, 5, 1))


def test_a_per_step_causal_transformer_does_not_see_the_future():
    model = transformer_model(1, 1, True, hidden_size=8, num_heads=2).double().eval()
    x = torch.randn(2, 12, 1, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7:] += 1.0
    assert torch.equal(model(x)[:, :7], model(changed)[:, :7])


def test_step_streams_one_input_at_a_time():
    model = plmu_model(2, 3, True, hidden_size=6, order=5, theta=7.0).double().eval()
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    state, outputs = model.initial_state(3), []
    for t in range(9):
        y_t, state = model.step(x[:, t], state)
        outputs.append(y_t)
    assert_close_to(torch.stack(outputs, dim=1), model(x), atol=1e-10)


def test_checkpoints_of_the_earlier_layout_still_load():
    """Before the adapter → backbone → head layout, the backbone was ``encoder.*`` (and a text model's embedding
    ``embedding.*``): a killed run started then must still resume."""
    torch.manual_seed(0)
    model = plmu_model(2, 3, False, hidden_size=6, order=5, theta=7.0)
    old = {key.replace("backbone.", "encoder.", 1): value for key, value in model.state_dict().items()}
    assert any(key.startswith("encoder.") for key in old)
    torch.manual_seed(1)
    fresh = plmu_model(2, 3, False, hidden_size=6, order=5, theta=7.0)
    fresh.load_state_dict(old)
    x = torch.randn(2, 4, 2)
    assert torch.equal(fresh(x), model(x))


def test_builders_refuse_a_per_step_that_is_not_a_bool():
    for builder in (plmu_model, lstm_model, transformer_model):
        with pytest.raises(ValueError, match="per_step must be true or false, got 'no'"):
            builder(
                1, 1, "no", hidden_size=8, num_layers=1, **({"order": 4, "theta": 4} if builder is plmu_model else {})
            )
