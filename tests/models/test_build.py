"""plmu.models.build.build_model: the constructors check the model's keys; their errors are the user's one line."""

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config
from omegaconf import OmegaConf

from plmu.errors import ConfigError
from plmu.models.build import build_model, upgrade_model_config
from plmu.train import run as run_module
from plmu.train.run import train

ACTIVATIONS = "['gelu', 'identity', 'relu', 'sigmoid', 'tanh']"
THETA = "a positive number (time steps: the memory window)"
ORDER = "a positive int (the number of Legendre coefficients)"
MEMORY_D = "a positive int (the number of input channels)"


def error_of(*overrides: str) -> str:
    """The one-line ConfigError build_model raises for ``overrides`` (on mackey_glass unless a task is given)."""
    task = [] if any(o.startswith("task=") for o in overrides) else ["task=mackey_glass"]
    with pytest.raises(ConfigError) as caught:
        build_model(compose_config([*task, *overrides]))
    message = str(caught.value)
    assert "\n" not in message
    return message


def _must(key: str, allowed: str, got: str, example: str | None = None) -> str:
    fix = f"override it: {key}=..." if example is None else f"override it, e.g. {key}={example}"
    return f"{key} must be {allowed}, got {got} ({fix})"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.theta=-3"], _must("model.theta", THETA, "-3")),
        (["model.theta=abc"], _must("model.theta", THETA, "'abc'")),
        (["model.order=0"], _must("model.order", ORDER, "0")),
        (["model.hidden_size=-1"], _must("model.hidden_size", "a positive int", "-1")),
        (["model.hidden_size=true"], _must("model.hidden_size", "a positive int", "True")),  # a bool is no size
        (["model.hidden_size=3.0"], _must("model.hidden_size", "a positive int", "3.0")),
        (["model.hidden_size=abc"], _must("model.hidden_size", "a positive int", "'abc'")),
        (["model.num_layers=0"], _must("model.num_layers", "a positive int", "0", "1")),
        (["model.memory_d=1.5"], _must("model.memory_d", MEMORY_D, "1.5", "1")),
        (
            ["model.mode=fastest"],
            _must(
                "model.mode", "one of ['auto', 'fused', 'chunked', 'fft', 'direct', 'recurrent']", "'fastest'", "auto"
            ),
        ),
        (["model.f1=swish"], _must("model.f1", f"one of {ACTIVATIONS}", "'swish'", "identity")),
        (["model.f2=swish"], _must("model.f2", f"one of {ACTIVATIONS}", "'swish'", "relu")),
        (["model.dropout=1"], _must("model.dropout", "a number in [0, 1)", "1", "0.0")),
        (["model.dropout=-0.1"], _must("model.dropout", "a number in [0, 1)", "-0.1", "0.0")),
        (["model.dropout=abc"], _must("model.dropout", "a number in [0, 1)", "'abc'", "0.0")),
        # booleans: "no" and "off" are truthy strings to a constructor, refused rather than read as true
        (["model.skip=no"], _must("model.skip", "true or false", "'no'", "true")),
        (["model.trainable_theta=off"], _must("model.trainable_theta", "true or false", "'off'", "false")),
        (["model.residual=1"], _must("model.residual", "true or false", "1", "false")),
        (["model.norm=batch"], _must("model.norm", "one of [None, 'layer']", "'batch'", "null")),
        (["model.discretizer=rk4"], _must("model.discretizer", "one of ['zoh', 'euler']", "'rk4'", "zoh")),
        # the original LMU: an int 2019 is not the name "2019" (the example is quoted so that it stays a string)
        (
            ["model=original_lmu", "model.init=2019"],
            _must("model.init", "one of ['2019', 'psmnist']", "2019", "'2019'"),
        ),
        (["model=original_lmu", "model.bias=maybe"], _must("model.bias", "true or false", "'maybe'", "false")),
        (["model=original_lmu", "model.theta=0"], _must("model.theta", THETA, "0")),
        (["model=lstm", "model.hidden_size=abc"], _must("model.hidden_size", "a positive int", "'abc'")),
        (["model=lstm", "model.num_layers=0"], _must("model.num_layers", "a positive int", "0", "1")),
        # text tasks: the text classifier, its backbone and its head
        (["task=imdb", "model.pooling=min"], _must("model.pooling", "one of ['last', 'mean', 'max']", "'min'", "last")),
        (["task=imdb", "model.memory_d=0"], _must("model.memory_d", MEMORY_D, "0", "1")),
        (["task=imdb", "model=lstm", "model.hidden_size=0"], _must("model.hidden_size", "a positive int", "0", "128")),
        (
            ["task=qqp", "model=transformer", "model.num_heads=3"],
            "model.num_heads must divide d_model=128, got 3 (override it: model.num_heads=...)",
        ),
        (["task=qqp", "model=transformer", "model.causal=no"], _must("model.causal", "true or false", "'no'", "false")),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    assert error_of(*overrides) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+model.hiden_size=4"], "unknown key model.hiden_size (did you mean model.hidden_size?)"),
        (["+model.thetta=4"], "unknown key model.thetta (did you mean model.theta?)"),  # a ParallelLMU argument
        (["+model.resdual=true"], "unknown key model.resdual (did you mean model.residual?)"),  # a stack argument
        (["model=original_lmu", "+model.bais=true"], "unknown key model.bais (did you mean model.bias?)"),
        (
            ["model=lstm", "+model.order=4"],
            "unknown key model.order (valid keys: _target_, hidden_size, num_layers, backbone, pooling, dropout)",
        ),
        (["model=lstm", "+model.hiden_size=4"], "unknown key model.hiden_size (did you mean model.hidden_size?)"),
        (["task=imdb", "+model.ordr=16"], "unknown key model.ordr (did you mean model.order?)"),
        (
            ["task=qqp", "model=transformer", "+model.num_head=2"],
            "unknown key model.num_head (did you mean model.num_heads?)",
        ),
        (
            ["task=imdb", "model=lstm", "+model.order=4"],
            "unknown key model.order (valid keys: _target_, backbone, embed_dim, hidden_size, num_layers, pooling, "
            "pair, mlp_hidden, dropout, embed_dropout)",
        ),
    ],
)
def test_unknown_keys_suggest_the_closest(overrides, message):
    assert error_of(*overrides) == message


