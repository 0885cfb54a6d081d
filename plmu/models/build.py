"""Building a model from its config: ``build_model(cfg, model_args(cfg, data_info))``, the one way plmu-train,
the command-line tools and :func:`plmu.load_run` make a model.

``cfg.model`` names a builder (``_target_``: ``plmu.models.plmu_model``, ``text_classifier``, ...) and its options;
the task and the data give the rest (input and output sizes, a text task's vocabulary and classes: ``model_args``).
The keys a builder takes are declared, never guessed from an error's text: its parameters and those of the classes
its ``**options`` reach (:func:`plmu.models.backbones.forwards`). They are checked before the builder runs (an
unknown key gets "did you mean"); a constructor's :class:`~plmu.checks.ArgumentError` about a value becomes one
line that names the ``model.*`` key and an example fix.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plmu.checks import ArgumentError
from plmu.errors import ConfigError, one_line, plmu_cause


def model_args(cfg: DictConfig, data_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The shapes a model builder takes beside ``cfg.model``: the task's, and what the data tells (a text task's
    vocabulary size and number of classes). Before the data is loaded (to check the config early) a text model is
    built with a stand-in vocabulary of 2."""
    info = data_info or {}
    return {
        "input_size": cfg.task.input_size,
        "output_size": cfg.task.output_size,
        "per_step": cfg.task.per_step,
        "vocab_size": info.get("vocab_size", 2),
        "num_classes": info.get("num_classes", cfg.task.output_size),
    }


def build_model(cfg: DictConfig, args: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The model of ``cfg.model`` (a ``_target_`` builder), given those of ``args`` (see :func:`model_args`) that
    the builder takes.

    Before the builder runs, ``cfg.model``'s keys are checked against those it declares (its parameters and the
    options it forwards: :func:`plmu.models.backbones.forwards`): ``unknown key model.<name> (did you mean ...?)``,
    ``model.<name> is required but not set``. The constructors check the values (:mod:`plmu.checks`); their
    :class:`~plmu.checks.ArgumentError` becomes ``model.<name> must be ... (override it, e.g. ...)``.
    """
    try:  # a family's size the task lacks fails here, as one line
        resolved = OmegaConf.to_container(cfg.model, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as error:
        cause = plmu_cause(error)
        raise ConfigError(str(cause) if cause is not None else f"model.* does not resolve: {one_line(error)}") from None
    args = model_args(cfg) if args is None else args
    if upgraded_target(resolved.get("_target_")):  # a record of an earlier version: its model in today's terms
        cfg = cfg.copy()
        cfg.model = OmegaConf.create(upgrade_model_config(resolved))
    for key in cfg.model:
        if OmegaConf.is_missing(cfg.model, key):
            raise ConfigError(f"model.{key} is required but not set (set it: model.{key}=...)")
    try:
        builder = get_method(cfg.model._target_)
    except (ImportError, ValueError) as error:
        message = one_line(error.__cause__ or error)
        raise ConfigError(f"model {cfg.model._target_} could not be built from model.*: {message}") from None
    keys = model_keys(builder, cfg.model)
    _check_keys(cfg.model, builder, keys, args)
    try:
        accepted = inspect.signature(builder).parameters
        return instantiate(cfg.model, **{key: value for key, value in args.items() if key in accepted})
    except (InstantiationException, ValueError, TypeError) as error:
        cause = error.__cause__ or error
        if isinstance(cause, ArgumentError) and cause.argument in cfg.model:
            raise ConfigError(_bad_value(cause, keys)) from None
        message = f"model {cfg.model._target_} could not be built from model.*: {one_line(cause)}"
        raise ConfigError(message) from None


# The per-family builders of earlier versions, each now the generic sequence_model with its family as the backbone.
FAMILY_BUILDERS = {"plmu_model": "plmu", "original_lmu_model": "original_lmu", "lstm_model": "lstm",
                   "transformer_model": "transformer"}  # fmt: skip


def upgraded_target(target: Any) -> str | None:
    """The family whose earlier builder ``target`` names (``plmu.models.plmu_model`` → plmu), or None."""
    if not isinstance(target, str) or not target.startswith("plmu.models."):
        return None
    return FAMILY_BUILDERS.get(target.rsplit(".", 1)[-1])


def upgrade_model_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """A ``model`` config (a plain mapping) of an earlier version in today's terms, building the same model with
    the same tensors: the one place that knows (called as a checkpoint loads, :func:`plmu.train.checkpoint.upgrade`,
    and by :func:`build_model` for a ``config.yaml`` record). ``plmu_model``'s ``dropout`` acted on each LMU layer's
    output; ``sequence_model``'s acts on what the head reads: the same draw on the same tensor for the one-layer
    models the configs shipped (psMNIST). The transformer's ``dropout`` (inside its encoder) has no counterpart
    in ``sequence_model``: a config with one above 0 is refused rather than rebuilt as another model."""
    model = dict(model)
    family = upgraded_target(model.get("_target_"))
    if family is None:
        return model
    rest = {key: value for key, value in model.items() if key != "_target_"}
    if family == "transformer":
        if (rest.pop("dropout", 0.0) or 0.0) > 0:
            raise ConfigError(
                "model.dropout of an earlier transformer_model config (inside the encoder) has no counterpart in "
                "today's sequence_model (its dropout is the head's): retrain with model=transformer"
            )
    elif family == "plmu" and (rest.get("dropout") or 0.0) > 0 and rest.get("num_layers", 1) != 1:
        raise ConfigError(
            "model.dropout of an earlier plmu_model config with several layers acted between them; today's acts on "
            "what the head reads only: retrain with task's config, or build it with plmu.layers.ParallelLMUStack"
        )
    return {"_target_": "plmu.models.sequence_model", "backbone": family, **rest}


def model_with_defaults(model: Mapping[str, Any]) -> dict[str, Any]:
    """A ``model`` config (a plain mapping) in today's terms (:func:`upgrade_model_config`) with each key its builder
    declares filled in at its default where absent: what the builder is called with, whichever keys a config
    happened to spell out. Resume compares these, so a key that a config now states at the value it always had is
    no difference. A builder that cannot be imported: the mapping as it is."""
    model = upgrade_model_config(model)
    try:
        builder = get_method(str(model.get("_target_")))
    except Exception:  # the build reports it, with its own error
        return model
    defaults = {
        key: default for key, default in model_keys(builder, model).items() if default is not inspect.Parameter.empty
    }
    return {**defaults, **model}


def model_keys(builder: Any, model: Mapping[str, Any]) -> dict[str, Any]:
    """The model.* keys ``builder`` declares (its own parameters and those of the classes it forwards its options
    to: :func:`plmu.models.backbones.forwarded_classes`), each with its default (``inspect.Parameter.empty`` if
    none); in signature order, the builder's first."""
    from plmu.models.backbones import forwarded_classes

    keys: dict[str, Any] = {}
    classes, given = forwarded_classes(builder, model.get("backbone"))
    for function in [builder, *classes]:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # no signature to read
            continue
        for parameter in parameters:
            named = parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if named and parameter.name not in given:
                keys.setdefault(parameter.name, parameter.default)
    return keys


