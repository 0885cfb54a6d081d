"""The training loop: epochs of optimizer steps over a task's splits, validation, checkpoints, resume, early stop.
(Over 400 lines as one idea: the loop and the state it must save to continue exactly; settings: plmu.train.settings,
the bar or its log lines: plmu.train.progress.)

Everything a run writes goes to its run directory:
``checkpoints/last.pt`` (at every validation) and ``checkpoints/best.pt`` (best validation metric), written
atomically, and ``metrics.jsonl``. A run restarted in the same directory (or with ``resume`` pointing at a last.pt)
continues from its last validation, at an epoch's end or in the middle of one, with the same model, optimiser,
scheduler, RNG, carried state and early-stopping state, so it ends with the same numbers as a run that was never
interrupted (on CPU; CUDA kernels may be nondeterministic).

How long: ``max_epochs`` and ``max_steps`` (optimizer steps), whichever comes first; either may be None, not both.
``max_seconds`` adds a time budget: the run ends at the first validation at which its training time (validation
excluded, over all attempts) has reached it.

When it validates: after an optimizer step that ends an epoch, that is a multiple of ``val_every_n_steps``, or that
is the run's last (``max_steps``); once per step, however many of these hold. Without ``val_every_n_steps`` that is
once per epoch, as before. Every validation writes a ``metrics.jsonl`` record (``step``, ``epoch``, ``val/*``; an
epoch's end adds ``train/epoch_loss`` and ``epoch_seconds``; every one ends with ``seconds``, the training and
validation time so far over all attempts, and ``train_seconds``, the same without validation), last.pt, and
best.pt when the metric improved; early stopping's patience counts validations.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from plmu.data.prefetch import prefetch
from plmu.data.splits import DataSplits, TensorSplit
from plmu.errors import NonFiniteLossError
from plmu.models.state import detach_state
from plmu.train import checkpoint, progress
from plmu.train.distributed import Sharding
from plmu.train.loggers import JsonlLog, NullLogger
from plmu.train.machine import check_precision, prefetch_depth, resolve_precision
from plmu.train.objectives import Objective
from plmu.train.schedules import takes_total_steps
from plmu.train.settings import TrainerSettings, check_carry, check_settings

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What, besides the model, optimiser, scheduler, RNG and carried state, a checkpoint must restore to continue
    exactly. Checkpoints written before a field existed load with its default (they were all at an epoch's end)."""

    epoch: int = 0  # finished epochs: the epoch to run (or to continue) next, counted from 0
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches of epoch ``epoch`` already trained (a checkpoint mid-epoch); 0 at its start
    best_value: float | None = None
    best_epoch: int | None = None  # the epoch (from 1) of the best validation: finished, or in progress
    best_step: int | None = None
    bad_validations: int = 0  # validations in a row without a better metric (early stopping's count)
    stopped_early: bool = False
    seconds: float = 0.0  # training and validation time up to the last checkpoint, over all attempts
    epoch_seconds: float = 0.0  # of epoch ``epoch`` up to the last checkpoint (mid-epoch; 0 at its start)
    validation_seconds: float = 0.0  # the part of ``seconds`` spent validating (older checkpoints: 0 until resumed)
    epoch_loss_sum: float = 0.0  # epoch ``epoch``'s batch losses × batch sizes so far, and its samples:
    epoch_samples: int = 0  # train/epoch_loss of an epoch resumed mid-way is still over the whole epoch

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        """A checkpoint's ``train_state`` (earlier names: :func:`plmu.train.checkpoint.upgrade`, at load)."""
        return cls(**saved)

    @property
    def train_seconds(self) -> float:
        """Training time up to the last checkpoint, validation excluded, over all attempts: the clock of a time
        budget (``max_seconds``) and of accuracy-against-time comparisons."""
        return self.seconds - self.validation_seconds


def _partial(spec: Any) -> Callable[..., Any]:
    """An optimizer or scheduler setting as the callable it is: a ``{_target_, _partial_: true}`` config
    instantiated, a callable as given."""
    return instantiate(spec) if isinstance(spec, Mapping) else spec


