"""plmu.train.schema.check_config: types, ranges, unknown keys, devices and optimisers, before any data is read."""

import subprocess
import sys

import pytest
import torch
from conftest import compose_config, config_names, task_model_pairs
from omegaconf import OmegaConf

from plmu.errors import ConfigError
from plmu.train.schema import check_config
from plmu.train.settings import TrainerSettings

TASKS, MODELS, EXPERIMENTS = config_names("task"), config_names("model"), config_names("experiment")
STEP_LR = "trainer.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true"


def error_of(*overrides: str) -> str:
    """The one-line ConfigError check_config raises for mackey_glass with ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        check_config(compose_config(["task=mackey_glass", *overrides]))
    message = str(caught.value)
    assert "\n" not in message
    return message


def _must(key: str, allowed: str, got: str, example: str) -> str:
    return f"{key} must be {allowed}, got {got} (override it, e.g. {key}={example})"


@pytest.mark.parametrize(("task", "model"), task_model_pairs())
def test_every_task_and_model_passes(task, model):
    check_config(compose_config([f"task={task}", f"model={model}"]))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes(experiment):
    check_config(compose_config([f"experiment={experiment}"]))


@pytest.mark.parametrize("task", TASKS)
def test_the_debug_preset_passes(task):
    check_config(compose_config([f"task={task}", "debug=quick"]))


def test_accepted_spellings(tmp_path):
    check_config(
        compose_config(
            [
                f"data_dir={tmp_path / 'nowhere'}",  # nothing is read: the data need not exist
                "trainer.precision=32",  # an int from the command line, compared as a string by the run
                "trainer.optimizer.lr=1",  # an int learning rate
                "trainer.grad_clip=1",
                "trainer.progress=false",
                "trainer.compile=true",
                "trainer.resume=null",
                "trainer.device=cpu",
                "seed=4294967295",
                "trainer.scheduler=null",  # psMNIST's own schedule (a dict) would merge with the new one
                f"{STEP_LR},step_size:1}}",
                "logger.tags=[a,b]",
            ]
        )
    )


def test_the_config_is_left_unchanged():
    cfg = compose_config(["trainer.precision=32"])
    before = OmegaConf.to_yaml(cfg)
    check_config(cfg)
    assert OmegaConf.to_yaml(cfg) == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # the model's keys are its constructors' to check: tests/train/test_build_model.py
        (["trainer.batch_size=0"], _must("trainer.batch_size", "a positive integer", "0", "32")),
        (["trainer.max_epochs=-2"], _must("trainer.max_epochs", "null or a positive integer", "-2", "10")),
        (["trainer.eval_batch_size=0"], _must("trainer.eval_batch_size", "null or a positive integer", "0", "null")),
        (["trainer.max_steps=0"], _must("trainer.max_steps", "null or a positive integer", "0", "1000")),
        (["trainer.max_steps=1.5"], _must("trainer.max_steps", "null or a positive integer", "1.5", "1000")),
        (["trainer.max_steps=true"], _must("trainer.max_steps", "null or a positive integer", "True", "1000")),
        (
            ["trainer.val_every_n_steps=-5"],
            _must("trainer.val_every_n_steps", "null or a positive integer", "-5", "500"),
        ),
        (
            ["trainer.accumulate_grad_batches=0"],
            _must("trainer.accumulate_grad_batches", "a positive integer", "0", "4"),
        ),
        (
            ["trainer.accumulate_grad_batches=null"],
            _must("trainer.accumulate_grad_batches", "a positive integer", "None", "4"),
        ),
        (
            ["trainer.scheduler_interval=batch"],
            _must("trainer.scheduler_interval", "one of ('epoch', 'step')", "'batch'", "step"),
        ),
        (["trainer.state=keep"], _must("trainer.state", "one of ('reset', 'carry')", "'keep'", "reset")),
        (["trainer.state=true"], _must("trainer.state", "one of ('reset', 'carry')", "True", "reset")),
        (["init_from=3"], _must("init_from", "null, a run folder or a checkpoint path", "3", "null")),
        (["init_from=''"], _must("init_from", "null, a run folder or a checkpoint path", "''", "null")),
        (
            ["trainer.limit_train_batches=0"],
            _must("trainer.limit_train_batches", "null or a positive integer", "0", "null"),
        ),
        (
            ["trainer.limit_eval_batches=-1"],
            _must("trainer.limit_eval_batches", "null or a positive integer", "-1", "null"),
        ),
        (
            ["trainer.early_stopping_patience=0"],
            _must("trainer.early_stopping_patience", "null or a positive integer", "0", "10"),
        ),
        (["trainer.optimizer.lr=-1"], _must("trainer.optimizer.lr", "a positive learning rate", "-1", "1e-3")),
        (["trainer.optimizer.lr=0"], _must("trainer.optimizer.lr", "a positive learning rate", "0", "1e-3")),
        (["trainer.grad_clip=0"], _must("trainer.grad_clip", "null or a positive norm", "0", "1.0")),
        (["trainer.precision=fp8"], _must("trainer.precision", "one of ('32', 'bf16', 'auto')", "'fp8'", "auto")),
        (["trainer.precision=16"], _must("trainer.precision", "one of ('32', 'bf16', 'auto')", "16", "auto")),
        (
            ["task.objective=ranking"],
            _must(
                "task.objective",
                "a {_target_: ...} objective (plmu.train.objectives) or one of its short names",
                "'ranking'",
                "{_target_:plmu.train.objectives.Classification}",
            ),
        ),
        # types: tracebacks before
        (["trainer.optimizer.lr=abc"], _must("trainer.optimizer.lr", "a positive learning rate", "'abc'", "1e-3")),
        (["trainer.optimizer.lr='1e-3'"], _must("trainer.optimizer.lr", "a positive learning rate", "'1e-3'", "1e-3")),
        (["trainer.grad_clip=abc"], _must("trainer.grad_clip", "null or a positive norm", "'abc'", "1.0")),
        (["trainer.max_epochs=true"], _must("trainer.max_epochs", "null or a positive integer", "True", "10")),
        (["seed=abc"], _must("seed", "an integer in [0, 2**32)", "'abc'", "0")),
        (["seed=-1"], _must("seed", "an integer in [0, 2**32)", "-1", "0")),
        (["seed=4294967296"], _must("seed", "an integer in [0, 2**32)", "4294967296", "0")),
        (["seed=1.5"], _must("seed", "an integer in [0, 2**32)", "1.5", "0")),
        # booleans: "maybe" was silently true; "off" is refused rather than read as the truthy string
        (["trainer.compile=maybe"], _must("trainer.compile", "true or false", "'maybe'", "true")),
        (["trainer.progress=off"], _must("trainer.progress", "true or false", "'off'", "false")),
        (["trainer.progress=yes"], _must("trainer.progress", "true or false", "'yes'", "false")),
        (["trainer.progress=1"], _must("trainer.progress", "true or false", "1", "false")),
        (["task.per_step=maybe"], _must("task.per_step", "true or false", "'maybe'", "false")),
        # late failures before: after data loading or mid-training
        (["trainer.log_every_n_steps=0"], _must("trainer.log_every_n_steps", "a positive integer", "0", "50")),
        (["trainer.device=tpu"], _must("trainer.device", "auto, cpu, cuda, cuda:N or mps", "'tpu'", "auto")),
        (["trainer.device=cuda:x"], _must("trainer.device", "auto, cpu, cuda, cuda:N or mps", "'cuda:x'", "auto")),
        (["trainer.device=meta"], _must("trainer.device", "auto, cpu, cuda, cuda:N or mps", "'meta'", "auto")),
        (["trainer.device=0"], _must("trainer.device", "auto, cpu, cuda, cuda:N or mps", "0", "auto")),
        (["logger.mode=bogus"], _must("logger.mode", "one of offline, online, disabled", "'bogus'", "offline")),
        (["logger.tags=x"], _must("logger.tags", "a list of strings", "'x'", "[a,b]")),
        (["logger.project="], _must("logger.project", "a non-empty project name", "''", "plmu")),
        (["trainer.resume=3"], _must("trainer.resume", "null, auto or a checkpoint path", "3", "auto")),
        # a value set through an interpolation names where it came from
        (
            ["trainer.max_epochs=${seed}"],
            _must("trainer.max_epochs", "null or a positive integer", "0 from ${seed}", "10"),
        ),
    ],
)
def test_bad_values(overrides, message):
    assert error_of(*overrides) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+trainer.max_epoch=2"], "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)"),
        (
            ["+trainer.lr=0.1"],
            "unknown key trainer.lr (valid keys: " + ", ".join(TrainerSettings.__annotations__) + ")",
        ),
        (["+logger.projekt=x"], "unknown key logger.projekt (did you mean logger.project?)"),
        (["logger=none", "+logger.mode=offline"], "unknown key logger.mode (valid keys: _target_)"),
        (["+sed=1"], "unknown key sed (did you mean seed?)"),
    ],
)
def test_unknown_keys_suggest_the_closest(overrides, message):
    assert error_of(*overrides) == message


def test_missing_and_unresolvable_values():
    assert error_of("trainer.max_epochs=???") == (
        "trainer.max_epochs is required but not set (e.g. +trainer.max_epochs=10)"
    )
    assert error_of("~trainer.batch_size") == "trainer.batch_size is required but not set (e.g. +trainer.batch_size=32)"
    assert error_of("trainer.max_epochs=${task.nope}") == (
        "trainer.max_epochs cannot be resolved: Interpolation key 'task.nope' not found"
    )


def test_targets():
    assert error_of("model._target_=notdotted") == _must(
        "model._target_", "a dotted import path", "'notdotted'", "plmu.models.sequence_model"
    )
    check_config(compose_config(["model._target_=my.models.build", "+model.extra=1"]))  # any builder: _target_ only
    assert error_of("logger._target_=NullLogger") == _must(
        "logger._target_", "a dotted import path", "'NullLogger'", "plmu.train.loggers.NullLogger"
    )
    check_config(compose_config(["logger._target_=plmu.train.loggers.JsonlLog"]))  # a logger plmu does not know: open
    assert error_of("logger._target_=plmu.train.loggers.Nope") == (
        "logger._target_=plmu.train.loggers.Nope cannot be imported (module 'plmu.train.loggers' has no attribute "
        "'Nope'); e.g. plmu.train.loggers.NullLogger"
    )
    assert error_of("task.data._target_=nosuchpackage.loader") == (
        "task.data._target_=nosuchpackage.loader cannot be imported (No module named 'nosuchpackage'); "
        "e.g. plmu.data.psmnist.psmnist"
    )
    assert error_of("+task.data.n_trian=3") == (
        "task.data (plmu.data.mackey_glass.mackey_glass): got an unexpected keyword argument 'n_trian'"
    )


def test_optimizer_and_scheduler_are_built_and_stepped_on_a_dummy_parameter():
    assert error_of("+trainer.optimizer.momentum=0.9") == (
        "trainer.optimizer (torch.optim.Adam) rejected its arguments: "
        "Adam.__init__() got an unexpected keyword argument 'momentum'"
    )
    assert error_of("+trainer.optimizer.betas=[2.0,0.9]") == (
        "trainer.optimizer (torch.optim.Adam) rejected its arguments: Invalid beta parameter at index 0: 2.0"
    )
    assert error_of("trainer.optimizer._target_=torch.optim.Adamm") == (
        "trainer.optimizer._target_=torch.optim.Adamm cannot be imported (module 'torch.optim' has no attribute "
        "'Adamm'); e.g. torch.optim.Adam"
    )
    assert error_of("trainer.optimizer._partial_=false") == (
        "trainer.optimizer (torch.optim.Adam) must have _partial_: true (it is called with the model parameters), "
        "got False (override it, e.g. ++trainer.optimizer._partial_=true)"
    )
    assert error_of("trainer.optimizer={_target_:torch.optim.LBFGS,_partial_:true}") == (
        "trainer.optimizer (torch.optim.LBFGS) cannot be stepped as the trainer does: "
        "LBFGS.step() missing 1 required positional argument: 'closure'"
    )
    assert error_of("trainer.optimizer=3") == _must(
        "trainer.optimizer", "an optimizer config with a _target_", "3", "{_target_:torch.optim.Adam,lr:1e-3}"
    )
    assert error_of(f"{STEP_LR}}}") == (
        "trainer.scheduler (torch.optim.lr_scheduler.StepLR) rejected its arguments: "
        "StepLR.__init__() missing 1 required positional argument: 'step_size'"
    )
    assert error_of("trainer.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:1}") == (
        "trainer.scheduler (torch.optim.lr_scheduler.StepLR) must have _partial_: true (it is called with the "
        "optimizer), got None (override it, e.g. ++trainer.scheduler._partial_=true)"
    )
    assert error_of("trainer.scheduler={_target_:torch.optim.lr_scheduler.ReduceLROnPlateau,_partial_:true}") == (
        "trainer.scheduler (torch.optim.lr_scheduler.ReduceLROnPlateau) cannot be stepped as the trainer does: "
        "ReduceLROnPlateau.step() missing 1 required positional argument: 'metrics'"
    )


def test_devices_that_are_not_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        assert error_of(f"trainer.device={device}") == (
            f"trainer.device='{device}' but CUDA is not available here; use trainer.device=auto or cpu"
        )
    assert error_of("trainer.device=mps") == (
        "trainer.device='mps' but MPS is not available here; use trainer.device=auto or cpu"
    )
    check_config(compose_config(["trainer.device=auto"]))  # auto: the CPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert error_of("trainer.device=cuda:3") == (
        "trainer.device='cuda:3' but only 1 CUDA device(s) are visible (cuda:0 to cuda:0); "
        "use trainer.device=cuda or auto"
    )


def test_a_config_with_hydra_node_is_checked_without_it():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="plmu.conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer.batch_size=0"], return_hydra_config=True)
    with pytest.raises(ConfigError, match=r"^trainer.batch_size must be a positive integer, got 0"):
        check_config(cfg)


def test_importing_the_schema_does_not_import_torch():
    code = "import sys, plmu.train.schema; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bad_environment_value_names_its_source(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    assert error_of("logger=wandb") == _must(
        "logger.mode", "one of offline, online, disabled", "'bogus' from ${oc.env:WANDB_MODE,offline}", "offline"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.theta=-3", "model.order=0", "model.skip=no", "+model.hiden_size=4"],
        ["model=original_lmu", "model.init=2019"],
        ["model=lstm", "+model.order=4"],
        ["model.hidden_size=???"],
    ],
)
def test_the_model_keys_are_left_to_its_constructors(overrides):
    """Checked once, by the constructors, when plmu.models.build.build_model builds the model (test_build_model.py)."""
    check_config(compose_config(["task=mackey_glass", *overrides]))


def test_the_run_length_needs_max_epochs_or_max_steps():
    both_null = (
        "trainer.max_epochs and trainer.max_steps are both null: set at least one (override it, e.g. "
        "trainer.max_steps=1000 or trainer.max_epochs=10)"
    )
    assert error_of("trainer.max_epochs=null") == both_null
    check_config(compose_config(["task=mackey_glass", "trainer.max_epochs=null", "trainer.max_steps=10"]))
    check_config(compose_config(["task=mackey_glass", "trainer.max_epochs=3", "trainer.max_steps=10"]))


def test_the_step_keys_accept_their_values():
    check_config(
        compose_config(
            [
                "task=mackey_glass",
                "trainer.val_every_n_steps=5",
                "trainer.accumulate_grad_batches=4",
                "trainer.scheduler_interval=step",
                "trainer.state=carry",  # the model's forward_with_state is checked when it is built (run.py)
                "init_from=/some/run",  # read by the run, before any data, not by the schema
            ]
        )
    )


def test_a_schedule_that_takes_total_steps_is_checked_with_a_stand_in():
    warmup = "trainer.scheduler={_target_:plmu.train.schedules.warmup_cosine,_partial_:true,warmup_steps:3"
    check_config(compose_config(["task=mackey_glass", f"{warmup}}}"]))  # the trainer supplies total_steps
    check_config(compose_config(["task=mackey_glass", f"{warmup},total_steps:50}}"]))  # or the config sets it
    assert error_of(f"{warmup},min_lr_ratio:2}}") == (
        "trainer.scheduler (plmu.train.schedules.warmup_cosine) rejected its arguments: "
        "min_lr_ratio must be a number in [0, 1], got 2"
    )
    assert error_of(f"{warmup},total_steps:0}}") == (
        "trainer.scheduler (plmu.train.schedules.warmup_cosine) rejected its arguments: "
        "total_steps must be a positive integer, got 0"
    )