def _takes_any_key(builder: Any) -> bool:
    """A builder with ``**options`` and no declaration of where they go (a user's own): every key is its to judge."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return True
    keyword = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)
    return keyword and not hasattr(builder, "forwards")


def _check_keys(model: DictConfig, builder: Any, keys: dict[str, Any], args: Mapping[str, Any]) -> None:
    """Each of ``model``'s keys one ``builder`` declares, and each of its required arguments given."""
    from plmu.models.backbones import BACKBONES

    chosen = model.get("backbone")
    if not _takes_any_key(builder) and (chosen is None or chosen in BACKBONES):  # else the builder names the family
        valid = [key for key in keys if key not in args]
        for name in model:
            if not (name.startswith("_") and name.endswith("_")) and name not in keys:
                close = difflib.get_close_matches(str(name), valid, n=1)
                hint = f"did you mean model.{close[0]}?" if close else f"valid keys: {', '.join(['_target_', *valid])}"
                raise ConfigError(f"unknown key model.{name} ({hint})")
    for name, default in keys.items():  # the builder's defaults first: what it fills in is not required
        if default is inspect.Parameter.empty and name not in args and name not in model:
            raise ConfigError(f"model.{name} is required but not set (set it: model.{name}=...)")


def _example(value: Any) -> str:
    """A default as a command-line override writes it: true, null, '2019' (a string that would read as a number)."""
    if isinstance(value, str):
        return f"'{value}'" if _looks_typed(value) else value
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)


def _looks_typed(text: str) -> bool:
    """Whether Hydra would read ``text`` on the command line as something other than a string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return not isinstance(OverridesParser.create().parse_override(f"k={text}").value(), str)


def _bad_value(error: ArgumentError, keys: Mapping[str, Any]) -> str:
    """A constructor's refusal of the value of a ``model.*`` key as the user's one line, with an example fix."""
    name, default = error.argument, keys.get(error.argument, inspect.Parameter.empty)
    fix = (
        f"override it: model.{name}=..."
        if default is inspect.Parameter.empty
        else f"override it, e.g. model.{name}={_example(default)}"
    )
    return f"model.{name} must {error.requirement} ({fix})"
