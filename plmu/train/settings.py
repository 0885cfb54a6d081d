"""The trainer's settings, declared once: :class:`TrainerSettings` (type, default, allowed values, help per field).

Read by everything that needs a trainer setting: the config check (:mod:`plmu.train.schema`: unknown keys, types,
ranges; one-line errors), Hydra (the defaults are registered with the ConfigStore as ``trainer/settings``, the base
of ``conf/trainer/default.yaml``, so ``--cfg`` shows them), ``plmu-train --help`` (:func:`settings_help`), and the
trainer itself (:class:`plmu.train.trainer.Trainer` takes a ``TrainerSettings``; :func:`check_settings`).

Hydra is given the defaults as a plain node, not the dataclass: a typed node would convert on composition
(``trainer.progress=off`` to false, ``trainer.resume=3`` to ``"3"``), and plmu refuses what it cannot read for
sure with a line that names the key, the value and a fix. Importing this module imports no torch.
"""

# ruff: noqa: RUF009  (setting() is dataclasses.field with a Rule in its metadata, not a shared default)
from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from plmu.errors import ConfigError

Check = Callable[[Any], bool]
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def isa(*types: type) -> Check:
    """An instance of ``types``; a bool counts as an int only if ``bool`` is listed (``True`` is no size)."""
    return lambda v: isinstance(v, types) and (bool in types or not isinstance(v, bool))


def is_positive_int(v: Any) -> bool:
    return isa(int)(v) and v > 0


def is_positive_number(v: Any) -> bool:
    return isa(int, float)(v) and math.isfinite(v) and v > 0


def or_none(ok: Check) -> Check:
    return lambda v: v is None or ok(v)


def one_of(choices: Any) -> Check:
    return lambda v: isinstance(v, str) and v in choices


def non_empty_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def dotted(v: Any) -> bool:
    return isinstance(v, str) and _DOTTED.fullmatch(v) is not None


@dataclass(frozen=True)
class Names:
    """The names in ``module.attribute``, read when first needed (so that importing this module imports no torch)."""

    module: str
    attribute: str
    show: Callable[[Any], Any] = list

    def __contains__(self, name: object) -> bool:
        return name in getattr(importlib.import_module(self.module), self.attribute)

    def __str__(self) -> str:
        return f"one of {self.show(getattr(importlib.import_module(self.module), self.attribute))}"


@dataclass(frozen=True)
class Rule:
    """What a field accepts: ``ok(value)``, said as ``allowed`` in errors, with an ``example`` override value."""

    ok: Check
    allowed: str | Names
    example: str


def rule(
    ok: Check,
    allowed: str | Names,
    example: str,
    default: Any = MISSING,
    factory: Any = None,
    help: str = "",
    resumable: str = "",
):
    """A config field carrying its :class:`Rule` and help; the default ``MISSING`` ("???") makes the key required.
    ``resumable``: why the setting may differ when a run is resumed (how the run is executed or shown, not what it
    trains); empty: a resume must keep it (:data:`RESUMABLE`)."""
    default_or_factory = {"default_factory": factory} if factory else {"default": default}
    metadata = {"rule": Rule(ok, allowed, example), "help": help, "resumable": resumable}
    return field(metadata=metadata, **default_or_factory)


def refusal(key: str, value: Any, rule: Rule, source: Any = None) -> str:
    """The one-line error for ``key=value`` that ``rule`` refuses (``source``: the value as written, if an
    interpolation)."""
    origin = f" from {source}" if isinstance(source, str) and "${" in source else ""
    return f"{key} must be {rule.allowed}, got {value!r}{origin} (override it, e.g. {key}={rule.example})"


POSITIVE_INT = "a positive integer"
BOOL = "true or false"
OPTIONAL_POSITIVE_INT = "null or a positive integer"
OPTIONAL_POSITIVE_NUMBER = "null or a positive number"
DEVICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("32", "bf16", "auto")
SCHEDULER_INTERVALS = ("epoch", "step")
STATE_MODES = ("reset", "carry")
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1.0e-3}


def _precision(v: Any) -> bool:
    return isa(str, int)(v) and str(v) in PRECISIONS


def _partial(v: Any) -> bool:
    """A ``{_target_: ..., _partial_: true}`` config, or (given to the trainer in Python) the callable itself."""
    return isa(Mapping)(v) or callable(v)


