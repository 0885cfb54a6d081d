"""A trained run, loaded: ``plmu.load_run(path)`` gives the model (eval mode, ready for ``forward`` and ``step``), its
config, the data it was trained on (data_info.json) and where the weights came from.

    run = plmu.load_run("outputs/psmnist/plmu/2026-...")       # checkpoints/best.pt
    logits = run.model(batch)                                    # as in training: a dict batch or a tensor
    state = run.model.initial_state(1); y, state = run.model.step(x_t, state)   # as an RNN
    run.config.model.order, run.data_info["splits"], run.epoch

The command-line tools (plmu-eval, plmu-generate, plmu-translate, plmu-export) rebuild a model the same way
(:func:`checkpoint_path`, :func:`saved_config`, :func:`saved_model`): the config saved in the checkpoint, the
builder arguments the data gave (vocabulary size, classes), then the weights. torch loads on first call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

# what rebuilding the model and the data reads from a checkpoint's config
REQUIRED = ("task.name", "task.objective", "task.input_size", "task.output_size", "task.per_step", "task.data._target_")


@dataclass
class TrainedRun:
    """What :func:`load_run` returns."""

    path: Path  # the run folder
    checkpoint: Path  # the weights' file
    model: torch.nn.Module  # in eval mode, on the device asked for
    config: DictConfig  # the run's config as trained (the checkpoint's copy)
    epoch: int | None  # the epochs finished when the checkpoint was written
    step: int | None  # the optimizer steps taken by then (None: a checkpoint older than the step count)
    data_info: dict[str, Any] = field(default_factory=dict)  # data_info.json (sizes, fingerprint, vocabulary...)
    model_args: dict[str, Any] = field(default_factory=dict)  # the shapes the data gave the builder (vocabulary...)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device


def load_run(path: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> TrainedRun:
    """Load a plmu-train run folder: ``checkpoint`` is ``best`` (default), ``last`` or a checkpoint file's path (of
    the same task: another task's is refused). Errors are :class:`plmu.errors.PlmuError` with one line naming the
    fix (not a run folder, no such checkpoint, a corrupt file)."""
    import torch

    from plmu.train import checkpoint as checkpoints

    if not isinstance(device, torch.device):  # a name: checked, so a missing GPU or a typo is one line
        from plmu.train.distributed import named_device

        device = named_device(str(device), "device=", "device='cpu'")
    run_dir = Path(path).expanduser()
    weights = checkpoint_path(run_dir, str(checkpoint))
    payload = checkpoints.load(weights)
    cfg = saved_config(payload, weights, run_dir)
    model = saved_model(payload, weights, cfg).to(device).eval()
    try:
        info = json.loads((run_dir / "data_info.json").read_text())
    except (OSError, ValueError):
        info = {}
    state = payload.get("train_state") or {}
    info = info if isinstance(info, dict) else {}
    model_args = dict(payload.get("model_args") or {})
    return TrainedRun(run_dir, weights, model, cfg, state.get("epoch"), state.get("step"), info, model_args)


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """best / last of the run, or a path; checked here so that each mistake gets a message naming the flag."""
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise ConfigError(f"run directory {run_dir} {what}: give the folder plmu-train wrote")
    if which in ("best", "last"):
        if not (run_dir / "checkpoints").is_dir():
            raise CheckpointError(
                f"{run_dir} is not a plmu-train run (it has no checkpoints/ folder): give the folder a training run "
                f"wrote, or --checkpoint PATH"
            )
        path = run_dir / "checkpoints" / f"{which}.pt"
        if not path.is_file():
            other = "last" if which == "best" else "best"
            hint = f"use --checkpoint {other}" if (run_dir / "checkpoints" / f"{other}.pt").is_file() else "train it"
            raise CheckpointError(f"run {run_dir} has no checkpoints/{which}.pt (no epoch finished yet?): {hint}")
        return path
    path = Path(which).expanduser()
    if path.is_dir():
        raise CheckpointError(f"--checkpoint {which} is a folder: give a .pt file in it, or best or last")
    if not path.is_file():
        raise CheckpointError(f"--checkpoint {which}: no such file; give best, last, or the path of a .pt a run wrote")
    return path


def saved_config(payload: dict[str, Any], path: Path, run_dir: Path | None = None) -> DictConfig:
    """The checkpoint's config, with the keys evaluation needs checked (hand-made or old checkpoints may lack them);
    with ``run_dir``, a checkpoint from outside it must be of the same task as the run (its config.yaml)."""
    from omegaconf import OmegaConf

    config = payload.get("config")
    if not isinstance(config, dict) or "model" not in payload:
        raise CheckpointError(f"checkpoint {path} has no saved config or model weights: use one plmu-train wrote")
    cfg = OmegaConf.create(config)
    missing = [key for key in (*REQUIRED, "model._target_") if OmegaConf.select(cfg, key) is None]
    if missing:
        raise CheckpointError(f"checkpoint {path}: its config lacks {', '.join(missing)}; use one plmu-train wrote")
    if run_dir is not None:
        _check_same_task(cfg, path, run_dir)
    return cfg


def _check_same_task(cfg: DictConfig, path: Path, run_dir: Path) -> None:
    """A ``--checkpoint`` of another task's run is named as such (not blamed on the run folder, nor found out later
    as changed data or a shape error)."""
    from omegaconf import OmegaConf

    if path.resolve().parent == (run_dir / "checkpoints").resolve():
        return
    try:
        run_task = OmegaConf.select(OmegaConf.load(run_dir / "config.yaml"), "task.name")
    except Exception:  # no readable config.yaml: nothing to compare with (the checkpoint's config is used)
        return
    if run_task is not None and run_task != cfg.task.name:
        raise CheckpointError(
            f"--checkpoint {path} is from a {cfg.task.name} run, but run folder {run_dir} is a {run_task} run: give "
            f"the checkpoint's own run folder ({path.parent.parent}), or this run's best or last"
        )


def saved_model(payload: dict[str, Any], path: Path, cfg: DictConfig | None = None) -> torch.nn.Module:
    """The model a checkpoint describes (its config, ``cfg`` if already read), with its weights: plmu-eval's,
    plmu-generate's, plmu-translate's and plmu-export's one way to rebuild a trained model."""
    from plmu.models.build import build_model
    from plmu.train import checkpoint

    cfg = saved_config(payload, path) if cfg is None else cfg
    try:
        model = build_model(cfg, payload.get("model_args") or None)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: its saved config does not build a model: {error}") from None
    checkpoint.load_model_state(model, payload["model"], path)
    return model