def test_missing_keys_are_named():
    # as if conf/sizes/plmu.yaml had no entry for the task: the resolver names the key and the file
    assert error_of("~sizes") == (
        "model plmu has no hidden_size for task mackey_glass: set model.hidden_size=... on the command line, add it "
        "to conf/sizes/plmu.yaml under mackey_glass:, or size the task like another (task.sizes_from=<a task>)"
    )
    assert error_of("model.order=???") == "model.order is required but not set (set it: model.order=...)"
    assert error_of("~model.order") == "model.order is required but not set (set it: model.order=...)"  # no key


def test_other_errors_keep_the_generic_line():
    assert error_of("model.discretizer=euler", "model.order=8", "model.theta=4") == (
        "model plmu.models.sequence_model could not be built from model.*: discretizer='euler' is unstable for "
        "order=8, theta=4: the spectral radius of Ā is 3.0075 ≥ 1, so the memory blows up. Use discretizer='zoh' "
        "(stable for every θ) or a larger theta (Euler needs θ of several times the order)."
    )
    assert error_of("model._target_=plmu.models.nope_model").startswith(
        "model plmu.models.nope_model could not be built from model.*: "
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.theta=100.5", "model.dropout=0", "model.norm=layer", "model.residual=true", "model.mode=fft"],
        ["model.theta=100", "model.norm=null", "model.trainable_theta=true", "model.discretizer=euler"],
        ["model=original_lmu", "model.init=psmnist", "model.bias=true"],
        ["model=original_lmu", "model.init='2019'"],
        ["model=lstm", "model.num_layers=2"],
    ],
)
def test_accepted_spellings_build(overrides):
    assert build_model(compose_config(["task=mackey_glass", *overrides])).num_parameters > 0


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["model.hidden_size=3.0"], "model.hidden_size must be a positive int, got 3.0"),
        (["task=imdb", "model.pooling=min"], "model.pooling must be one of ['last', 'mean', 'max'], got 'min'"),
        (["task=qqp", "model=transformer", "model.num_heads=3"], "model.num_heads must divide d_model=128"),
        (["task=imdb", "+model.ordr=16"], "unknown key model.ordr"),
    ],
)
def test_a_bad_model_fails_before_any_data_is_read(overrides, start, tmp_path, monkeypatch):
    task = [] if any(o.startswith("task=") for o in overrides) else TINY_MACKEY_GLASS
    cfg = compose_config([*task, *overrides, f"data_dir={tmp_path / 'data'}", "logger=none"])
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    with pytest.raises(ConfigError) as caught:
        train(cfg, tmp_path / "run")
    assert str(caught.value).startswith(start)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=text8", "+model.ordr=8"], "unknown key model.ordr (did you mean model.order?)"),
        (["task=iwslt15_en_vi", "+model.thta=8"], "unknown key model.thta (did you mean model.theta?)"),
        (
            ["task=text8", "model=gru", "+model.theta=8"],
            "unknown key model.theta (valid keys: _target_, backbone, "
            "embed_dim, hidden_size, num_layers, dropout, pooling)",
        ),
        (
            ["task=imdb_lm", "+model.highway_layer=2"],
            "unknown key model.highway_layer (did you mean model.highway_layers?)",
        ),
        (["task=imdb_lm", "+model.mdoe=fft"], "unknown key model.mdoe (did you mean model.mode?)"),  # to ParallelLMU
    ],
)
def test_every_builder_declares_its_keys(overrides, message):
    """The keys are known before the builder runs: from its parameters and what it declares it forwards to."""
    assert error_of(*overrides) == message