class Trainer:
    """Trains ``model`` on ``data.train`` with ``objective``, validating on ``data.val`` (see the module docstring).

    A batch is a dict of tensors (``inputs`` (B, T, ...) or token ids (B, T), ``target``, ...); the model maps it
    to the outputs the objective scores. With ``settings.state="carry"`` it is called as
    ``outputs, state = model.forward_with_state(batch, state)`` instead: the state (whatever the backbone's is,
    e.g. a list of (B, memory) tensors) starts as None at each epoch and each evaluation and runs on from batch to
    batch, cut from the graph between batches (truncated backpropagation through time), so that a language model's
    memory spans a stream longer than one chunk. That is only right if batch i + 1 continues batch i row by row:
    training batches then come unshuffled (a ``StreamSplit`` yields its chunks in stream order either way).
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        objective: Objective,
        settings: TrainerSettings,
        run_dir: str | Path,
        seed: int = 0,
        logger: NullLogger | None = None,
        config: dict[str, Any] | None = None,
        model_args: dict[str, Any] | None = None,
        init_from: str | None = None,
    ) -> None:
        check_settings(settings)
        check_carry(settings.state, model)  # the model's part; plmu.train.run also checks the task's data
        self.settings, self.objective, self.data, self.seed = settings, objective, data, seed
        self.sharding = Sharding()  # this process's part of a torchrun run (plmu.train.distributed); one: no-op
        self.device = self.sharding.device(settings.device)
        self.precision, self.precision_reason = resolve_precision(settings.precision, self.device)
        self.prefetch_depth, self.prefetch_reason = prefetch_depth(settings.prefetch)
        check_precision(self.precision, self.device, model)
        self.model = model.to(self.device)
        self.forward = torch.compile(self.model) if settings.compile else self.model
        self.forward_with_state = getattr(self.model, "forward_with_state", None)
        if settings.compile and settings.state == "carry":
            self.forward_with_state = torch.compile(self.forward_with_state)
        self.train_forward = self.forward_with_state if settings.state == "carry" else self.forward
        if self.sharding.enabled:  # DDP: rank 0's weights now, averaged gradients in every backward pass
            self.train_forward = self.sharding.wrap(self.model, self.device, settings.state, settings.compile)
        self.optimizer = _partial(settings.optimizer)(self.model.parameters())
        self.scheduler = None
        if settings.scheduler:
            make_scheduler = _partial(settings.scheduler)
            total = {"total_steps": self.scheduler_steps()} if takes_total_steps(make_scheduler) else {}
            self.scheduler = make_scheduler(self.optimizer, **total)
        self.run_dir = Path(run_dir)
        self.checkpoints = self.run_dir / "checkpoints"
        self.metrics = JsonlLog(self.run_dir / "metrics.jsonl")
        self.logger = logger or NullLogger()
        self.config = config or {}
        self.model_args = model_args or {}  # the shapes the model was built with (plmu-eval rebuilds it from them)
        self.init_from = init_from  # the checkpoint the weights started from (a record; see plmu.train.run)
        self.state = TrainState()
        self.carried: Any = None  # the model's state carried between training batches (state=carry)
        self.saved: tuple[int, int, bool] | None = None  # last.pt's (step, epoch from 1, at the epoch's end)
        self.saved_value: float | None = None  # and its validation metric

    # ------------------------------------------------------------------------------------------- counts
    def train_batches(self) -> int:
        """Batches in one training epoch (``limit_train_batches`` applied)."""
        return self.data.train.num_batches(self.settings.batch_size, self.settings.limit_train_batches)

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: an epoch's last, short accumulation window is a step too."""
        return math.ceil(self.train_batches() / self.settings.accumulate_grad_batches)

    def scheduler_steps(self) -> int:
        """How often the scheduler will be stepped over the whole run, the ``total_steps`` a schedule is given:
        optimizer steps (``scheduler_interval=step``) or epochs (``epoch``), up to max_steps or max_epochs,
        whichever ends the run first. Early stopping may end it sooner."""
        settings, per_epoch = self.settings, self.steps_per_epoch()
        max_epochs, max_steps = settings.max_epochs, settings.max_steps
        if settings.scheduler_interval == "step":
            limits = [max_steps, None if max_epochs is None else max_epochs * per_epoch]
        else:
            limits = [max_epochs, None if max_steps is None else math.ceil(max_steps / per_epoch)]
        return min(limit for limit in limits if limit is not None)

    def remaining_batches(self) -> int:
        """Training batches left until max_epochs or max_steps (early stopping aside): the progress bar's total."""
        settings, state, n = self.settings, self.state, self.train_batches()
        if self.finished():
            return 0
        left = n - state.batch_in_epoch  # of the current epoch
        by_epochs = None if settings.max_epochs is None else left + (settings.max_epochs - state.epoch - 1) * n
        if settings.max_steps is None:
            return by_epochs or 0
        steps, accumulate = settings.max_steps - state.step, settings.accumulate_grad_batches
        first = math.ceil(left / accumulate)  # checkpoints fall on window boundaries: windows start at 0
        if steps <= first:
            by_steps = min(left, steps * accumulate)
        else:
            whole, part = divmod(steps - first, self.steps_per_epoch())
            by_steps = left + whole * n + min(n, part * accumulate)
        return by_steps if by_epochs is None else min(by_epochs, by_steps)

    def finished(self) -> bool:
        """Whether the run is over: stopped early, or max_epochs, max_steps or max_seconds reached."""
        settings, state = self.settings, self.state
        return (
            state.stopped_early
            or (settings.max_epochs is not None and state.epoch >= settings.max_epochs)
            or (settings.max_steps is not None and state.step >= settings.max_steps)
            or self.out_of_time()
        )

    def out_of_time(self) -> bool:
        """Whether the training time counted up to the last validation has reached ``max_seconds``."""
        budget = self.settings.max_seconds
        return budget is not None and self.state.train_seconds >= budget

    # ------------------------------------------------------------------------------------------- checkpoints
    def _save(self, name: str) -> None:
        ranks = self.sharding.gather_states(checkpoint.rng_state(), checkpoint.state_to_plain(self.carried))
        if ranks is None:
            return  # not rank 0: only rank 0 writes (it gathered this process's states)
        checkpoint.save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "train_state": asdict(self.state),
                "carry": checkpoint.state_to_plain(self.carried),  # None at an epoch's end and with state=reset
                "rng": checkpoint.rng_state(),
                "config": self.config,
                "model_args": self.model_args,
                "metric": self.objective.metric,
                "init_from": self.init_from,
                **ranks,  # several processes: world_size, every rank's rng and carry
            },
            self.checkpoints / name,
        )

    def restore(self, payload: dict[str, Any], path: str | Path) -> None:
        """Continue from a last.pt's payload: model, optimiser, scheduler, RNG, carried state, the position in the
        run (epoch, step, batch within the epoch) and early-stopping state.

        Writes nothing: the runner truncates ``metrics.jsonl`` to the checkpoint's step once every check passed.
        """
        checkpoint.load_model_state(self.model, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload["scheduler"]:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState.from_checkpoint(payload["train_state"])
        self.carried = checkpoint.state_from_plain(self.sharding.own(payload, "carry"), self.device)
        self.init_from = payload.get("init_from")  # the first attempt's: a resume never loads init_from again
        rng = self.sharding.own(payload, "rng")  # this rank's (None: a rank the checkpoint did not have)
        if rng is not None:
            checkpoint.set_rng_state(rng)
        mid_epoch = self.state.batch_in_epoch > 0
        self.saved = (self.state.step, self.state.epoch + mid_epoch, not mid_epoch)

    def _log(self, record: dict[str, float]) -> None:
        """One record to metrics.jsonl (rank 0's) and to the tracker (a NullLogger on other ranks)."""
        if self.sharding.is_main:
            self.metrics.write(record)
        self.logger.log(record, step=self.state.step)

    # ------------------------------------------------------------------------------------------- loops
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def evaluate(self, split: TensorSplit) -> dict[str, float]:
        """The objective's metrics over ``split`` (capped by ``limit_eval_batches``), from additive statistics.

        With ``state=carry`` the state runs on across the whole split, in order, from None.
        """
        self.model.eval()
        size = self.settings.evaluation_batch
        stats, carried = self.objective.zeros(), None
        limit = self.settings.limit_eval_batches
        # what was scored: a limited evaluation is recorded as one (results.json's test_scored), never as the split's
        self.scored = {"batches": 0, "of_batches": split.num_batches(size), "examples": 0, "limit_eval_batches": limit}
        batches = prefetch(split.batches(size, limit=limit), self.prefetch_depth)
        with torch.no_grad(), self._autocast(), batches:
            for batch in batches:
                self.scored["batches"] += 1
                self.scored["examples"] += len(next(iter(batch.values())))  # the global batch's rows (all ranks)
                if self.sharding.enabled and (batch := self.sharding.rows(batch)) is None:
                    continue  # this process has no rows of this (short) global batch
                batch = self.to_device(batch)
                if self.settings.state == "carry":
                    outputs, carried = self.forward_with_state(batch, carried)
                else:
                    outputs = self.forward(batch)
                stats += self.objective.stats(outputs, batch).cpu()
        return self.objective.reduce(self.sharding.reduce_stats(stats))

    def _epoch_batches(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        """Epoch ``epoch``'s training batches from ``state.batch_in_epoch`` on, in the order a fresh epoch has."""
        settings = self.settings
        return self.data.train.batches(
            settings.batch_size,
            shuffle=settings.state != "carry",  # a carried state needs batch i + 1 to continue batch i
            seed=self.seed * 1_000_003 + epoch,
            limit=settings.limit_train_batches,
            start_batch=self.state.batch_in_epoch,
        )

    def _train_epoch(self, epoch: int, bar: progress.Bar) -> None:
        """Train epoch ``epoch`` (from 0) from ``state.batch_in_epoch`` on, validating when due (module docstring);
        returns at its end, at max_steps or at an early stop.

        Every ``accumulate_grad_batches`` micro-batches make one optimizer step (an epoch's last window may be
        shorter). Each micro-batch's loss is divided by its window's size, so that the step is the one a batch of
        the window's examples would give when the micro-batches have equal sizes and the model has no layer that
        mixes the examples of a batch (batch norm).
        """
        settings = self.settings
        if self.state.batch_in_epoch == 0:
            self.carried = None  # every epoch starts from the initial state
        self.model.train()
        bar.set_description(
            f"epoch {epoch + 1}" + ("" if settings.max_epochs is None else f"/{settings.max_epochs}"), refresh=False
        )
        with prefetch(self._epoch_batches(epoch), self.prefetch_depth) as batches:  # made ahead (spare core)
            self._train_batches(batches, epoch, bar)

    def _train_batches(self, batches: Iterator[dict[str, Tensor]], epoch: int, bar: progress.Bar) -> None:
        """The body of :meth:`_train_epoch` over its (prefetched) batches."""
        settings, state, n = self.settings, self.state, self.train_batches()
        accumulate, carry = settings.accumulate_grad_batches, settings.state == "carry"
        window_loss, samples, start = 0.0, 0, time.perf_counter()
        for index, batch in enumerate(batches, start=state.batch_in_epoch):
            window = min(accumulate, n - index // accumulate * accumulate)  # micro-batches in this step
            if index % accumulate == 0:
                self.optimizer.zero_grad(set_to_none=True)
                window_loss = 0.0
            size = len(batch["target"])  # of the global batch
            batch, share = self.sharding.local(batch, self.objective)  # this process's rows; one process: all
            batch = self.to_device(batch)
            with self.sharding.sync(last_in_window=(index + 1) % accumulate == 0 or index + 1 == n):
                with self._autocast():
                    if carry:
                        outputs, carried = self.train_forward(batch, self.carried)
                        self.carried = detach_state(carried)  # the next batch does not backpropagate into this one
                    else:
                        outputs = self.train_forward(batch)
                    loss = self.objective.loss(outputs, batch)
                if share is not None:  # several processes: this one's term of the global loss
                    loss = self.sharding.weighted(loss, outputs, share)
                value, where = self.sharding.loss_value(loss)  # several processes: all-reduced, the same on each
                if not math.isfinite(value):  # so every process stops here, with the same message
                    raise NonFiniteLossError(
                        f"the training loss became {value}{where} at epoch {epoch + 1}, step {state.step + 1}; the "
                        f"run stopped. {self.what_is_kept('it diverged')}. {self._divergence_fixes()}"
                    )
                (loss if window == 1 else loss / window).backward()
            window_loss += value / window  # the window's mean loss: the loss this step descends
            state.epoch_loss_sum += value * size
            state.epoch_samples += size
            samples += size
            bar.update()
            rate = samples / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{value:.4g}", samples_per_s=f"{rate:.0f}", refresh=False)
            self._attempt_batches += 1
            if (index + 1) % accumulate and index + 1 < n:
                continue  # the window is not complete yet
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip)
            self.optimizer.step()
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
            if self.scheduler and settings.scheduler_interval == "step":
                self.scheduler.step()
            state.step += 1
            state.batch_in_epoch = index + 1
            if state.step % settings.log_every_n_steps == 0:
                self._log({"step": state.step, "epoch": epoch + 1, "train/loss": window_loss, "lr": lr})
            end_of_epoch = index + 1 == n
            if end_of_epoch or self._validation_due():
                self._validate(epoch, end_of_epoch)
                self.model.train()
            if end_of_epoch or self.finished():
                return
        raise RuntimeError(  # num_batches and batches disagree: a split's bug, not the user's
            f"the training split yielded {state.batch_in_epoch} batches in epoch {epoch + 1}, but num_batches says {n}"
        )

    def _validation_due(self) -> bool:
        """After an optimizer step (not at an epoch's end): every ``val_every_n_steps`` steps, and at max_steps."""
        settings, step = self.settings, self.state.step
        every = settings.val_every_n_steps
        return bool(every and step % every == 0) or (settings.max_steps is not None and step >= settings.max_steps)

    def _validate(self, epoch: int, end_of_epoch: bool) -> None:
        """Validate, log the record, update early stopping, write best.pt (if better) and last.pt."""
        settings, state, metric = self.settings, self.state, self.objective.metric
        validation_start = time.perf_counter()
        val_metrics = self.evaluate(self.data.val)
        state.validation_seconds += time.perf_counter() - validation_start
        value = val_metrics[metric]
        if end_of_epoch and self.scheduler and settings.scheduler_interval == "epoch":
            self.scheduler.step()
        elapsed = time.perf_counter() - self._mark
        state.epoch_seconds += elapsed
        state.seconds += elapsed
        # Each process has its own clock: rank 0's decides trainer.max_seconds for all (one stopping alone would hang).
        state.seconds, state.validation_seconds = self.sharding.main_value((state.seconds, state.validation_seconds))
        train_loss = state.epoch_loss_sum / max(state.epoch_samples, 1)
        validation = {f"val/{name}": number for name, number in val_metrics.items()}
        if end_of_epoch:  # the keys (and their order) of every epoch record before step-based validation existed
            record = {
                "step": state.step,
                "epoch": epoch + 1,
                "train/epoch_loss": train_loss,
                **validation,
                "epoch_seconds": state.epoch_seconds,
            }
        else:
            record = {"step": state.step, "epoch": epoch + 1, **validation}
        record |= {"seconds": state.seconds, "train_seconds": state.train_seconds}
        self._log(record)
        if end_of_epoch:
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            state.epoch_seconds, state.epoch_loss_sum, state.epoch_samples = 0.0, 0.0, 0
            self.carried = None
        improved = math.isfinite(value) and self.objective.better(value, state.best_value)
        if improved:
            state.best_value, state.best_epoch, state.best_step = value, epoch + 1, state.step
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        patience = settings.early_stopping_patience
        state.stopped_early = bool(patience) and state.bad_validations >= patience
        if improved:
            self._save("best.pt")
        self._save("last.pt")
        self.saved, self.saved_value = (state.step, epoch + 1, end_of_epoch), value
        self._mark = time.perf_counter()
        per_batch = (self._mark - self._attempt_start) / max(self._attempt_batches, 1)
        log.info(
            "%s: train loss %.4g%s, val %s %.4f%s, %.1f s, about %s left",
            self._position(epoch, end_of_epoch),
            train_loss,
            "" if end_of_epoch else " so far this epoch",
            metric,
            value,
            " (best)" if improved else "",
            record.get("epoch_seconds", elapsed),
            progress.duration(per_batch * self.remaining_batches()),
        )
        if state.stopped_early:
            log.info(
                "early stop: no better val %s for %d validations; best at epoch %s (step %s)",
                metric,
                patience,
                state.best_epoch,
                state.best_step,
            )
        elif self.out_of_time() and not (settings.max_steps is not None and state.step >= settings.max_steps):
            log.info(
                "time budget: %.0f s of training (trainer.max_seconds=%s); best at epoch %s (step %s)",
                state.train_seconds,
                settings.max_seconds,
                state.best_epoch,
                state.best_step,
            )

    def _position(self, epoch: int, end_of_epoch: bool) -> str:
        """Where the run is, for the log: "epoch 3/10", "epoch 3 (step 120/1000)", "step 50/1000 (epoch 2, ...)"."""
        settings, state = self.settings, self.state
        steps = f"step {state.step}" + ("" if settings.max_steps is None else f"/{settings.max_steps}")
        if end_of_epoch:
            epochs = f"epoch {epoch + 1}" + ("" if settings.max_epochs is None else f"/{settings.max_epochs}")
            return epochs if settings.max_steps is None else f"{epochs} ({steps})"
        return f"{steps} (epoch {epoch + 1}, batch {state.batch_in_epoch}/{self.train_batches()})"

    def _divergence_fixes(self) -> str:
        """What to change after a non-finite loss: the settings not already at their safe values."""
        fixes = ["lower trainer.optimizer.lr (a new run)"]
        if self.settings.grad_clip is None:
            fixes.append("set trainer.grad_clip")
        if str(self.precision) != "32":
            fixes.append("use trainer.precision=32")
        return "Next: " + ", or ".join(fixes)

    def what_is_kept(self, why: str = "it stopped") -> str:
        """What the checkpoints hold now, stated only as far as it is true; ``why`` the run stopped (it diverged,
        it was interrupted, it ran out of memory), said when no checkpoint was written."""
        metric, last = self.objective.metric, self.checkpoints / "last.pt"
        if self.saved is None or (not self.sharding.enabled and not last.exists()):  # DDP: the same on every rank
            return f"No checkpoint was written ({why} before its first checkpoint)"
        step, epoch, end_of_epoch = self.saved
        kept = f"{last} holds epoch {epoch}" if end_of_epoch else f"{last} holds step {step} (within epoch {epoch})"
        if self.saved_value is not None and not math.isfinite(self.saved_value):
            kept += f", whose validation {metric} was already {self.saved_value}"
        state = self.state
        if state.best_epoch is None:
            kept += "; no validation had a finite metric, so there is no best.pt"
        elif self.settings.val_every_n_steps is None and self.settings.max_steps is None:
            kept += f"; best.pt holds epoch {state.best_epoch} (val {metric} {state.best_value:.6g})"
        else:
            kept += f"; best.pt holds step {state.best_step} of epoch {state.best_epoch} (val {metric} "
            kept += f"{state.best_value:.6g})"
        return kept

    def fit(self) -> float:
        """Train until max_epochs, max_steps or early stopping; returns the best validation metric (NaN if none)."""
        enabled = self.settings.progress and self.sharding.is_main
        self._attempt_start = self._mark = time.perf_counter()  # _mark: the time counted up to the last checkpoint
        self._attempt_batches = 0
        with progress.logs_above_bar(enabled), progress.bar(self.remaining_batches(), enabled) as bar:
            while not self.finished():
                self._train_epoch(self.state.epoch, bar)
        return float("nan") if self.state.best_value is None else self.state.best_value

    def test(self) -> dict[str, float]:
        """The test metrics of the best checkpoint (the current weights if there is none)."""
        best = self.checkpoints / "best.pt"
        if self.sharding.is_main and best.exists():
            checkpoint.load_model_state(self.model, checkpoint.load(best)["model"], best)
        self.sharding.broadcast_model(self.model)  # several processes: rank 0's best weights everywhere
        return self.evaluate(self.data.test)