@dataclass
class TrainerSettings:
    """``trainer.*``: each setting once, with its rule and help. ``optimizer`` and ``scheduler`` are Hydra partials
    (configs, instantiated by the trainer) or callables: the optimizer is called with the model's parameters, the
    scheduler with the optimizer (and ``total_steps`` when it takes that and the config leaves it unset: see
    :meth:`plmu.train.trainer.Trainer.scheduler_steps`). ``test`` and ``resume`` are read by the runner
    (:mod:`plmu.train.run`), not the loop."""

    max_epochs: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "10",
        help="epochs; the run ends at max_epochs or max_steps, whichever comes first (either may be null, not both)",
    )  # fmt: skip
    max_steps: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "1000", None,
        help="optimizer steps (e.g. trainer.max_epochs=null trainer.max_steps=10000)",
    )  # fmt: skip
    max_seconds: float | None = rule(
        or_none(is_positive_number), OPTIONAL_POSITIVE_NUMBER, "3600", None,
        help="a training-time budget in seconds (validation excluded, all attempts): the run ends at the first "
        "validation past it (set val_every_n_steps to check more often than once an epoch)",
        resumable="a time budget: the schedule never depends on it",
    )  # fmt: skip
    val_every_n_steps: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "500", None,
        help="validate (and write last.pt) every N optimizer steps too; null: once per epoch",
    )  # fmt: skip
    batch_size: int = rule(
        is_positive_int, POSITIVE_INT, "32",
        help="the global batch: under torchrun each of N processes runs batch_size / N rows",
    )  # fmt: skip
    accumulate_grad_batches: int = rule(
        is_positive_int, POSITIVE_INT, "4", 1,
        help="micro-batches per optimizer step (losses scaled: the step of one N-times batch)",
    )  # fmt: skip
    eval_batch_size: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "null", None,
        help="validation and test batch; null: batch_size",
        resumable="how validation is batched, not what is trained",
    )  # fmt: skip
    optimizer: Any = rule(
        _partial, "an optimizer config with a _target_", "{_target_:torch.optim.Adam,lr:1e-3}", factory=ADAM.copy,
        help="called with the model's parameters, e.g. trainer.optimizer._target_=torch.optim.AdamW",
    )  # fmt: skip
    scheduler: Any = rule(
        or_none(_partial), "null or a scheduler config with a _target_", "null", None,
        help="called with the optimizer, e.g. {_target_:plmu.train.schedules.warmup_cosine,_partial_:true,"
        "warmup_steps:500} (total_steps, if it takes it and it is unset, comes from the trainer)",
    )  # fmt: skip
    scheduler_interval: str = rule(
        one_of(SCHEDULER_INTERVALS), f"one of {SCHEDULER_INTERVALS}", "step", "epoch",
        help="step the scheduler once per epoch, or after every optimizer step (step)",
    )  # fmt: skip
    state: str = rule(
        one_of(STATE_MODES), f"one of {STATE_MODES}", "reset", "reset",
        help="carry: the model's state runs on from batch to batch (a language model's streams); reset: each "
        "batch starts from zero",
    )  # fmt: skip
    grad_clip: float | None = rule(
        or_none(is_positive_number), "null or a positive norm", "1.0", None, help="max gradient norm; null: no clipping"
    )
    early_stopping_patience: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "10", None,
        help="stop after this many validations without a better validation metric",
    )  # fmt: skip
    device: str = rule(
        non_empty_str, DEVICES, "auto", "auto",
        help="auto: cuda when available, else cpu (under torchrun: cuda:LOCAL_RANK, else cpu)",
        resumable="where the run executes",
    )  # fmt: skip
    precision: str = rule(
        _precision, f"one of {PRECISIONS}", "auto", "32",
        help="32, bf16 (autocast; the LMU memory itself stays float32) or auto: bf16 where the device runs it "
        "natively, else 32 (the log says which and why)",
    )  # fmt: skip
    keep_memory: bool = rule(
        isa(bool), BOOL, "false", True,
        help="(Linux) keep freed memory in the process: no page faults on every step's large tensors (CPU steps "
        "up to 1.5x faster), at up to ~25% more resident memory (plmu.train.machine)",
        resumable="how the allocator behaves",
    )  # fmt: skip
    compile: bool = rule(
        isa(bool), BOOL, "true", False, help="torch.compile the model", resumable="how the model executes"
    )  # fmt: skip
    prefetch: int = rule(
        lambda v: isa(int)(v) and v >= 0, "an integer >= 0", "0", 2,
        help="batches made ahead on a background thread (augmentation, collation) while the model trains, when "
        "torch leaves a core free for it (OMP_NUM_THREADS below the cores); 0: always on the training thread",
        resumable="where batches are made, not which",
    )  # fmt: skip
    limit_train_batches: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "null", None, help="train on the first N batches of each epoch"
    )
    limit_eval_batches: int | None = rule(
        or_none(is_positive_int), OPTIONAL_POSITIVE_INT, "null", None, help="evaluate on the first N batches"
    )
    log_every_n_steps: int = rule(
        is_positive_int,
        POSITIVE_INT,
        "50",
        50,
        help="log the training loss every N optimizer steps",
        resumable="how the run is shown",
    )
    progress: bool = rule(
        isa(bool), BOOL, "false", True,
        help="tqdm bars on a terminal, a progress log line every 30 s elsewhere (log files, Slurm); false: neither",
        resumable="how the run is shown",
    )  # fmt: skip
    memory_check: bool = rule(
        isa(bool), BOOL, "false", True,
        help="refuse a run whose estimated peak memory exceeds what its device has (plmu.train.peak_memory), before "
        "any data is read",
        resumable="a guard before the run: runs before it had none",
    )  # fmt: skip
    test: bool = rule(
        isa(bool), BOOL, "false", True,
        help="evaluate the best checkpoint on the test split at the end; false: a selection run (sweeps choose on "
        "validation only; results.json's test is then null)",
        resumable="whether the end reads the test split (a selection sweep does not)",
    )  # fmt: skip
    resume: str | None = rule(
        or_none(non_empty_str), "null, auto or a checkpoint path", "auto", "auto",
        help="auto: continue from this run folder's last.pt if there is one; null: start afresh; or a last.pt path",
        resumable="how the run is continued",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):
            self.precision = str(self.precision)  # trainer.precision=32 on the command line is an int

    @classmethod
    def recorded(cls, trainer: Mapping[str, Any]) -> TrainerSettings:
        """A run's ``trainer`` config (a mapping, e.g. a recorded or composed ``cfg.trainer``) as settings, without
        the checks: keys an older plmu wrote and this one dropped are ignored, keys added since take their
        defaults. For reading a setting of a run; a run to train is built strictly (:func:`check_settings`)."""
        from omegaconf import DictConfig, OmegaConf

        values = OmegaConf.to_container(trainer, resolve=True) if isinstance(trainer, DictConfig) else dict(trainer)
        known = {setting.name for setting in fields(cls)}
        return cls(**{**defaults(), **{key: value for key, value in values.items() if key in known}})

    @property
    def evaluation_batch(self) -> int:
        """The validation and test batch (:func:`evaluation_batch_size`)."""
        return evaluation_batch_size({"eval_batch_size": self.eval_batch_size, "batch_size": self.batch_size})


