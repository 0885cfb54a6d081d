"""The training loop: epochs over in-memory splits, validation, checkpoints, resume, early stopping.

Everything a run writes goes to its run directory:
``checkpoints/last.pt`` (every epoch) and ``checkpoints/best.pt`` (best validation metric), written atomically,
and ``metrics.jsonl``. A run restarted in the same directory (or with ``resume`` pointing at a last.pt) continues
from the last finished epoch with the same model, optimiser, scheduler, RNG and early-stopping state, so it ends
with the same numbers as a run that was never interrupted (on CPU; CUDA kernels may be nondeterministic).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from plmu.data.splits import DataSplits, TensorSplit
from plmu.errors import ConfigError, NonFiniteLossError
from plmu.train import checkpoint
from plmu.train.loggers import JsonlLog, NullLogger
from plmu.train.objectives import Objective

PRECISIONS = ("32", "bf16")
log = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """``conf/trainer/*.yaml``; ``optimizer`` and ``scheduler`` are partials (``_partial_: true``)."""

    max_epochs: int
    batch_size: int
    optimizer: Callable[..., torch.optim.Optimizer]
    scheduler: Callable[..., Any] | None = None
    eval_batch_size: int | None = None
    grad_clip: float | None = None
    early_stopping_patience: int | None = None
    device: str = "auto"
    precision: str = "32"
    compile: bool = False
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    log_every_n_steps: int = 50
    progress: bool = True


@dataclass
class TrainState:
    """What, besides the model and optimiser, a checkpoint must restore to continue exactly."""

    epoch: int = 0  # the next epoch to run
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0  # training and validation time of every finished epoch, over all attempts


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    return device


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class Trainer:
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
    ) -> None:
        if settings.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {settings.precision!r}")
        self.settings, self.objective, self.data, self.seed = settings, objective, data, seed
        self.device = resolve_device(settings.device)
        self.model = model.to(self.device)
        self.forward = torch.compile(self.model) if settings.compile else self.model
        self.optimizer = settings.optimizer(self.model.parameters())
        self.scheduler = settings.scheduler(self.optimizer) if settings.scheduler else None
        self.run_dir = Path(run_dir)
        self.checkpoints = self.run_dir / "checkpoints"
        self.metrics = JsonlLog(self.run_dir / "metrics.jsonl")
        self.logger = logger or NullLogger()
        self.config = config or {}
        self.model_args = model_args or {}  # the shapes the model was built with (plmu-eval rebuilds it from them)
        self.state = TrainState()
        self.saved_epoch: int | None = None  # the epoch last.pt holds, and its validation metric
        self.saved_value: float | None = None

    # ------------------------------------------------------------------------------------------- checkpoints
    def _save(self, name: str) -> None:
        checkpoint.save_atomic(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "train_state": asdict(self.state),
                "rng": checkpoint.rng_state(),
                "config": self.config,
                "model_args": self.model_args,
                "metric": self.objective.metric,
            },
            self.checkpoints / name,
        )

    def restore(self, payload: dict[str, Any], path: str | Path) -> None:
        """Continue from a last.pt's payload: model, optimiser, scheduler, RNG, epoch and early-stopping state.

        Writes nothing: the runner truncates ``metrics.jsonl`` to the checkpoint's step once every check passed.
        """
        checkpoint.load_model_state(self.model, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload["scheduler"]:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["train_state"])
        checkpoint.set_rng_state(payload["rng"])
        self.saved_epoch = self.state.epoch

    def _log(self, record: dict[str, float]) -> None:
        """One record to metrics.jsonl and to the tracker."""
        self.metrics.write(record)
        self.logger.log(record, step=self.state.step)

    # ------------------------------------------------------------------------------------------- loops
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.precision == "bf16")

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def evaluate(self, split: TensorSplit) -> dict[str, float]:
        """The objective's metrics over ``split`` (capped by ``limit_eval_batches``), from additive statistics."""
        self.model.eval()
        size = self.settings.eval_batch_size or self.settings.batch_size
        stats = self.objective.zeros()
        with torch.no_grad(), self._autocast():
            for batch in split.batches(size, limit=self.settings.limit_eval_batches):
                batch = self.to_device(batch)
                stats += self.objective.stats(self.forward(batch), batch).cpu()
        return self.objective.reduce(stats)

    def _train_epoch(self, epoch: int, bar: tqdm) -> float:
        self.model.train()
        settings, split = self.settings, self.data.train
        batches = split.batches(
            settings.batch_size, shuffle=True, seed=self.seed * 1_000_003 + epoch, limit=settings.limit_train_batches
        )
        bar.set_description(f"epoch {epoch + 1}/{settings.max_epochs}", refresh=False)
        loss_sum, samples, start = 0.0, 0, time.perf_counter()
        for batch in batches:
            batch = self.to_device(batch)
            with self._autocast():
                loss = self.objective.loss(self.forward(batch), batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {self.state.step + 1}; the "
                    f"run stopped. {self.what_is_kept()}. Lower trainer.optimizer.lr, set trainer.grad_clip, or use "
                    f"trainer.precision=32"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip)
            self.optimizer.step()
            self.state.step += 1
            size = len(batch["target"])
            loss_sum, samples = loss_sum + loss.item() * size, samples + size
            bar.update()
            rate = samples / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss.item():.4g}", samples_per_s=f"{rate:.0f}", refresh=False)
            if self.state.step % settings.log_every_n_steps == 0:
                record = {
                    "step": self.state.step,
                    "epoch": epoch + 1,
                    "train/loss": loss.item(),
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                self._log(record)
        return loss_sum / max(samples, 1)

    def what_is_kept(self) -> str:
        """What the checkpoints hold now, stated only as far as it is true."""
        metric, last = self.objective.metric, self.checkpoints / "last.pt"
        if self.saved_epoch is None or not last.exists():
            return "No checkpoint was written (it diverged before the end of its first epoch)"
        kept = f"{last} holds epoch {self.saved_epoch}"
        if self.saved_value is not None and not math.isfinite(self.saved_value):
            kept += f", whose validation {metric} was already {self.saved_value}"
        if self.state.best_epoch is not None:
            kept += f"; best.pt holds epoch {self.state.best_epoch} (val {metric} {self.state.best_value:.6g})"
        else:
            kept += "; no epoch had a finite validation metric, so there is no best.pt"
        return kept

    def _progress_bar(self) -> tqdm:
        """One bar over the rest of the run (its ETA is the run's). Not a terminal: a line every 30 s, not 10 a s."""
        settings = self.settings
        per_epoch = self.data.train.num_batches(settings.batch_size, settings.limit_train_batches)
        interactive = sys.stderr.isatty()
        return tqdm(
            total=per_epoch * max(settings.max_epochs - self.state.epoch, 0),
            unit="batch",
            disable=not settings.progress,
            dynamic_ncols=True,
            mininterval=0.1 if interactive else 30.0,
            leave=False,
        )

    def fit(self) -> float:
        """Train until ``max_epochs`` or early stopping; returns the best validation metric (NaN if none)."""
        settings, metric = self.settings, self.objective.metric
        # On a terminal, log lines are printed above the bar; elsewhere (a log file) the bar draws rarely anyway.
        redirect = logging_redirect_tqdm() if settings.progress and sys.stderr.isatty() else contextlib.nullcontext()
        first_epoch, fit_start = self.state.epoch, time.perf_counter()
        with redirect, self._progress_bar() as bar:
            for epoch in range(self.state.epoch, settings.max_epochs):
                if self.state.stopped_early:
                    break
                start = time.perf_counter()
                train_loss = self._train_epoch(epoch, bar)
                val_metrics = self.evaluate(self.data.val)
                value = val_metrics[metric]
                if self.scheduler:
                    self.scheduler.step()
                record = {
                    "step": self.state.step,
                    "epoch": epoch + 1,
                    "train/epoch_loss": train_loss,
                    **{f"val/{name}": number for name, number in val_metrics.items()},
                    "epoch_seconds": time.perf_counter() - start,
                }
                self._log(record)
                self.state.epoch = epoch + 1
                self.state.seconds += record["epoch_seconds"]
                improved = math.isfinite(value) and self.objective.better(value, self.state.best_value)
                if improved:
                    self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, epoch + 1, 0
                else:
                    self.state.bad_epochs += 1
                patience = settings.early_stopping_patience
                self.state.stopped_early = bool(patience) and self.state.bad_epochs >= patience
                if improved:
                    self._save("best.pt")
                self._save("last.pt")
                self.saved_epoch, self.saved_value = epoch + 1, value
                per_epoch = (time.perf_counter() - fit_start) / (epoch + 1 - first_epoch)
                log.info(
                    "epoch %d/%d: train loss %.4g, val %s %.4f%s, %.1f s, about %s left",
                    epoch + 1,
                    settings.max_epochs,
                    train_loss,
                    metric,
                    value,
                    " (best)" if improved else "",
                    record["epoch_seconds"],
                    _duration(per_epoch * (settings.max_epochs - epoch - 1)),
                )
                if self.state.stopped_early:
                    log.info(
                        "early stop: no better val %s for %d epochs; best epoch %s",
                        metric,
                        patience,
                        self.state.best_epoch,
                    )
        return float("nan") if self.state.best_value is None else self.state.best_value

    def test(self) -> dict[str, float]:
        """The test metrics of the best checkpoint (the current weights if there is none)."""
        best = self.checkpoints / "best.pt"
        if best.exists():
            checkpoint.load_model_state(self.model, checkpoint.load(best)["model"], best)
        return self.evaluate(self.data.test)
