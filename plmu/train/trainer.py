"""The training loop: epochs over in-memory splits, validation, checkpoints, resume, early stopping.

Everything a run writes goes to its run directory:
``checkpoints/last.pt`` (every epoch) and ``checkpoints/best.pt`` (best validation metric), written atomically,
and ``metrics.jsonl``. A run restarted in the same directory (or with ``resume`` pointing at a last.pt) continues
from the last finished epoch with the same model, optimiser, scheduler, RNG and early-stopping state, so it ends
with the same numbers as a run that was never interrupted (on CPU; CUDA kernels may be nondeterministic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from plmu.data.splits import DataSplits, TensorSplit
from plmu.errors import ConfigError, NonFiniteLossError
from plmu.train import checkpoint
from plmu.train.loggers import JsonlLog, NullLogger
from plmu.train.objectives import Objective

PRECISIONS = ("32", "bf16")


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    return torch.device(name)


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
        self.state = TrainState()

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
                "metric": self.objective.metric,
            },
            self.checkpoints / name,
        )

    def resume(self, path: str | Path) -> None:
        """Continue from a last.pt: model, optimiser, scheduler, RNG, epoch and early-stopping state."""
        payload = checkpoint.load(path)
        checkpoint.load_model_state(self.model, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload["scheduler"]:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["train_state"])
        checkpoint.set_rng_state(payload["rng"])
        self.metrics.truncate_after(self.state.step)  # the interrupted epoch is logged again as it re-runs

    def _log(self, record: dict[str, float]) -> None:
        """One record to metrics.jsonl and to the tracker."""
        self.metrics.write(record)
        self.logger.log(record, step=self.state.step)

    # ------------------------------------------------------------------------------------------- loops
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.precision == "bf16")

    def evaluate(self, split: TensorSplit) -> float:
        """The objective's metric over ``split`` (capped by ``limit_eval_batches``)."""
        self.model.eval()
        size = self.settings.eval_batch_size or self.settings.batch_size
        sums = torch.zeros(3)
        with torch.no_grad(), self._autocast():
            for x, y in split.batches(size, limit=self.settings.limit_eval_batches):
                sums += self.objective.sums(self.forward(x.to(self.device)), y.to(self.device)).cpu()
        return self.objective.reduce(sums)

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        settings, split = self.settings, self.data.train
        total = split.num_batches(settings.batch_size, settings.limit_train_batches)
        batches = split.batches(
            settings.batch_size, shuffle=True, seed=self.seed * 1_000_003 + epoch, limit=settings.limit_train_batches
        )
        bar = tqdm(
            batches,
            total=total,
            desc=f"epoch {epoch + 1}/{settings.max_epochs}",
            disable=not settings.progress,
            leave=False,
            dynamic_ncols=True,
        )
        loss_sum, samples, start = 0.0, 0, time.perf_counter()
        for x, y in bar:
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                loss = self.objective.loss(self.forward(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {self.state.step + 1}; the run "
                    f"stopped and {self.checkpoints / 'last.pt'} keeps the last good state (epoch {self.state.epoch}). "
                    f"Lower trainer.optimizer.lr, set trainer.grad_clip, or use trainer.precision=32"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip)
            self.optimizer.step()
            self.state.step += 1
            loss_sum, samples = loss_sum + loss.item() * len(x), samples + len(x)
            rate = samples / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss.item():.4g}", samples_per_s=f"{rate:.0f}")
            if self.state.step % settings.log_every_n_steps == 0:
                record = {
                    "step": self.state.step,
                    "epoch": epoch + 1,
                    "train/loss": loss.item(),
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                self._log(record)
        return loss_sum / max(samples, 1)

    def fit(self) -> float:
        """Train until ``max_epochs`` or early stopping; returns the best validation metric."""
        settings, metric = self.settings, self.objective.metric
        for epoch in range(self.state.epoch, settings.max_epochs):
            if self.state.stopped_early:
                break
            start = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            value = self.evaluate(self.data.val)
            if self.scheduler:
                self.scheduler.step()
            record = {
                "step": self.state.step,
                "epoch": epoch + 1,
                "train/epoch_loss": train_loss,
                f"val/{metric}": value,
                "epoch_seconds": time.perf_counter() - start,
            }
            self._log(record)
            self.state.epoch = epoch + 1
            if math.isfinite(value) and self.objective.better(value, self.state.best_value):
                self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, epoch + 1, 0
                improved = True
            else:
                self.state.bad_epochs += 1
                improved = False
            patience = settings.early_stopping_patience
            self.state.stopped_early = bool(patience) and self.state.bad_epochs >= patience
            if improved:
                self._save("best.pt")
            self._save("last.pt")
            if settings.progress:
                tqdm.write(
                    f"epoch {epoch + 1}: train loss {train_loss:.4g}, val {metric} {value:.4f}"
                    f"{' (best)' if improved else ''}, {record['epoch_seconds']:.1f} s"
                )
        return float("nan") if self.state.best_value is None else self.state.best_value

    def test(self) -> float:
        """The test metric of the best checkpoint (the current weights if there is none)."""
        best = self.checkpoints / "best.pt"
        if best.exists():
            checkpoint.load_model_state(self.model, checkpoint.load(best)["model"], best)
        return self.evaluate(self.data.test)