def evaluation_batch_size(trainer: Mapping[str, Any]) -> int:
    """The batch that validation, test and the evaluation tools use: ``trainer.eval_batch_size``, else
    ``trainer.batch_size`` (``trainer`` is a run's trainer config, or a mapping with those keys); a ConfigError if
    neither is a positive integer."""
    size = trainer.get("eval_batch_size") or trainer.get("batch_size")
    if not is_positive_int(size):
        raise ConfigError(f"trainer.eval_batch_size and trainer.batch_size give no usable batch size ({size!r})")
    return size


def check_settings(settings: TrainerSettings) -> None:
    """Each setting against its rule, and a run that ends (max_epochs or max_steps); one-line ConfigErrors."""
    checked(settings, "trainer.")
    check_length(settings.max_epochs, settings.max_steps)


def check_length(max_epochs: Any, max_steps: Any) -> None:
    """The run must end: ``trainer.max_epochs`` or ``trainer.max_steps`` (or both; the first reached ends it)."""
    if max_epochs is None and max_steps is None:
        raise ConfigError(
            "trainer.max_epochs and trainer.max_steps are both null: set at least one (override it, e.g. "
            "trainer.max_steps=1000 or trainer.max_epochs=10)"
        )


def check_carry(state: str, model: Any = None, data: Any = None, task: str | None = None) -> None:
    """What ``trainer.state=carry`` needs, checked in one place (the runner asks before any data is read, then of the
    data; the trainer asks again of the model it is given): a model with ``forward_with_state(batch, state)`` that
    can carry its state (its ``carry_error()`` says why not), and batches that continue each other (a stream cut
    into chunks: with independent sequences the state would flow from one example into an unrelated one)."""
    if state != "carry":
        return
    if model is not None and not callable(getattr(model, "forward_with_state", None)):
        raise ConfigError(
            f"trainer.state=carry needs a model with forward_with_state(batch, state); {type(model).__name__} "
            f"has none: use trainer.state=reset"
        )
    carry_error = getattr(model, "carry_error", None)
    if callable(carry_error) and (why := carry_error()) is not None:
        raise ConfigError(f"trainer.state=carry: {why}")
    if data is not None:
        from plmu.data.stream import StreamSplits

        if not isinstance(data, StreamSplits):
            whose = f"task {task}" if task else "this task"
            raise ConfigError(
                f"trainer.state=carry continues each stream's state into its next chunk, but {whose}'s batches "
                f"are independent sequences ({type(data).__name__}): the state would carry from one example into "
                f"an unrelated one; use trainer.state=reset"
            )


def defaults(settings: type = TrainerSettings) -> dict[str, Any]:
    """The defaults of ``settings`` (the trainer's unless named) as a config (``???`` where a task must set one)."""
    return {
        setting.name: setting.default_factory() if callable(setting.default_factory) else setting.default
        for setting in fields(settings)
    }


