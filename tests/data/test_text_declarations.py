"""plmu.data.text_tasks: a text task's facts declared once, read by the configs and the report."""

import pytest
from conftest import compose_config

from plmu.data import text_tasks
from plmu.data.text_tasks import TASKS, PaperRow, TextTask
from plmu.models.build import build_model, model_args
from plmu.report import PAPER
from plmu.train.schema import check_config


def test_the_configs_read_the_class_count_and_the_pairing_from_the_declaration():
    for name, task in TASKS.items():
        cfg = compose_config([f"task={name}"])
        assert cfg.task.output_size == task.num_classes
        assert cfg.model.pair is task.pair
        assert PAPER[name] == task.paper  # the report's paper row too


def test_a_new_task_is_a_declaration_and_a_config(monkeypatch):
    """A task named only by its declaration and the shared text config (here by overrides, as its one yaml would
    say), sized like QQP: it composes, passes the config check and builds for every family with QQP sizes."""
    declared = TextTask("paws", "google-research-datasets/paws", "labeled_final", ("sentence1", "sentence2"), 2,
                        "train", "test", "validation", 0, 128, PaperRow("PAWS", "test accuracy", "-"))  # fmt: skip
    monkeypatch.setitem(TASKS, "paws", declared)
    for family in ("plmu", "lstm", "s4d"):
        cfg = compose_config(["task=qqp", "task.name=paws", "task.sizes_from=qqp", f"model={family}"])
        check_config(cfg)
        model = build_model(cfg, model_args(cfg, {"vocab_size": 50, "num_classes": 2}))
        assert cfg.task.data.dataset == "paws" and cfg.model.pair is True and model.num_parameters > 0


def test_an_undeclared_task_is_named():
    with pytest.raises(ValueError, match="no text task 'nope' is declared"):
        text_tasks.text_task_fact("nope", "num_classes")
