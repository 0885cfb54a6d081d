"""The trainer by optimizer steps: max_steps, validation every N steps, gradient accumulation, per-step schedules,
an exact resume from the middle of an epoch, and a model state carried from batch to batch."""

import functools
import json
import math
import time

import pytest
import torch
from torch import nn

from plmu.data.splits import DataSplits, TensorSplit
from plmu.errors import ConfigError
from plmu.train import checkpoint
from plmu.train.objectives import Regression
from plmu.train.schedules import warmup_cosine, warmup_cosine_factor
from plmu.train.trainer import Trainer, TrainerSettings, TrainState

CLOCK = ("seconds", "train_seconds")  # every validation's: its time so far, with and without validating
TIME_KEYS = ("time", "epoch_seconds", *CLOCK)


class PerStep(nn.Module):
    """x (B, T, 1) → (B, T, 1), step by step alike: no layer mixes the examples of a batch."""

    def __init__(self, dropout: float = 0.0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, 8, dtype=dtype), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1, dtype=dtype)
        )

    def forward(self, batch):
        return self.net(batch["inputs"])


def regression_data(n: int = 20, steps: int = 3, dtype: torch.dtype = torch.float32, seed: int = 0) -> DataSplits:
    generator = torch.Generator().manual_seed(seed)

    def split(size):
        x = torch.randn(size, steps, 1, generator=generator, dtype=dtype)
        return TensorSplit(x, torch.sin(2 * x) + 0.1 * x**2)

    return DataSplits(split(n), split(6), split(6))


def settings(**overrides) -> TrainerSettings:
    values = {
        "max_epochs": 2,
        "batch_size": 4,
        "optimizer": functools.partial(torch.optim.Adam, lr=1e-2),
        "device": "cpu",
        "progress": False,
        "log_every_n_steps": 1,
    }
    return TrainerSettings(**{**values, **overrides})


def make_trainer(run_dir, model=PerStep, data=None, **overrides) -> Trainer:
    """A trainer of ``model()``, built from seed 0 (two trainers start from the same weights)."""
    torch.manual_seed(0)
    return Trainer(model(), data or regression_data(), Regression(), settings(**overrides), run_dir)


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(run_dir) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIME_KEYS} for record in records(run_dir)]


def validations(run_dir) -> list[dict]:
    return [record for record in records(run_dir) if "val/nrmse" in record]


# ------------------------------------------------------------------------------------------------ length, validation


def test_max_steps_ends_the_run_mid_epoch_with_a_validation_and_a_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=None, max_steps=7)  # 5 batches an epoch
    assert trainer.remaining_batches() == 7
    trainer.fit()
    state = trainer.state
    assert (state.step, state.epoch, state.batch_in_epoch) == (7, 1, 2)
    assert [(r["step"], r["epoch"]) for r in validations(tmp_path)] == [(5, 1), (7, 2)]
    end_of_epoch, mid_epoch = validations(tmp_path)
    keys = {"time", "step", "epoch", "train/epoch_loss", "val/nrmse", "val/mse", "epoch_seconds", *CLOCK}
    assert set(end_of_epoch) == keys
    assert set(mid_epoch) == {"time", "step", "epoch", "val/nrmse", "val/mse", *CLOCK}
    saved = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["train_state"]
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (7, 1, 2)
    assert trainer.finished() and trainer.remaining_batches() == 0


def test_max_epochs_and_max_steps_whichever_comes_first(tmp_path):
    trainer = make_trainer(tmp_path / "a", max_epochs=1, max_steps=100)
    assert trainer.remaining_batches() == 5
    trainer.fit()
    assert (trainer.state.step, trainer.state.epoch) == (5, 1)
    trainer = make_trainer(tmp_path / "b", max_epochs=3, max_steps=10)  # exactly two epochs
    trainer.fit()
    assert (trainer.state.step, trainer.state.epoch, trainer.state.batch_in_epoch) == (10, 2, 0)
    assert [r["step"] for r in validations(tmp_path / "b")] == [5, 10]


def test_validation_every_n_steps_and_at_each_epochs_end_once(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=2, val_every_n_steps=2)
    trainer.fit()
    found = [(r["step"], "train/epoch_loss" in r) for r in validations(tmp_path)]
    # 5 steps an epoch: multiples of 2, and the epochs' ends (step 10 is both, validated once)
    assert found == [(2, False), (4, False), (5, True), (6, False), (8, False), (10, True)]
    assert trainer.state.best_step in {2, 4, 5, 6, 8, 10}


