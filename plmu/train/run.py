"""One training run from a composed config: validate → model → data → fit → test → results.json.

The order is deliberate: everything that can be checked from the config alone (ranges, unknown keys, the model
itself) fails before any data is loaded or downloaded.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import plmu
from plmu.data.splits import DataSplits
from plmu.errors import CheckpointError, ConfigError, PlmuError
from plmu.layers import ACTIVATIONS, LAYER_MODES
from plmu.models import SequenceModel
from plmu.train.objectives import objective
from plmu.train.trainer import PRECISIONS, Trainer, TrainerSettings


def _check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {allowed}, got {value!r} (override it, e.g. {key}=...)")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(cfg: DictConfig) -> None:
    """Range checks on the composed config; unknown keys are caught by Hydra's struct mode before this."""
    objective(cfg.task.objective)
    model, trainer = cfg.model, cfg.trainer
    for key in ("hidden_size", "num_layers", "order", "memory_d"):
        if key in model:
            _check(_positive_int(model[key]), f"model.{key}", model[key], "a positive integer")
    if "theta" in model:
        theta = model.theta
        _check(
            isinstance(theta, int | float) and not isinstance(theta, bool) and theta > 0,
            "model.theta",
            theta,
            "a positive number of time steps",
        )
    for key in ("f1", "f2"):
        if key in model:
            _check(model[key] in ACTIVATIONS, f"model.{key}", model[key], f"one of {sorted(ACTIVATIONS)}")
    if "mode" in model:
        _check(model.mode in LAYER_MODES, "model.mode", model.mode, f"one of {list(LAYER_MODES)}")
    if "dropout" in model:
        _check(0 <= model.dropout < 1, "model.dropout", model.dropout, "in [0, 1)")
    for key in ("max_epochs", "batch_size"):
        _check(_positive_int(trainer[key]), f"trainer.{key}", trainer[key], "a positive integer")
    for key in ("eval_batch_size", "limit_train_batches", "limit_eval_batches", "early_stopping_patience"):
        value = trainer.get(key)
        _check(value is None or _positive_int(value), f"trainer.{key}", value, "null or a positive integer")
    lr = trainer.optimizer.get("lr")
    _check(lr is None or lr > 0, "trainer.optimizer.lr", lr, "a positive learning rate")
    clip = trainer.get("grad_clip")
    _check(clip is None or clip > 0, "trainer.grad_clip", clip, "null or a positive norm")
    _check(str(trainer.precision) in PRECISIONS, "trainer.precision", trainer.precision, f"one of {PRECISIONS}")


def build_model(cfg: DictConfig) -> SequenceModel:
    """The model of ``cfg.model`` (a ``_target_`` builder) for the shapes of ``cfg.task``."""
    try:
        return instantiate(
            cfg.model, input_size=cfg.task.input_size, output_size=cfg.task.output_size, per_step=cfg.task.per_step
        )
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"model {cfg.model._target_} could not be built from model.*: {cause}") from None


def load_data(cfg: DictConfig) -> DataSplits:
    """The task's splits (``cfg.task.data``, a ``_target_`` loader); bad loader arguments become ConfigErrors."""
    try:
        return instantiate(cfg.task.data)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, PlmuError):
            raise cause from None
        if isinstance(cause, TypeError | ValueError):
            raise ConfigError(f"task.data ({cfg.task.data._target_}): {cause}") from None
        raise


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    values = OmegaConf.to_container(cfg.trainer, resolve=True)
    values.pop("resume", None)
    values["optimizer"] = instantiate(cfg.trainer.optimizer)
    values["scheduler"] = instantiate(cfg.trainer.scheduler) if cfg.trainer.get("scheduler") else None
    values["precision"] = str(values["precision"])
    return TrainerSettings(**values)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(plmu.__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resume_path(cfg: DictConfig, run_dir: Path) -> Path | None:
    """``trainer.resume``: null (never), auto (this run dir's last.pt if it exists), or a checkpoint path."""
    resume = cfg.trainer.get("resume")
    if resume in (None, "none", "null"):
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        return last if last.exists() else None
    path = Path(resume).expanduser()
    if not path.is_file():  # checked now, before any data is loaded
        raise CheckpointError(f"trainer.resume={resume!r}: no such checkpoint; give a last.pt a run wrote, or auto")
    return path


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run one experiment; returns (and writes to ``run_dir/results.json``) its results."""
    started = time.time()
    run_dir = Path(run_dir)
    validate(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    settings = trainer_settings(cfg)
    resume = resume_path(cfg, run_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    data = load_data(cfg)
    (run_dir / "data_info.json").write_text(json.dumps(data.info))  # e.g. psMNIST's pixel order

    logger = instantiate(cfg.logger)
    trainer = Trainer(model, data, objective(cfg.task.objective), settings, run_dir, cfg.seed, logger, config)
    if resume is not None:
        trainer.resume(resume)
    logger.start(run_dir, config, run_name=f"{cfg.task.name}-{run_dir.name}")
    logger.summary({"parameters": model.num_parameters})
    try:
        best_val = trainer.fit()
        test_value = trainer.test()
        results = {
            "task": cfg.task.name,
            "model": cfg.model._target_.rsplit(".", 1)[-1].removesuffix("_model"),
            "metric": trainer.objective.metric,
            "test": test_value,
            "best_val": best_val,
            "best_epoch": trainer.state.best_epoch,
            "parameters": model.num_parameters,
            "epochs": trainer.state.epoch,
            "stopped_early": trainer.state.stopped_early,
            "wall_seconds": round(time.time() - started, 2),
            "device": str(trainer.device),
            "torch_threads": torch.get_num_threads(),
            "git_commit": git_commit(),
            "run_dir": str(run_dir.resolve()),
        }
        tmp = run_dir / ".results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(run_dir / "results.json")
        metric = trainer.objective.metric
        logger.summary({f"test/{metric}": test_value, f"best_val/{metric}": best_val, **results})
    finally:
        logger.finish()
    return results
