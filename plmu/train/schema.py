"""The typed schema of plmu-train's config, checked in full before any data is read: :func:`check_config`.

Fixed-shape groups are OmegaConf structured configs (dataclasses): the top level, ``trainer`` (its one
declaration, :class:`plmu.train.settings.TrainerSettings`), and ``logger`` picked by ``_target_``; ``task`` is
open. Merging a group into its schema finds unknown keys and values OmegaConf cannot convert; each field's
:class:`Rule` then checks the exact type and range of the value the run will receive (``off`` is a bool to
OmegaConf but a truthy string to the run, so booleans must be ``true``/``false``).
Of ``model`` only ``_target_`` is checked here: the model's constructors check their own arguments
(:mod:`plmu.checks`) when ``plmu.models.build.build_model`` builds it, also before any data is read, and that turns
their errors into the same one-line ``model.<key> must be ...``.
Then the device is parsed, the optimiser and scheduler are built on a dummy parameter and stepped once, the
loader's arguments are bound to its signature, and the logger's class is imported. Every problem is one
:class:`~plmu.errors.ConfigError` line: the key as the user types it, the bad value, what is allowed, and a fix.
"""

# ruff: noqa: RUF009  (rule() is dataclasses.field with a Rule in its metadata, not a shared default)
from __future__ import annotations

import difflib
import importlib
import inspect
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from plmu.errors import ConfigError, one_line, plmu_cause
from plmu.train import sizes
from plmu.train.settings import (
    BOOL,
    DEVICES,
    LOGGER_SCHEMAS,
    OPTIONAL_POSITIVE_INT,
    POSITIVE_INT,
    Names,
    NullLoggerSettings,
    Rule,
    TrainerSettings,
    check_length,
    dotted,
    is_positive_int,
    is_positive_number,
    isa,
    non_empty_str,
    one_of,
    or_none,
    refusal,
    rule,
)

OBJECTIVES = Names("plmu.train.objectives", "OBJECTIVES", sorted)


@dataclass
class TopSchema:
    """``conf/config.yaml``: the groups, the seed and the data folder."""

    task: Any = rule(isa(Mapping), "a task config", "psmnist")
    model: Any = rule(isa(Mapping), "a model config", "plmu")
    trainer: Any = rule(isa(Mapping), "a trainer config", "default")
    logger: Any = rule(isa(Mapping), "a logger config", "none")
    seed: int = rule(lambda v: isa(int)(v) and 0 <= v < 2**32, "an integer in [0, 2**32)", "0")
    data_dir: str = rule(non_empty_str, "a folder path", "~/.cache/plmu")
    init_from: str | None = rule(or_none(non_empty_str), "null, a run folder or a checkpoint path", "null", None)


@dataclass
class TaskSchema:
    """``conf/task/*.yaml``: the keys the run reads; open, so a task may add its own (``models``, ``lr``, ...)."""

    name: str = rule(non_empty_str, "a non-empty name", "psmnist")
    objective: Any = rule(
        lambda v: one_of(OBJECTIVES)(v) or (isinstance(v, Mapping) and dotted(v.get("_target_"))),
        "a {_target_: ...} objective (plmu.train.objectives) or one of its short names",
        "{_target_:plmu.train.objectives.Classification}",
    )
    input_size: int = rule(is_positive_int, POSITIVE_INT, "1")
    output_size: int = rule(is_positive_int, POSITIVE_INT, "10")
    per_step: bool = rule(isa(bool), BOOL, "false")
    data: Any = rule(isa(Mapping), "a data loader config with a _target_", "{_target_:plmu.data.psmnist.psmnist}")
    # the peak memory estimate's input (plmu.train.peak_memory)
    sequence_length: int | None = rule(or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "784", None)


@dataclass
class ModelSchema:
    """``model.*`` (the task's builder and the family's backbone): only ``_target_`` is checked here (open). The
    builder and the constructors it calls check their own arguments when ``plmu.models.build.build_model`` builds
    the model, still before any data is read."""

    _target_: str = rule(dotted, "a dotted import path", "plmu.models.sequence_model")