def register() -> None:
    """Store the defaults with Hydra's ConfigStore as ``trainer/settings`` and ``logger/wandb_settings`` (the bases
    of ``conf/trainer/default.yaml`` and ``conf/logger/wandb.yaml``), and the configs' resolvers: the help's, a
    family's ``size`` per task, a text task's declared facts. Idempotent."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(group="trainer", name="settings", node=OmegaConf.create(defaults()))
    ConfigStore.instance().store(group="logger", name="wandb_settings", node=OmegaConf.create(defaults(WandbSettings)))
    if not OmegaConf.has_resolver("plmu.trainer_settings"):  # in conf/config.yaml's help template
        OmegaConf.register_new_resolver("plmu.trainer_settings", settings_help)
    if not OmegaConf.has_resolver("size"):  # a family's size for the task (plmu.train.sizes)
        from plmu.train.sizes import size

        OmegaConf.register_new_resolver("size", size)
    if not OmegaConf.has_resolver("plmu.text_task"):  # a text task's declared fact (plmu.data.text_tasks)
        OmegaConf.register_new_resolver("plmu.text_task", _text_task_fact)


def _text_task_fact(name: str, fact: str) -> object:
    """``${plmu.text_task:<task>,<fact>}``; imported on use: ``plmu-train --help`` loads no data package (torch)."""
    from plmu.data.text_tasks import text_task_fact

    return text_task_fact(name, fact)


def settings_help() -> str:
    """``trainer.*``, one line each (name, default, help): ``plmu-train --help``'s trainer section."""

    def shown(value: Any) -> str:
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    lines, values = [], defaults()
    for setting in fields(TrainerSettings):
        default = "{...}" if setting.name == "optimizer" else shown(values[setting.name])
        lines.append(f"  {f'trainer.{setting.name}={default}':<38} {setting.metadata['help']}")
    return "\n".join(lines)


WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class NullLoggerSettings:
    """``logger=none`` (metrics.jsonl and the records only); also how a logger plmu does not know is checked
    (open: only its ``_target_``)."""

    _target_: str = rule(dotted, "a dotted import path", "plmu.train.loggers.NullLogger")


@dataclass
class WandbSettings(NullLoggerSettings):
    """``logger=wandb``, each key declared once: the base of ``conf/logger/wandb.yaml`` (registered with Hydra's
    ConfigStore as ``logger/wandb_settings``), the config check, and :class:`plmu.train.loggers.WandbLogger`'s
    arguments."""

    _target_: str = rule(
        dotted, "a dotted import path", "plmu.train.loggers.WandbLogger", "plmu.train.loggers.WandbLogger"
    )
    project: str = rule(non_empty_str, "a non-empty project name", "plmu", "plmu")
    mode: str = rule(
        one_of(WANDB_MODES), f"one of {', '.join(WANDB_MODES)}", "offline", "offline",
        help="offline: no account needed (`wandb sync <run>/wandb/...` uploads later); online streams; "
        "WANDB_MODE in the environment overrides it",
    )  # fmt: skip
    entity: str | None = rule(or_none(non_empty_str), "null or a wandb entity name", "null", None)
    group: str | None = rule(or_none(non_empty_str), "null or a group name", "null", None)
    tags: list[str] = rule(
        lambda v: isa(list)(v) and all(map(non_empty_str, v)), "a list of strings", "[a,b]", factory=list
    )
    quiet: bool = rule(isa(bool), BOOL, "false", True, help="wandb's own console lines (about 30 a run) off")


# The logger settings by _target_ (the config check's schema for logger.*).
LOGGER_SCHEMAS = {
    "plmu.train.loggers.NullLogger": NullLoggerSettings,
    "plmu.train.loggers.WandbLogger": WandbSettings,
}


def checked(settings: Any, prefix: str) -> Any:
    """``settings`` (a dataclass of :func:`rule` fields), each field set and checked against its rule: a ConfigError
    names the first unset or refused one as ``<prefix><name>``."""
    for setting in fields(settings):
        value, setting_rule = getattr(settings, setting.name), setting.metadata["rule"]
        if isinstance(value, str) and value == MISSING:
            raise ConfigError(f"{prefix}{setting.name} is required but not set (e.g. +{prefix}{setting.name}="
                              f"{setting_rule.example})")  # fmt: skip
        if not setting_rule.ok(value):
            raise ConfigError(refusal(f"{prefix}{setting.name}", value, setting_rule))
    return settings


# The trainer keys a resumed run may change (each setting says why: its ``resumable``); the rest are fixed by the
# checkpoint. plmu.train.run_folder adds the keys outside the trainer.
RESUMABLE = tuple(f"trainer.{setting.name}" for setting in fields(TrainerSettings) if setting.metadata["resumable"])
