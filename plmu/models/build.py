"""Building a model from its config: ``build_model(cfg, model_args(cfg, data_info))``, the one way plmu-train,
the command-line tools and :func:`plmu.load_run` make a model.

``cfg.model`` names a builder (``_target_``: ``plmu.models.plmu_model``, ``text_classifier``, ...) and its options;
the task and the data give the rest (input and output sizes, a text task's vocabulary and classes: ``model_args``).
A constructor's argument error becomes one line that names the ``model.*`` key and the fix, "did you mean" for a
key no builder takes: the keys are the builder's parameters and those of the classes its backbone's options reach
(:mod:`plmu.models.backbones`).
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from plmu.checks import ArgumentError
from plmu.errors import ConfigError


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

    The constructors check their own arguments (:mod:`plmu.checks`); their errors become one-line ConfigErrors that
    name the key: ``model.<name> must be ...``, ``unknown key model.<name> (did you mean ...?)``, and
    ``model.<name> is required but not set`` for a ``???``.
    """
    args = model_args(cfg) if args is None else args
    for key in cfg.model:
        if OmegaConf.is_missing(cfg.model, key):
            raise ConfigError(f"model.{key} is required but not set (set it: model.{key}=...)")
    builder = None
    try:
        builder = get_method(cfg.model._target_)
        accepted = inspect.signature(builder).parameters
        return instantiate(cfg.model, **{key: value for key, value in args.items() if key in accepted})
    except (InstantiationException, ImportError, ValueError, TypeError) as error:
        cause = error.__cause__ or error
        message = _model_error(cfg.model, builder, cause, args)
        if message is None:
            message = f"model {cfg.model._target_} could not be built from model.*: {_one_line(cause)}"
        raise ConfigError(message) from None


_MUST = re.compile(r"(\w+) must (.*)")
_UNKNOWN = re.compile(r"got an unexpected keyword argument '(\w+)'")
_REQUIRED = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: '(\w+)'")
# What a builder passes to its backbone itself, never a model.* key (the task's sizes come from model_args).
_NOT_KEYS = {"return_sequences", "d_model", "input_size", "output_size", "per_step", "vocab_size", "num_classes"}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _forwarded(builder: Any, model: DictConfig) -> list[Any]:
    """The classes a builder passes its options to (``**kwargs``) or builds from them: their parameters are model.*
    keys too. From the backbone registry: the family ``model.backbone`` names (every one that takes a mask while it
    is unset or unknown), or the one a real-valued builder is named after (``lstm_model`` → lstm)."""
    from plmu.models.backbones import BACKBONES

    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return []
    if "backbone" in parameters:
        chosen = BACKBONES.get(str(model.get("backbone")))
        entries = [chosen] if chosen is not None else [entry for entry in BACKBONES.values() if entry.masks]
    else:
        family = BACKBONES.get(getattr(builder, "__name__", "").removesuffix("_model"))
        entries = [] if family is None else [family]
    return [cls for entry in entries for cls in entry.option_classes()]


def _model_keys(builder: Any, model: DictConfig) -> dict[str, Any]:
    """The model.* keys ``builder`` takes (its own parameters and those of what it forwards to), each with its
    default (``inspect.Parameter.empty`` if none); in signature order, the builder's first."""
    keys: dict[str, Any] = {}
    for function in [builder, *_forwarded(builder, model)]:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # no signature to read
            continue
        for parameter in parameters:
            named = parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if named and parameter.name not in _NOT_KEYS:
                keys.setdefault(parameter.name, parameter.default)
    return keys


def _example(value: Any) -> str:
    """A default as a command-line override writes it: true, null, '2019' (a string that would read as a number)."""
    if isinstance(value, str):
        return f"'{value}'" if _looks_typed(value) else value
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)


def _looks_typed(text: str) -> bool:
    """Whether Hydra would read ``text`` on the command line as something other than a string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return not isinstance(OverridesParser.create().parse_override(f"k={text}").value(), str)


def _model_error(model: DictConfig, builder: Any, cause: BaseException, args: Mapping[str, Any]) -> str | None:
    """A constructor's error about one of ``model``'s keys as the user's one line, or None for any other error."""
    if builder is None:
        return None
    message = _one_line(cause)
    keys = _model_keys(builder, model)
    if isinstance(cause, ArgumentError):  # plmu.checks: the argument's name is data
        named: tuple[str, str] | None = (cause.argument, cause.requirement)
    else:  # a constructor's own ValueError("<name> must ...")
        named = (must[1], must[2]) if (must := _MUST.fullmatch(message)) else None
    if isinstance(cause, ValueError) and named is not None and named[0] in model:
        (name, requirement), default = named, keys.get(named[0], inspect.Parameter.empty)
        fix = (
            f"override it: model.{name}=..."
            if default is inspect.Parameter.empty
            else f"override it, e.g. model.{name}={_example(default)}"
        )
        return f"model.{name} must {requirement} ({fix})"
    if isinstance(cause, TypeError) and (unknown := _UNKNOWN.search(message)) and unknown[1] in model:
        name, valid = unknown[1], [key for key in keys if key not in args]
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean model.{close[0]}?" if close else f"valid keys: {', '.join(['_target_', *valid])}"
        return f"unknown key model.{name} ({hint})"
    if isinstance(cause, TypeError) and (missing := _REQUIRED.search(message)) and missing[1] not in args:
        return f"model.{missing[1]} is required but not set (set it: model.{missing[1]}=...)"
    return None
