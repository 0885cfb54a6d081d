"""One training run from a composed config, in an order that keeps the run folder's record true.

1. Checks that need nothing but the config: the run's own keys (``schema.check_config``), the model (each
   constructor checks its own arguments; ``build_model`` names the key and a fix), the optimiser, the tracker's login.
   A bad config fails here, before any data is read or downloaded.
2. The run folder is locked (one process per folder); a checkpoint to resume is read and its config compared with
   this one (``run_folder.check_resume``); a folder holding another run is refused. The data is loaded and checked.
3. Only then is the folder written: stale temp files and metric lines are dropped, ``config.yaml``,
   ``data_info.json`` and ``.hydra/`` are written, ``train.log`` starts, training runs, ``results.json`` ends it.

Under torchrun (several processes, :mod:`plmu.train.distributed`) every process runs these steps on the same run
folder (rank 0's), but only rank 0 locks, reads and writes the folder and starts the tracker: what it reads (a
checkpoint to resume) and any error it meets reach every process, so that all of them go on or stop together.
Rank 0 loads the data first (a download, a cache), then the others.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from plmu.data.fingerprint import fingerprint
from plmu.data.folders import library_progress
from plmu.data.splits import DataSplits
from plmu.errors import ConfigError, OutOfMemoryError, PlmuError, one_line
from plmu.models.backbones import family_label, model_family
from plmu.models.build import build_model, model_args
from plmu.train import checkpoint, distributed, provenance, sizes
from plmu.train.init_from import check_same_vocabulary, init_from_checkpoint
from plmu.train.loggers import JsonlLog, NullLogger, write_json_atomic, write_text_atomic
from plmu.train.machine import keep_freed_memory
from plmu.train.objectives import Classification, build_objective
from plmu.train.peak_memory import check_memory
from plmu.train.resume import check_resumed_data, read_folder, warn_of_earlier_reports
from plmu.train.run_folder import RunFolder, RunInterrupted, held_warnings, killed_attempt, run_log, write_status
from plmu.train.schema import check_config
from plmu.train.settings import TrainerSettings, check_carry
from plmu.train.trainer import Trainer

log = logging.getLogger(__name__)


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


def build_logger(cfg: DictConfig) -> NullLogger:
    """The tracker of ``cfg.logger``, checked (e.g. a wandb login for online mode) before any data is read."""
    try:
        logger = instantiate(cfg.logger)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"logger ({cfg.logger._target_}): {cause}") from None
    logger.preflight()
    return logger


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    """``cfg.trainer`` as the trainer takes it (optimizer and scheduler stay configs: the trainer instantiates them)."""
    return TrainerSettings(**OmegaConf.to_container(cfg.trainer, resolve=True))


def _start_over(metrics: JsonlLog) -> None:
    """A fresh run: drop what an attempt killed before its first checkpoint left (its metric lines)."""
    if metrics.path.exists():
        log.warning("dropped the metric lines of an earlier attempt that stopped before its first checkpoint")
    metrics.clear()


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: list[str] | None = None,
    group: str | None = None,
    extra_records: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one experiment; returns (and writes to ``run_dir/results.json``) its results.

    ``overrides`` are the command line's (recorded in results.json); ``group`` names a sweep's wandb group;
    ``extra_records`` are more text files (relative path → content) to write once every check has passed.
    """
    started = time.time()
    overrides = list(overrides or [])
    cfg = sizes.settle(cfg)  # the family's sizes as values: the records hold what trained, not the table
    check_config(cfg)  # the run's keys; the model's are checked by its constructors, in build_model
    settings = trainer_settings(cfg)
    ctx = distributed.setup(settings.device)  # torchrun: join the processes; one: nothing
    folder = RunFolder(distributed.agree_run_dir(run_dir))  # rank 0's folder on every process
    config = OmegaConf.to_container(cfg, resolve=True)
    planned = _parameters_without_memory(cfg)
    # before the model is allocated (model.hidden_size=100000 must be refused, not fail in the allocator) and
    # before any data is read
    memory = check_memory(cfg, config, planned, ctx.world_size) if planned is not None else None
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    check_carry(settings.state, model)  # before any data is read
    if planned is None:  # a builder that cannot run on the meta device: checked once the model exists
        memory = check_memory(cfg, config, model.num_parameters, ctx.world_size)
    task_objective = build_objective(cfg.task.objective)
    if settings.keep_memory:
        keep_freed_memory()  # process-wide: every large tensor of every step reuses memory already mapped
    distributed.check_batch_sizes(settings.batch_size, settings.eval_batch_size, ctx.world_size)
    logger = build_logger(cfg) if ctx.is_main else NullLogger()  # one tracker run: rank 0's
    distributed.on_main(folder.lock)  # one process per run folder; released even on kill -9
    try:
        resume, payload, finished = distributed.on_main(lambda: read_folder(cfg, folder, config, settings))
        if finished is not None:
            return finished
        # A resumed run's weights are in its checkpoint: init_from only starts a run (it is not read again).
        init = distributed.on_main(lambda: init_from_checkpoint(cfg)) if payload is None else None
        library_progress(settings.progress and sys.stderr.isatty())  # the data libraries' bars follow the run's
        with held_warnings() as data_warnings:  # said on the console now, and in train.log once it opens
            data = distributed.main_first(lambda: load_data(cfg))
        check_carry(settings.state, data=data, task=cfg.task.name)  # the batches must continue each other
        data.info["fingerprint"] = fingerprint(data)  # the data is part of the run's identity (data_info.json)
        if payload is not None:
            distributed.on_main(lambda: check_resumed_data(folder, data.info["fingerprint"], resume))
        shapes = model_args(cfg, data.info)
        if shapes != model_args(cfg):  # the data decides a shape (a vocabulary): build it for the data
            torch.manual_seed(cfg.seed)
            model = build_model(cfg, shapes)
        warmstart = None
        if init is not None:
            check_same_vocabulary(init[0], data.info)
            warmstart = checkpoint.load_matching(model, init[1], init[0])
            del init  # the source's optimizer state and the rest of its payload are not kept through the run
        if isinstance(task_objective, Classification):
            data.check_labels(cfg.task.output_size, key="task.output_size")
        distributed.seed_rank(cfg.seed)  # ranks > 0: their own dropout streams (rank 0 keeps a single process's)
        trainer = Trainer(
            model,
            data,
            task_objective,
            settings,
            folder.path,
            cfg.seed,
            logger,
            config,
            shapes,
            init_from=None if warmstart is None else str(warmstart.path),
        )
        if payload is not None:
            trainer.restore(payload, resume)

        # Every check has passed: from here on the run folder is written (by rank 0).
        killed = killed_attempt(folder.path) if ctx.is_main else None  # before status.json is written anew
        distributed.on_main(lambda: _write_records(cfg, folder, trainer, data.info, payload is None, extra_records))
        if ctx.is_main:
            write_status(folder.path, "running")
        with run_log(folder.path / "train.log", data_warnings) if ctx.is_main else contextlib.nullcontext():
            environment = provenance.environment(trainer.device)
            if environment.get("git_dirty"):  # the code that ran is the commit plus this difference (issue 27)
                environment["git_patch"] = distributed.on_main(lambda: provenance.save_git_patch(folder.path))
                log.info("uncommitted changes: %s holds their difference from %s", environment["git_patch"],
                         environment["git_commit"][:12])  # fmt: skip
            _banner(cfg, folder, model, data, environment, resume, trainer, memory)
            if killed:
                log.warning("the last attempt in this folder ended without a word (%s)", killed)
            if warmstart is not None:
                log.info("%s", warmstart.summary())
            elif payload is not None and cfg.get("init_from") is not None:
                log.info("init_from=%s is not read again: the resumed checkpoint holds the weights", cfg.init_from)
            logger.start(folder.path, config, run_name=_run_name(cfg, folder, overrides, group), group=group)
            try:
                logger.summary({"parameters": model.num_parameters})
                try:
                    best_val = trainer.fit()
                    # a selection run (trainer.test=false) never reads the test split: test is null
                    test_metrics = trainer.test() if settings.test else None
                except KeyboardInterrupt:
                    if ctx.is_main:
                        write_status(folder.path, "interrupted", trainer.what_is_kept("it was interrupted"))
                    raise RunInterrupted(trainer.what_is_kept("it was interrupted")) from None
                except Exception as error:
                    message = one_line(error)
                    if ctx.is_main:
                        write_status(folder.path, "failed", message)
                    if _out_of_memory(error):  # a traceback otherwise: say it in one line, with what is kept
                        raise OutOfMemoryError(
                            f"out of memory during training ({message[:200]}): lower trainer.batch_size or "
                            f"trainer.eval_batch_size (a new run), or use a machine with more memory. "
                            f"{trainer.what_is_kept('it ran out of memory')}"
                        ) from None
                    raise
                results = {
                    "task": cfg.task.name,
                    "dataset": data.info.get("dataset", cfg.task.name),  # its name; a local copy: data_path
                    **provenance.portable(
                        {"data_path": data.info["path"]} if data.info.get("path") else {}, folder.path
                    ),
                    "model": model_family(cfg.model),
                    "metric": trainer.objective.metric,
                    "test": None if test_metrics is None else test_metrics[trainer.objective.metric],
                    "test_metrics": test_metrics,  # null: not measured (trainer.test=false)
                    # what the test scored; limited (trainer.limit_eval_batches): part of the split, not a result
                    "test_scored": None if test_metrics is None else trainer.scored,
                    "test_limited": test_metrics is not None
                    and trainer.scored["batches"] < trainer.scored["of_batches"],
                    "best_val": best_val,
                    "best_epoch": trainer.state.best_epoch,
                    "best_step": trainer.state.best_step,
                    "parameters": model.num_parameters,
                    "epochs": trainer.state.epoch,  # finished epochs
                    "steps": trainer.state.step,  # optimizer steps
                    "stopped_early": trainer.state.stopped_early,
                    "seed": cfg.seed,
                    "overrides": overrides,
                    "command": provenance.command_line(overrides, folder.path),
                    # paths relative to the run folder: the record reads the same on any machine
                    "resumed_from": provenance.run_relative(resume, folder.path),
                    # the checkpoint the weights started from (first attempt's)
                    "init_from": provenance.run_relative(trainer.init_from, folder.path),
                    "precision": trainer.precision,  # as trained: trainer.precision=auto resolved on this device
                    "epoch_seconds_total": round(trainer.state.seconds, 2),  # all attempts, if resumed
                    "train_seconds_total": round(trainer.state.train_seconds, 2),  # the same, validation excluded
                    "out_of_time": trainer.out_of_time(),  # trainer.max_seconds ended it (or would have)
                    "wall_seconds": round(time.time() - started, 2),  # this attempt, data loading and test included
                    **environment,
                    **({"world_size": ctx.world_size} if ctx.enabled else {}),  # torchrun's processes
                }
                if ctx.is_main:
                    write_json_atomic(folder.results, results)
                    write_status(folder.path, "finished")
                metric = trainer.objective.metric
                logger.summary({f"test/{metric}": results["test"], f"best_val/{metric}": best_val, **results})
                log.info(
                    "done: test %s %s, best val %.6g (epoch %s), %d parameters, %.0f s -> %s",
                    metric,
                    _test_text(results),
                    best_val,
                    trainer.state.best_epoch,
                    model.num_parameters,
                    results["wall_seconds"],
                    folder.path,
                )
            finally:
                logger.finish()
    finally:
        folder.unlock()
    return results


