"""plmu-train's runner with step-based runs: a run killed between two mid-epoch validations resumes to the same
records, a finished step-based run is left as it is, checkpoints from before the step keys still resume."""

import json

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.errors import ConfigError
from plmu.train import checkpoint
from plmu.train import run as run_module
from plmu.train.objectives import Regression
from plmu.train.run import train
from plmu.train.run_folder import RunInterrupted

# 4 training series, one per batch: 4 batches an epoch, 2 steps with accumulation 2.
STEPS = [
    "task.data.n_series=12",
    "task.data.n_train=4",
    "trainer.batch_size=1",
    "trainer.accumulate_grad_batches=2",
    "trainer.max_epochs=null",
    "trainer.max_steps=5",
    "trainer.val_every_n_steps=3",
    "trainer.log_every_n_steps=1",
    "trainer.scheduler_interval=step",
    "trainer.scheduler={_target_:plmu.train.schedules.warmup_cosine,_partial_:true,warmup_steps:2}",
    "model.dropout=0.2",
]


def config(tmp_path, *extra):
    return compose_config([*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", *STEPS, *extra])


def lines(run_dir) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in ("time", "epoch_seconds", "seconds", "train_seconds")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def kill_at_training_batch(monkeypatch, number: int) -> None:
    """Ctrl-C in the forward pass of the ``number``-th training batch (validation does not call the loss)."""
    calls, real_loss = {"n": 0}, Regression.loss

    def loss(self, outputs, batch):
        calls["n"] += 1
        if calls["n"] == number:
            raise KeyboardInterrupt
        return real_loss(self, outputs, batch)

    monkeypatch.setattr(Regression, "loss", loss)


def test_a_run_killed_between_mid_epoch_validations_resumes_to_the_same_result(tmp_path, monkeypatch):
    whole = train(config(tmp_path), tmp_path / "whole")
    assert (whole["steps"], whole["epochs"]) == (5, 2)  # 2 epochs of 2 steps, then 1 step into the third
    validated = [(r["step"], r["epoch"]) for r in lines(tmp_path / "whole") if "val/nrmse" in r]
    assert validated == [(2, 1), (3, 2), (4, 2), (5, 3)]
    kill_at_training_batch(monkeypatch, 8)  # step 4's second micro-batch: after the validation at step 3
    with pytest.raises(RunInterrupted, match=r"last.pt holds step 3 \(within epoch 2\)"):
        train(config(tmp_path), tmp_path / "cut")
    monkeypatch.undo()
    assert lines(tmp_path / "cut")[-1]["step"] == 3
    resumed = train(config(tmp_path), tmp_path / "cut")
    assert lines(tmp_path / "cut") == lines(tmp_path / "whole")
    for key in ("test", "best_val", "best_epoch", "best_step", "epochs", "steps"):
        assert resumed[key] == whole[key], key
    log = (tmp_path / "cut" / "train.log").read_text()
    assert "at epoch 1 (step 3, batch 2 of epoch 2)" in log


def test_a_finished_step_based_run_is_left_as_it_is(tmp_path, caplog):
    first = train(config(tmp_path, "trainer.max_steps=2"), tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with caplog.at_level("INFO", logger="plmu"):
        again = train(config(tmp_path, "trainer.max_steps=2"), tmp_path / "run")
    assert again == first and (tmp_path / "run" / "metrics.jsonl").read_bytes() == before
    assert "complete (epoch 1, step 2); results.json is unchanged. Raise trainer.max_steps" in caplog.text


def test_a_run_ended_by_its_time_budget_is_complete_and_a_larger_budget_trains_it_on(tmp_path, caplog):
    whole = train(config(tmp_path), tmp_path / "whole")
    budget = train(
        config(tmp_path, "trainer.max_seconds=0.000001"), tmp_path / "run"
    )  # ends at its first validation (an epoch)
    assert budget["out_of_time"] and not whole["out_of_time"]
    assert budget["steps"] == 2 and budget["train_seconds_total"] <= budget["epoch_seconds_total"]
    with caplog.at_level("INFO", logger="plmu"):
        again = train(config(tmp_path, "trainer.max_seconds=0.000001"), tmp_path / "run")
    assert again == budget and "Raise trainer.max_seconds to train further" in caplog.text
    # The schedule spans max_steps, not the budget: a larger budget continues the same run to its end.
    longer = train(config(tmp_path, "trainer.max_seconds=100000"), tmp_path / "run")
    assert lines(tmp_path / "run") == lines(tmp_path / "whole")
    assert (longer["test"], longer["steps"], longer["out_of_time"]) == (whole["test"], 5, False)


def test_a_checkpoint_from_before_the_step_keys_resumes(tmp_path):
    """A last.pt written before max_steps & co. existed: its config lacks the keys, its train_state the fields."""
    old_run = lambda epochs: compose_config(  # noqa: E731  (the keys at their defaults: what old runs did)
        [*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", f"trainer.max_epochs={epochs}", "model.dropout=0.2"]
    )
    whole = train(old_run(2), tmp_path / "whole")
    train(old_run(1), tmp_path / "old")
    last = tmp_path / "old" / "checkpoints" / "last.pt"
    payload = checkpoint.load(last)
    for key in (
        "max_steps",
        "val_every_n_steps",
        "scheduler_interval",
        "accumulate_grad_batches",
        "state",
        "max_seconds",
    ):
        del payload["config"]["trainer"][key]
    del payload["config"]["init_from"], payload["carry"], payload["init_from"], payload["format"]
    state = payload["train_state"]
    state["bad_epochs"] = state.pop("bad_validations")
    for key in (
        "batch_in_epoch",
        "best_step",
        "epoch_seconds",
        "epoch_loss_sum",
        "epoch_samples",
        "validation_seconds",
    ):
        del state[key]
    checkpoint.save_atomic(payload, last)
    resumed = train(old_run(2), tmp_path / "old")
    assert lines(tmp_path / "old") == lines(tmp_path / "whole")
    assert (resumed["test"], resumed["epochs"]) == (whole["test"], 2)


def test_carry_without_forward_with_state_fails_before_data(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    cfg = config(tmp_path, "trainer.state=carry", "model._target_=torch.nn.Identity")
    with pytest.raises(ConfigError, match=r"^trainer.state=carry needs a model with forward_with_state"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_carry_with_a_transformer_fails_before_data(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    cfg = config(tmp_path, "trainer.state=carry", "model=transformer", "model.hidden_size=8", "model.num_heads=2")
    with pytest.raises(ConfigError, match=r"^trainer.state=carry: TransformerBackbone cannot carry its state"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_carry_over_independent_sequences_is_refused(tmp_path):
    """Issue 16: Mackey-Glass took trainer.state=carry, its state flowing from one series into an unrelated one."""
    with pytest.raises(ConfigError, match=r"^trainer.state=carry .* task mackey_glass's batches are independent "):
        train(config(tmp_path, "trainer.state=carry"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_progress_bar_counts_to_max_steps(tmp_path, monkeypatch):
    from plmu.train import progress

    totals = []
    real = progress.bar

    def bar(total, enabled):
        totals.append(total)
        return real(total, enabled)

    monkeypatch.setattr(progress, "bar", bar)
    train(config(tmp_path), tmp_path / "run")
    assert totals == [10]  # 5 steps of 2 micro-batches
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["train_state"]["step"] == 5


def test_a_step_based_run_may_be_extended_when_its_schedule_does_not_span_it(tmp_path):
    constant = "trainer.scheduler=null"
    whole = train(config(tmp_path, constant, "trainer.max_steps=4"), tmp_path / "whole")
    train(config(tmp_path, constant, "trainer.max_steps=2"), tmp_path / "run")
    extended = train(config(tmp_path, constant, "trainer.max_steps=4"), tmp_path / "run")
    assert lines(tmp_path / "run") == lines(tmp_path / "whole")
    assert extended["test"] == whole["test"] and extended["steps"] == 4
    with pytest.raises(ConfigError, match=r"trainer.max_steps=3 is below what .* has done \(4\)"):
        train(config(tmp_path, constant, "trainer.max_steps=3"), tmp_path / "run")


def test_a_run_whose_schedule_spans_its_length_cannot_be_lengthened(tmp_path):
    train(config(tmp_path, "trainer.max_steps=2"), tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"trainer.max_steps=4 \(the checkpoint's: 2\).*decays over the run's length"):
        train(config(tmp_path, "trainer.max_steps=4"), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before