def test_early_stopping_patience_counts_validations(tmp_path):
    trainer = make_trainer(
        tmp_path,
        max_epochs=5,
        val_every_n_steps=1,
        early_stopping_patience=2,
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),
    )
    trainer.fit()  # lr 0: the first validation is the best, the next two are not better
    assert trainer.state.stopped_early and trainer.state.step == 3 and trainer.state.epoch == 0
    assert (trainer.state.best_step, trainer.state.bad_validations) == (1, 2)
    assert "last.pt holds step 3 (within epoch 1); best.pt holds step 1 of epoch 1" in trainer.what_is_kept()


def test_every_validation_records_the_clock_with_and_without_validating(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, max_epochs=2, val_every_n_steps=2)
    evaluate = trainer.evaluate

    def slow_evaluate(split):  # validation takes 50 ms of the clock, so the two clocks must differ by 50 ms each
        time.sleep(0.05)
        return evaluate(split)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    trainer.fit()
    clock = [(r["seconds"], r["train_seconds"]) for r in validations(tmp_path)]
    assert len(clock) == 6  # steps 2, 4, 5 (the epoch's end), 6, 8, 10
    for count, (seconds, train_seconds) in enumerate(clock, start=1):
        assert 0 < train_seconds < seconds
        assert seconds - train_seconds >= 0.05 * count
    assert [c[0] for c in clock] == sorted(c[0] for c in clock)
    assert [c[1] for c in clock] == sorted(c[1] for c in clock)
    assert trainer.state.train_seconds == pytest.approx(clock[-1][1])


def test_max_seconds_ends_the_run_at_the_first_validation_past_the_budget(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, max_epochs=50, val_every_n_steps=3, max_seconds=0.2)
    step = trainer._train_batches

    def slow_batches(batches, epoch, bar):  # each batch takes >= 30 ms: 0.2 s pass within 7 batches
        def slow():
            for batch in batches:
                time.sleep(0.03)
                yield batch

        return step(slow(), epoch, bar)

    monkeypatch.setattr(trainer, "_train_batches", slow_batches)
    trainer.fit()
    state = trainer.state
    assert trainer.out_of_time() and trainer.finished() and not state.stopped_early
    assert state.train_seconds >= 0.2
    assert state.epoch < 50 and (state.step % 3 == 0 or state.batch_in_epoch == 0)  # at a validation, long before
    last = validations(tmp_path)[-1]
    assert last["train_seconds"] >= 0.2 and all(r["train_seconds"] < 0.2 for r in validations(tmp_path)[:-1])
    saved = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["train_state"]
    assert saved["step"] == state.step and saved["validation_seconds"] == state.validation_seconds


def test_the_budget_reads_rank_0s_clock(tmp_path, monkeypatch):
    """Under torchrun each process has its own clock; one stopping alone would hang the others, so the trainer takes
    rank 0's (Sharding.main_value; one process: the identity). Here rank 0's clock says 100 s after one epoch."""
    trainer = make_trainer(tmp_path, max_epochs=5, max_seconds=50)
    monkeypatch.setattr(trainer.sharding, "main_value", lambda clock: (100.0, 1.0))
    trainer.fit()
    assert trainer.state.epoch == 1 and trainer.state.train_seconds == 99.0 and trainer.out_of_time()


def test_max_seconds_checked_only_at_validations(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=3, max_seconds=1e-9)  # validations only at epoch ends
    trainer.fit()
    assert trainer.state.epoch == 1 and trainer.state.step == 5 and trainer.out_of_time()