def _check_group(prefix: str, schema: type, values: dict, sources: dict, *, closed: bool = True) -> None:
    """``values`` (one group, resolved) against ``schema``: unknown keys, conversions, then each field's rule."""
    rules = {f.name: f.metadata["rule"] for f in fields(schema)}
    structured = OmegaConf.structured(schema)
    OmegaConf.set_struct(structured, closed)
    for name in structured:  # a default that is a config (the trainer's Adam) is open: its own keys are its class's
        if isinstance(structured._get_node(name), DictConfig):
            OmegaConf.set_struct(structured._get_node(name), False)
    try:
        OmegaConf.merge(structured, values)
    except ConfigKeyError as error:  # a key the schema does not have, e.g. +trainer.max_epoch=2
        key = str(error.key)
        close = difflib.get_close_matches(key, rules, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"valid keys: {', '.join(rules)}"
        raise ConfigError(f"unknown key {prefix}{key} ({hint})") from None
    except OmegaConfBaseException as error:  # a value OmegaConf cannot convert, e.g. trainer.optimizer.lr=abc
        name = re.split(r"[.\[]", str(error.full_key or error.key))[0]
        field_rule = rules.get(name) or Rule(bool, f"valid ({one_line(error).split(' full_key:')[0]})", "...")
        raise ConfigError(refusal(prefix + name, values.get(name), field_rule, sources.get(name))) from None
    for schema_field in fields(schema):
        name, field_rule = schema_field.name, rules[schema_field.name]
        value = values.get(name, schema_field.default)
        if isinstance(value, str) and value == MISSING:  # "???" in the config, or absent without a default
            raise ConfigError(f"{prefix}{name} is required but not set (e.g. +{prefix}{name}={field_rule.example})")
        if name in values and not field_rule.ok(value):
            raise ConfigError(refusal(prefix + name, value, field_rule, sources.get(name)))


def _import(path: str) -> Any:
    """The object at the dotted ``path``, found as Hydra finds a ``_target_`` (a module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            found: Any = importlib.import_module(module)
        except ModuleNotFoundError as error:  # no such module: try a shorter prefix (not if a dependency is missing)
            if error.name is None or not f"{module}.".startswith(f"{error.name}."):
                raise
            continue
        for name in parts[i:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(f"No module named {parts[0]!r}")


def _check_target(key: str, spec: Mapping, example: str) -> Any:
    """The object ``spec._target_`` names, imported."""
    target = spec.get("_target_")
    if not dotted(target):
        raise ConfigError(
            f"{key}._target_ must be a dotted import path, got {target!r} (override it, e.g. {key}._target_={example})"
        )
    try:
        return _import(target)
    except Exception as error:
        raise ConfigError(f"{key}._target_={target} cannot be imported ({one_line(error)}); e.g. {example}") from None


def _check_device(device: str) -> str:
    """``trainer.device`` parsed, its kind available here; returns the device a dummy parameter can live on."""
    import torch

    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if device == "auto":
        return "cuda" if available["cuda"] else "cpu"
    try:
        parsed: Any = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if getattr(parsed, "type", None) not in available:
        raise ConfigError(refusal("trainer.device", device, Rule(non_empty_str, DEVICES, "auto")))
    if not available[parsed.type]:
        kind = parsed.type.upper()
        raise ConfigError(f"trainer.device={device!r} but {kind} is not available here; use trainer.device=auto or cpu")
    if parsed.type == "cuda" and (parsed.index or 0) >= (count := torch.cuda.device_count()):
        raise ConfigError(
            f"trainer.device={device!r} but only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1}); "
            "use trainer.device=cuda or auto"
        )
    return device


STEP_LR_EXAMPLE = "torch.optim.lr_scheduler.StepLR"


def _check_partial(key: str, spec: Mapping, example: str, called_with: str, *args: Any, **kwargs: Any) -> Any:
    """Build the partial ``spec`` on ``args`` and step it once, as the trainer will; errors become ConfigErrors."""
    _check_target(key, spec, example)
    target = spec["_target_"]
    if spec.get("_partial_") is not True:
        raise ConfigError(
            f"{key} ({target}) must have _partial_: true (it is called with {called_with}), got "
            f"{spec.get('_partial_')!r} (override it, e.g. ++{key}._partial_=true)"
        )
    with warnings.catch_warnings():  # e.g. "lr_scheduler.step() before optimizer.step()"
        warnings.simplefilter("ignore")
        try:
            built = instantiate(spec)(*args, **kwargs)
        except Exception as error:
            cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
            raise ConfigError(f"{key} ({target}) rejected its arguments: {one_line(cause)}") from None
        try:
            built.step()
        except Exception as error:
            raise ConfigError(f"{key} ({target}) cannot be stepped as the trainer does: {one_line(error)}") from None
    return built


def _check_optimizers(trainer: dict, sources: dict, device: str) -> None:
    """``trainer.optimizer`` (its lr, then built and stepped on a dummy parameter), then ``trainer.scheduler``."""
    import torch

    optimizer = trainer["optimizer"]
    if "lr" in optimizer:
        lr_rule, written = Rule(is_positive_number, "a positive learning rate", "1e-3"), sources.get("optimizer")
        if not lr_rule.ok(optimizer["lr"]):
            source = written.get("lr") if isa(Mapping)(written) else None
            raise ConfigError(refusal("trainer.optimizer.lr", optimizer["lr"], lr_rule, source))
    parameter = torch.nn.Parameter(torch.zeros(1, device=device))
    parameter.grad = torch.zeros_like(parameter)
    built = _check_partial("trainer.optimizer", optimizer, "torch.optim.Adam", "the model parameters", [parameter])
    if trainer.get("scheduler") is not None:
        from plmu.train.schedules import takes_total_steps

        scheduler = trainer["scheduler"]
        # The trainer passes total_steps (the run's length) to a schedule that takes it and leaves it unset; the
        # run's length needs the data, so a stand-in is given here to build and step it once.
        target = _check_target("trainer.scheduler", scheduler, STEP_LR_EXAMPLE)
        total = {"total_steps": 10} if "total_steps" not in scheduler and takes_total_steps(target) else {}
        _check_partial("trainer.scheduler", scheduler, STEP_LR_EXAMPLE, "the optimizer", built, **total)


def _check_loader(data: Mapping) -> None:
    """``task.data``: its loader imported and its arguments bound to the loader's signature (nothing is read)."""
    loader = _check_target("task.data", data, "plmu.data.psmnist.psmnist")
    kwargs = {k: v for k, v in data.items() if not (k.startswith("_") and k.endswith("_"))}
    try:
        inspect.signature(loader).bind(*data.get("_args_", []), **kwargs)
    except TypeError as error:
        raise ConfigError(f"task.data ({data['_target_']}): {error}") from None
    except ValueError:  # no signature to check (a builtin)
        pass


def _resolved(cfg: DictConfig) -> tuple[dict, dict]:
    """The config as the run will read it (interpolations resolved), and as written (for "from ${...}" hints)."""
    if "hydra" in cfg:
        cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as error:
        if (cause := plmu_cause(error)) is not None:  # a resolver's own message (a family without a task's size)
            raise ConfigError(str(cause)) from None
        message = one_line(error).split(" full_key:")[0]
        raise ConfigError(f"{error.full_key} cannot be resolved: {message}") from None
    return values, OmegaConf.to_container(cfg, resolve=False)


def check_config(cfg: DictConfig) -> None:
    """Check the composed ``cfg`` (types, ranges, unknown keys, devices, optimiser) before anything is loaded; the
    model's keys are left to its constructors (``plmu.models.build.build_model``).

    Raises:
        ConfigError: one line naming the key, the bad value, what is allowed, and a fix.
    """
    values, sources = _resolved(sizes.settle(cfg))  # the family's sizes table: read into model.*, then gone
    _check_group("", TopSchema, values, sources)
    task, model, trainer, logger = (values[name] for name in ("task", "model", "trainer", "logger"))
    written = {name: sources[name] if isa(Mapping)(sources.get(name)) else {} for name in values}
    _check_group("task.", TaskSchema, task, written["task"], closed=False)
    _check_group("model.", ModelSchema, model, written["model"], closed=False)
    _check_group("trainer.", TrainerSettings, trainer, written["trainer"])
    check_length(trainer.get("max_epochs"), trainer.get("max_steps"))
    logger_schema = LOGGER_SCHEMAS.get(logger.get("_target_"))
    _check_group("logger.", logger_schema or NullLoggerSettings, logger, written["logger"], closed=bool(logger_schema))
    _check_target("logger", logger, "plmu.train.loggers.NullLogger")
    _check_loader(task["data"])
    _check_optimizers(trainer, written["trainer"], _check_device(trainer["device"]))