def _parameters_without_memory(cfg: DictConfig) -> int | None:
    """The model's parameter count from a build on the meta device (shapes only, no memory), or None when its
    builder cannot build there (a bad config then fails in the real build, with its own message)."""
    try:
        with torch.device("meta"):
            return build_model(cfg).num_parameters
    except Exception:
        return None


def _test_text(results: dict[str, Any]) -> str:
    """The test score for the closing line, saying what it is when it is not the split's."""
    if results["test"] is None:
        return "not measured (trainer.test=false)"
    scored = results["test_scored"]
    if not results["test_limited"]:
        return f"{results['test']:.6g}"
    return (
        f"{results['test']:.6g} on {scored['batches']} of {scored['of_batches']} test batches ({scored['examples']} "
        f"examples; trainer.limit_eval_batches={scored['limit_eval_batches']}): a limited test, not the test score"
    )


def _write_records(
    cfg: DictConfig,
    folder: RunFolder,
    trainer: Trainer,
    data_info: dict[str, Any],
    fresh: bool,
    extra_records: dict[str, str] | None,
) -> None:
    """The run folder once every check has passed: leftovers cleaned, metric lines of a fresh run dropped (a
    resumed one's cut to its checkpoint: the interrupted epoch is logged again as it re-runs), the records."""
    checkpoint.remove_orphans(trainer.checkpoints)
    checkpoint.remove_orphans(folder.path)
    if fresh:
        _start_over(trainer.metrics)
    else:
        trainer.metrics.truncate_after(trainer.state.step)
    write_text_atomic(folder.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # e.g. psMNIST's pixel order; paths (a local copy, a cached tokenizer) relative to the run folder
    write_json_atomic(folder.path / "data_info.json", provenance.portable(data_info, folder.path))
    for name, text in (extra_records or {}).items():
        write_text_atomic(folder.path / name, text)


def _out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory errors: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, MemoryError."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error))


def _run_name(cfg: DictConfig, folder: RunFolder, overrides: list[str], group: str | None) -> str:
    """A tracker run's name: a sweep's job is named by its overrides, a single run by task and folder."""
    if group is not None and overrides:
        return ",".join(overrides)
    return f"{cfg.task.name}-{folder.path.name}"


def _banner(cfg, folder, model, data, environment, resume, trainer, memory) -> None:
    family = model_family(cfg.model)
    label = family_label(family)
    log.info(
        "plmu-train %s: task %s, model %s, %d parameters, run folder %s",
        environment["plmu_version"],
        cfg.task.name,
        family if label == family else f"{label} ({family})",  # the registry's label, results.json's name
        model.num_parameters,
        folder.path.resolve(),
    )
    log.info(
        "data %s: train %d, val %d, test %d; device %s (%s), seed %s",
        data.info.get("dataset", cfg.task.name),
        len(data.train),
        len(data.val),
        len(data.test),
        environment["device"],
        environment["device_name"],
        cfg.seed,
    )
    log.info("precision %s (%s); %s", trainer.precision, trainer.precision_reason, trainer.prefetch_reason)
    if memory is not None:
        log.info(memory)
    if resume is not None:
        state = trainer.state
        within = f", batch {state.batch_in_epoch} of epoch {state.epoch + 1}" if state.batch_in_epoch else ""
        log.info("resumed from %s at epoch %d (step %d%s)", resume, state.epoch, state.step, within)
        warn_of_earlier_reports(folder.path)