def open_builder(input_size: int, output_size: int, per_step: bool, **options):
    """A user's own builder: ``**options`` with no declaration of where they go."""
    raise TypeError(f"open_builder() got an unexpected keyword argument {next(iter(options))!r}")


def test_a_builder_without_a_declaration_judges_its_own_keys():
    message = error_of(f"model._target_={__name__}.open_builder", "+model.anything=1")
    assert message.startswith(f"model {__name__}.open_builder could not be built from model.*: open_builder() got")


def test_an_earlier_plmu_model_config_rebuilds_as_the_same_model_with_the_same_dropout_draws():
    """plmu_model's dropout acted on the LMU layer's output, sequence_model's on the head's input: for the one-layer
    last-step models the configs shipped (psMNIST) that is the same tensor and the same draws."""
    from plmu.layers import ParallelLMUStack
    from plmu.models import IdentityAdapter, SequenceModel, head_for

    old = {"_target_": "plmu.models.plmu_model", "hidden_size": 6, "num_layers": 1, "order": 5, "theta": 9.0}
    old |= {"dropout": 0.3, "memory_dropout": 0.2}
    cfg = OmegaConf.create({"task": {"input_size": 1, "output_size": 3, "per_step": False}, "model": old})
    torch.manual_seed(0)
    upgraded = build_model(cfg)
    assert upgrade_model_config(old)["_target_"] == "plmu.models.sequence_model"
    torch.manual_seed(0)  # what plmu_model built: the dropout inside the stack, none in the head
    stack = ParallelLMUStack(1, 6, 1, return_sequences=False, order=5, theta=9.0, dropout=0.3, memory_dropout=0.2)
    earlier = SequenceModel(IdentityAdapter(1), stack, head_for(False, 6, 3))
    assert earlier.state_dict().keys() == upgraded.state_dict().keys()
    for name, tensor in earlier.state_dict().items():
        assert torch.equal(tensor, upgraded.state_dict()[name]), name
    x = torch.randn(4, 12, 1)
    torch.manual_seed(1)
    expected = earlier.train()({"inputs": x})
    torch.manual_seed(1)
    assert torch.equal(upgraded.train()({"inputs": x}), expected)