def test_the_trainer_refuses_a_run_without_an_end(tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer.max_epochs and trainer.max_steps are both null"):
        make_trainer(tmp_path, max_epochs=None, max_steps=None)


# ------------------------------------------------------------------------------------------------ accumulation


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_accumulating_two_batches_of_4_steps_as_one_batch_of_8(tmp_path, optimizer):
    """20 examples: batches of 4 in windows of 2 (4+4, 4+4, 4) against batches of 8 (8, 8, 4): the same steps."""
    data = regression_data(dtype=torch.float64)
    runs = {}
    for name, batch_size, accumulate in (("small", 4, 2), ("big", 8, 1)):
        torch.manual_seed(0)
        model = PerStep(dtype=torch.float64)
        runs[name] = Trainer(
            model,
            data,
            Regression(),
            settings(
                batch_size=batch_size,
                accumulate_grad_batches=accumulate,
                optimizer=functools.partial(optimizer, lr=0.05),
                grad_clip=0.5,  # clipped on the accumulated gradient, as on the big batch's
            ),
            tmp_path / name,
        )
        runs[name].fit()
    small, big = runs["small"], runs["big"]
    assert small.state.step == big.state.step == 6  # optimizer steps, not micro-batches
    for (name, a), b in zip(small.model.state_dict().items(), big.model.state_dict().values(), strict=True):
        # float64: the sums of 4+4 and of 8 rows round differently on other BLAS kernels (1e-12 failed on the H100
        # box's CPU, torch 2.11); a wrong window scaling would be off by tens of percent
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    losses = lambda run: [r["train/loss"] for r in records(tmp_path / run) if "train/loss" in r]  # noqa: E731
    assert losses("small") == pytest.approx(losses("big"), rel=1e-9)  # the window's mean loss


def test_accumulation_counts_steps_for_max_steps_and_the_bar(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=None, max_steps=4, accumulate_grad_batches=2)
    assert trainer.steps_per_epoch() == 3 and trainer.remaining_batches() == 7  # 2+2+1 batches, then 2
    trainer.fit()
    assert (trainer.state.step, trainer.state.epoch, trainer.state.batch_in_epoch) == (4, 1, 2)


# ------------------------------------------------------------------------------------------------ schedules


def test_warmup_cosine_gets_total_steps_from_the_trainer_and_steps_per_step(tmp_path):
    scheduler = functools.partial(warmup_cosine, warmup_steps=3, min_lr_ratio=0.1)
    trainer = make_trainer(tmp_path, max_epochs=2, scheduler=scheduler, scheduler_interval="step")
    assert trainer.scheduler_steps() == 10
    trainer.fit()
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    expected = [1e-2 * warmup_cosine_factor(s, 3, 10, 0.1) for s in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[0] == pytest.approx(1e-2 / 3) and lrs[2] == lrs[3] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(1e-3)  # the last step at min_lr_ratio · lr


def test_an_epoch_interval_schedule_counts_epochs(tmp_path):
    scheduler = functools.partial(warmup_cosine, warmup_steps=1)
    trainer = make_trainer(tmp_path, max_epochs=None, max_steps=12, scheduler=scheduler)
    assert trainer.scheduler_steps() == 3  # 12 steps of 5 an epoch: 3 epochs, the last cut short
    trainer.fit()
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    assert lrs[:5] == [1e-2] * 5 and lrs[5] == lrs[9] == pytest.approx(1e-2) and lrs[10] == pytest.approx(0.0)


def test_the_schedule_factors():
    assert [warmup_cosine_factor(s, 2, 6) for s in range(7)] == pytest.approx([0.5, 1, 1, 0.75, 0.25, 0, 0])
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0, got -1"):
        warmup_cosine(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), -1, 10)
    no_warmup = [warmup_cosine_factor(s, 0, 3, 0.5) for s in range(3)]
    assert no_warmup == pytest.approx([1, 0.75, 0.5])
    assert math.isclose(warmup_cosine_factor(5, 10, 4), 0.6)  # warm-up longer than the run: still warming up


# ------------------------------------------------------------------------------------------------ exact resume


class Interrupt(Exception):  # noqa: N818  (a stand-in for a kill, not an error)
    pass


def interrupt_after_validation_at(monkeypatch, step: int) -> None:
    original = Trainer._validate

    def validate(self, epoch, end_of_epoch):
        original(self, epoch, end_of_epoch)
        if self.state.step == step:
            raise Interrupt

    monkeypatch.setattr(Trainer, "_validate", validate)


def resume(run_dir, **overrides) -> Trainer:
    trainer = make_trainer(run_dir, **overrides)
    trainer.restore(checkpoint.load(run_dir / "checkpoints" / "last.pt"), run_dir / "checkpoints" / "last.pt")
    trainer.metrics.truncate_after(trainer.state.step)  # as plmu.train.run does
    return trainer


RESUMED_RUN = {
    "max_epochs": 3,
    "val_every_n_steps": 2,
    "accumulate_grad_batches": 2,  # 3 steps an epoch (2+2+1 batches)
    "scheduler": functools.partial(warmup_cosine, warmup_steps=2),
    "scheduler_interval": "step",
    "early_stopping_patience": 50,
}


def test_a_run_stopped_mid_epoch_resumes_to_the_same_records_and_weights(tmp_path, monkeypatch):
    model = lambda: PerStep(dropout=0.3)  # noqa: E731  (dropout: the RNG must be restored too)
    whole = make_trainer(tmp_path / "whole", model=model, **RESUMED_RUN)
    whole.fit()
    interrupt_after_validation_at(monkeypatch, 4)  # epoch 2, after its first step: mid-epoch
    cut = make_trainer(tmp_path / "cut", model=model, **RESUMED_RUN)
    with pytest.raises(Interrupt):
        cut.fit()
    assert (cut.state.step, cut.state.epoch, cut.state.batch_in_epoch) == (4, 1, 2)
    monkeypatch.undo()
    resumed = resume(tmp_path / "cut", model=model, **RESUMED_RUN)
    assert resumed.state.batch_in_epoch == 2 and resumed.remaining_batches() == 3 + 5
    resumed.fit()
    assert without_time(tmp_path / "cut") == without_time(tmp_path / "whole")
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.state.best_value == whole.state.best_value


def test_an_old_checkpoint_without_the_new_fields_resumes_at_its_epoch(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit()
    path = tmp_path / "checkpoints" / "last.pt"
    payload = checkpoint.load(path)
    old = {k: v for k, v in payload["train_state"].items() if k in ("epoch", "step", "best_value", "best_epoch")}
    payload["train_state"] = {**old, "bad_epochs": 1, "stopped_early": False, "seconds": 1.5}
    for key in ("carry", "init_from", "format"):
        del payload[key]
    checkpoint.save_atomic(payload, path)
    resumed = make_trainer(tmp_path, max_epochs=2)
    resumed.restore(checkpoint.load(path), path)
    assert resumed.state == TrainState(
        epoch=1, step=5, best_value=payload["train_state"]["best_value"], best_epoch=1, bad_validations=1, seconds=1.5
    )
    assert resumed.carried is None and resumed.init_from is None
    resumed.fit()
    assert resumed.state.epoch == 2


# ------------------------------------------------------------------------------------------------ carried state


class Streams:
    """B streams of one long sequence each, cut into chunks of L steps, in order (as plmu.data.stream does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, chunk: int) -> None:
        self.x, self.y, self.chunk = x, y, chunk  # (B, N, 1)

    def __len__(self) -> int:
        return self.x.shape[1]

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        count = math.ceil(self.x.shape[1] / self.chunk)
        return count if limit is None else min(count, limit)

    def batches(self, batch_size, shuffle=False, seed=0, limit=None, start_batch=0):
        assert batch_size == self.x.shape[0]
        for number in range(start_batch, self.num_batches(batch_size, limit)):
            window = slice(number * self.chunk, (number + 1) * self.chunk)
            yield {"inputs": self.x[:, window], "target": self.y[:, window]}


class Recurrent(nn.Module):
    """h_t = tanh(W h_{t−1} + U x_t), out_t = V h_t; ``forward_with_state`` continues h (B, H) across chunks."""

    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.cell = nn.RNNCell(1, hidden)
        self.out = nn.Linear(hidden, 1)
        self.seen: list = []  # the state each call started from

    def forward_with_state(self, batch, state):
        self.seen.append(state)
        h = torch.zeros(batch["inputs"].shape[0], self.cell.hidden_size) if state is None else state
        outputs = []
        for t in range(batch["inputs"].shape[1]):
            h = self.cell(batch["inputs"][:, t], h)
            outputs.append(self.out(h))
        return torch.stack(outputs, dim=1), h

    def forward(self, batch):
        return self.forward_with_state(batch, None)[0]


def stream_data(streams: int = 2, length: int = 12, chunk: int = 3) -> DataSplits:
    generator = torch.Generator().manual_seed(1)
    splits = []
    for _ in range(3):
        x = torch.randn(streams, length, 1, generator=generator)
        y = torch.roll(x, 2, dims=1)  # the input two steps back: only a carried state predicts a chunk's first steps
        splits.append(Streams(x, y, chunk))
    return DataSplits(*splits)


def test_a_carried_state_runs_on_across_batches_and_starts_over_each_epoch(tmp_path):
    trainer = make_trainer(tmp_path, model=Recurrent, data=stream_data(), batch_size=2, state="carry", max_epochs=2)
    trainer.fit()
    model = trainer.model
    starts = [state is None for state in model.seen]
    # per epoch: 4 training chunks (None, then carried), then 4 validation chunks (from None again)
    epoch = [True, False, False, False] * 2
    assert starts == epoch * 2
    assert all(not state.requires_grad for state in model.seen if state is not None)  # cut between batches


def test_with_carry_an_interrupted_run_resumes_the_carried_state_exactly(tmp_path, monkeypatch):
    run = {"state": "carry", "batch_size": 2, "max_epochs": 2, "val_every_n_steps": 3}
    whole = make_trainer(tmp_path / "whole", model=Recurrent, data=stream_data(), **run)
    whole.fit()
    interrupt_after_validation_at(monkeypatch, 3)  # after chunk 3 of 4: the state after it is in last.pt
    cut = make_trainer(tmp_path / "cut", model=Recurrent, data=stream_data(), **run)
    with pytest.raises(Interrupt):
        cut.fit()
    saved = checkpoint.load(tmp_path / "cut" / "checkpoints" / "last.pt")["carry"]
    assert isinstance(saved, torch.Tensor) and saved.shape == (2, 6) and saved.device.type == "cpu"
    monkeypatch.undo()
    resumed = resume(tmp_path / "cut", model=Recurrent, data=stream_data(), **run)
    assert torch.equal(resumed.carried, saved)
    resumed.fit()
    assert without_time(tmp_path / "cut") == without_time(tmp_path / "whole")
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_carry_needs_forward_with_state(tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer.state=carry needs a model with forward_with_state"):
        make_trainer(tmp_path, state="carry")


def test_a_carried_state_round_trips_through_a_checkpoint(tmp_path):
    from plmu.models import TransformerState

    state = [
        (torch.ones(2, 3), torch.zeros(2, 3)),
        {"m": torch.arange(4.0)},
        TransformerState([torch.ones(1, 2)], [torch.zeros(1, 2)], torch.ones(1, 2, dtype=torch.bool)),
        None,
    ]
    checkpoint.save_atomic({"carry": checkpoint.state_to_plain(state)}, tmp_path / "c.pt")
    back = checkpoint.state_from_plain(checkpoint.load(tmp_path / "c.pt")["carry"])
    assert isinstance(back[2], TransformerState) and isinstance(back[0], tuple) and back[3] is None
    assert torch.equal(back[2].valid, state[2].valid) and torch.equal(back[1]["m"], state[1]["m"])
    with pytest.raises(Exception, match=r"unknown type 'os\.system'"):
        checkpoint.state_from_plain({"__plmu_named_tuple__": "os.system", "fields": ["echo"]})


def test_progress_off_a_terminal_is_log_lines(caplog):
    """Issue 18: off a terminal (a log file, Slurm) tqdm's frames were glued to the log lines; now the progress is a
    log line of its own, every 30 s (here every call)."""
    import logging

    from plmu.train.progress import ProgressLines

    bar = ProgressLines(total=4, interval=0.0)
    bar.set_description("epoch 1/2")
    with caplog.at_level(logging.INFO, logger="plmu.train.trainer"), bar:
        for _ in range(2):
            bar.update()
            bar.set_postfix(loss="0.5", samples_per_s="100")
    lines = [record.getMessage() for record in caplog.records]
    assert lines[-1].startswith("epoch 1/2: 2/4 batches (50%), loss 0.5, samples/s 100, about 0:00:0")
    quiet = ProgressLines(total=4, interval=0.0, enabled=False)  # trainer.progress=false
    caplog.clear()
    quiet.update()
    assert not caplog.records


def test_batches_made_ahead_train_the_same_run(tmp_path, monkeypatch):
    """trainer.prefetch (a background thread) changes where batches are made, never which: the same metrics."""
    monkeypatch.setattr("plmu.train.machine.usable_cores", lambda: torch.get_num_threads() + 1)  # a core to spare
    data = regression_data(n=40)
    for depth in (0, 3):
        trainer = make_trainer(tmp_path / f"p{depth}", data=data, prefetch=depth, model=functools.partial(PerStep, 0.2))
        assert trainer.prefetch_depth == depth
        trainer.fit()
    assert without_time(tmp_path / "p0") == without_time(tmp_path / "p3")
