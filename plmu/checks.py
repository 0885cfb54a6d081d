"""Argument checks for constructors: each module checks its own arguments, once, with these.

Every check returns the value it accepted, or raises :class:`ArgumentError` (a ValueError:
``<name> must be <what is allowed>, got <value!r>``, with the name as data).
The message starts with the argument's name on purpose: ``plmu-train`` builds the model from ``model.*`` before any
data is read, and turns such an error into ``model.<name> must be ...`` for the user
(``plmu.models.build.build_model``).

A bool is never accepted as a number (``True`` is no size), and only a real bool is a flag: a config's ``off`` or
``"no"`` would otherwise be a truthy string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ArgumentError(ValueError):
    """A constructor's argument outside what it allows, said as ``<argument> must <requirement>``; the argument's
    name travels as data (``argument``), so that ``plmu.models.build`` names the ``model.*`` key without reading
    the message."""

    def __init__(self, argument: str, requirement: str) -> None:
        self.argument, self.requirement = argument, requirement
        super().__init__(f"{argument} must {requirement}")


def _fail(name: str, allowed: str, value: Any, why: str = "") -> ArgumentError:
    return ArgumentError(name, f"be {allowed}{f' ({why})' if why else ''}, got {value!r}")


def positive_int(name: str, value: Any, why: str = "") -> int:
    """An int ≥ 1 (not a bool); ``why`` says what it counts, for the message."""
    if not (_is_int(value) and value > 0):
        raise _fail(name, "a positive int", value, why)
    return value


def optional_positive_int(name: str, value: Any, why: str = "") -> int | None:
    """None, or an int ≥ 1."""
    return None if value is None else positive_int(name, value, why)


def positive_number(name: str, value: Any, why: str = "") -> float:
    """A finite int or float > 0 (not a bool)."""
    if not (_is_number(value) and value > 0):
        raise _fail(name, "a positive number", value, why)
    return value


def probability(name: str, value: Any) -> float:
    """A number in [0, 1): a dropout rate (1 would drop everything)."""
    if not (_is_number(value) and 0 <= value < 1):
        raise _fail(name, "a number in [0, 1)", value)
    return value


def flag(name: str, value: Any) -> bool:
    """A real bool: ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


def one_of(name: str, value: T, choices: Iterable[Any]) -> T:
    """One of ``choices`` (compared by equality, so ``"2019"`` is not ``2019``)."""
    allowed = list(choices)
    if not any(type(value) is type(choice) and value == choice for choice in allowed):
        raise _fail(name, f"one of {allowed}", value)
    return value
