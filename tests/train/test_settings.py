"""plmu.train.settings: each trainer setting declared once, read by the config, Hydra's help and the trainer."""

import subprocess
import sys
from dataclasses import fields

import pytest
import torch
from conftest import compose_config
from omegaconf import MISSING, OmegaConf

from plmu.errors import ConfigError
from plmu.train.settings import TrainerSettings, check_settings, defaults, settings_help

SETTINGS = [setting.name for setting in fields(TrainerSettings)]


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_has_help_and_a_default_its_rule_accepts(name):
    setting = next(s for s in fields(TrainerSettings) if s.name == name)
    assert len(setting.metadata["help"]) > 10
    value = defaults()[name]
    assert value == MISSING or setting.metadata["rule"].ok(value), value


def test_the_composed_trainer_is_the_declaration():
    """conf/trainer/default.yaml starts from the registered defaults: the same keys, in the declaration's order;
    what a task does not set is the declared default."""
    trainer = OmegaConf.to_container(compose_config(["task=mackey_glass"]).trainer)
    assert list(trainer) == SETTINGS
    assert {key: value for key, value in trainer.items() if key not in ("max_epochs", "batch_size")} == {
        key: value for key, value in defaults().items() if key not in ("max_epochs", "batch_size")
    } | {"optimizer": trainer["optimizer"], "scheduler": trainer["scheduler"]}
    check_settings(TrainerSettings(**trainer))  # what the runner gives the trainer passes the trainer's check


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"batch_size": 0},
            "trainer.batch_size must be a positive integer, got 0 (override it, e.g. trainer.batch_size=32)",
        ),
        (
            {"progress": "off"},
            "trainer.progress must be true or false, got 'off' (override it, e.g. trainer.progress=false)",
        ),
        (
            {"max_epochs": None},
            "trainer.max_epochs and trainer.max_steps are both null: set at least one "
            "(override it, e.g. trainer.max_steps=1000 or trainer.max_epochs=10)",
        ),
        ({"batch_size": MISSING}, "trainer.batch_size is required but not set (e.g. +trainer.batch_size=32)"),
    ],
)
def test_the_trainer_checks_with_the_same_rules(overrides, message):
    with pytest.raises(ConfigError) as caught:
        check_settings(TrainerSettings(**{"max_epochs": 1, "batch_size": 2, **overrides}))
    assert str(caught.value) == message


def test_an_optimizer_config_or_a_callable():
    """In Python the trainer takes either the config's partial or a callable; the default is the config's Adam."""
    from plmu.train.trainer import _partial

    parameter = torch.nn.Parameter(torch.zeros(1))
    assert isinstance(_partial(TrainerSettings(1, 2).optimizer)([parameter]), torch.optim.Adam)
    assert isinstance(_partial(torch.optim.SGD)([parameter], lr=0.1), torch.optim.SGD)
    assert TrainerSettings(1, 2, precision=32).precision == "32"  # trainer.precision=32 typed as a number


def test_help_lists_every_setting():
    text = settings_help()
    assert [line.split("=")[0].strip() for line in text.splitlines()] == [f"trainer.{name}" for name in SETTINGS]
    result = subprocess.run(
        [sys.executable, "-m", "plmu.cli.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert text in result.stdout
