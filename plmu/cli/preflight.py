"""Checks of ``plmu-train``'s command line before Hydra starts: each problem Hydra would answer with a traceback or
several lines (an unknown config choice, a folder it cannot create, a malformed override, a key typo) becomes one
line that names the argument and the fix.

The key check composes the config once (about 0.3 s) with each sweep's first value; sweeps Hydra cannot enumerate
(``interval(...)``, ``glob(...)``) are left out of it, and anything else this check cannot judge is left to Hydra.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path

from plmu.errors import one_line


def resumed_arguments(arguments: list[str]) -> tuple[list[str], str | None]:
    """``resume=<run folder>`` replaced by that run's command: its saved overrides (``.hydra/overrides.yaml``), then
    the other arguments given (one of the same key replaces the saved one: ``trainer.max_epochs=20`` extends the
    run), then ``hydra.run.dir=<run folder>``. Returns (the arguments, an error line or None); arguments without
    ``resume=`` come back unchanged."""
    import yaml

    given = [argument for argument in arguments if argument.startswith("resume=")]
    if not given:
        return arguments, None
    if len(given) > 1:
        return arguments, f"resume= is given {len(given)} times: name one run folder"
    if {"-m", "--multirun"} & set(arguments):
        return arguments, "resume= continues one run: it cannot be combined with -m (resume each job on its own)"
    if not given[0].partition("=")[2]:
        return arguments, "resume= needs a run folder: plmu-train resume=<run folder>"
    folder = Path(given[0].partition("=")[2]).expanduser()
    rest = [argument for argument in arguments if argument != given[0]]
    if any(argument.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for argument in rest):
        return arguments, "resume=<run folder> already names the folder: drop hydra.run.dir"
    saved = folder / ".hydra" / "overrides.yaml"
    if not folder.is_dir():
        return arguments, f"resume={given[0].partition('=')[2]}: no such run folder"
    try:
        overrides = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError):
        overrides = None
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        return arguments, (
            f"resume={folder}: {saved} is missing or unreadable, so the run's command is unknown (a run writes it "
            f"once its checks pass); resume with the run's own overrides and hydra.run.dir={folder}"
        )

    def key(argument: str) -> str:
        return argument.partition("=")[0].lstrip("+~")

    replaced = {key(argument) for argument in rest if "=" in argument}
    kept = [item for item in overrides if key(item) not in replaced and not key(item).startswith("hydra.")]
    return [*kept, *rest, f"hydra.run.dir={folder}"], None


CONFIG_GROUPS = ("task", "model", "trainer", "logger", "experiment", "debug", "hparams_search", "sizes")


def unknown_group_choice(arguments: list[str]) -> str | None:
    """The error line for a command-line choice of a config group that has no file (``model=mamba``), or None.

    Plain names and comma lists (a sweep) are checked; sweep functions (``choice(...)``), interpolations and
    ``null`` are left to Hydra."""
    from importlib.resources import files

    conf = Path(str(files("plmu.conf")))
    for argument in arguments:
        key, equals, value = argument.lstrip("+~").partition("=")
        if not equals or key not in CONFIG_GROUPS or any(c in value for c in "()${}[]*"):
            continue
        choices = sorted(path.stem for path in (conf / key).glob("*.yaml"))
        for name in (v.strip() for v in value.split(",")):
            if name and name != "null" and name not in choices:
                return f"{key}={name}: no such {key} config; choose one of: {', '.join(choices)} (conf/{key}/)"
    return None


# Where Hydra puts a run or a sweep when the command line does not say (conf/config.yaml's hydra.run/sweep.dir)
DEFAULT_OUTPUT_ROOTS = {"hydra.run.dir": "outputs", "hydra.sweep.dir": "multirun"}


def output_folders(arguments: list[str]) -> dict[str, str]:
    """{"hydra.run.dir" or "hydra.sweep.dir": the folder as typed, or the default's first level (``outputs``)}: the
    folder this command's Hydra will create (only the one its mode uses); interpolated values are left out."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(arguments) else "hydra.run.dir"
    folders = {key: DEFAULT_OUTPUT_ROOTS[key]}
    for argument in arguments:
        name, equals, value = argument.partition("=")
        if equals and name in DEFAULT_OUTPUT_ROOTS:
            folders[name] = value
    return {name: value for name, value in folders.items() if value and "$" not in value}


def unusable_output_folder(arguments: list[str]) -> str | None:
    """The error line for a ``hydra.run.dir`` / ``hydra.sweep.dir`` (typed, or the default ``outputs/``) that Hydra
    could not create (a file, or below a folder this process cannot write: a read-only mount), or None;
    interpolated ones are left to Hydra."""
    for key, value in output_folders(arguments).items():
        folder, default = Path(value).expanduser(), value == DEFAULT_OUTPUT_ROOTS[key]
        typed = f"{value}/ (the default {key})" if default else f"{key}={value}"
        fix = f"set {key}=<a folder>" if default else "choose a folder for the run"
        writable = f"run from a folder you can write, or {fix}" if default else "choose a folder you can write"
        if folder.exists() and not folder.is_dir():
            return f"{typed} is a file, not a folder: {fix}"
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"{typed}: cannot create it, {existing} is a file; {fix}"
        if existing is not None and existing != folder and not os.access(existing, os.W_OK | os.X_OK):
            where = existing if str(existing) != "." else Path.cwd()
            return f"{typed}: cannot create it, {where} is not writable; {writable}"
        if existing == folder and not os.access(folder, os.W_OK | os.X_OK):
            return f"{typed} is not writable; {writable}"
        if existing != folder and (reason := _cannot_create(folder)) is not None:  # e.g. below /proc, even as root
            return f"{typed}: cannot create it ({reason}); {writable}"
    return None


def _cannot_create(folder: Path) -> str | None:
    """Why ``folder`` cannot be made, found by making it and removing at once what was made; None if it can."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        return error.strerror or type(error).__name__
    finally:
        for path in made:  # deepest first: the probe leaves nothing behind
            with contextlib.suppress(OSError):
                path.rmdir()
    return None


def malformed_override(arguments: list[str]) -> str | None:
    """The error line for an argument Hydra's override grammar rejects (``trainer.batch_size={a``), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for argument in arguments:
        try:
            parser.parse_overrides([argument])
        except OverrideParseException as error:
            reason = str(error).strip().splitlines()[0]
            return (
                f"{argument}: not a valid override ({reason}); check its brackets, braces and quotes (a value with "
                "special characters goes in quotes: key='value')"
            )
    return None


def unknown_key(arguments: list[str]) -> str | None:
    """The error line for an override of a key the composed config lacks (``trainer.max_epoch=3`` without ``+``),
    with the nearest existing keys, or None (also when the config cannot be composed for another reason: Hydra
    then reports that itself)."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, HydraException
    from omegaconf import DictConfig, OmegaConf

    parser = OverridesParser.create()
    plain: list[str] = []  # the overrides, each sweep replaced by its first value
    for argument in arguments:
        (override,) = parser.parse_overrides([argument])
        if not override.is_sweep_override():
            plain.append(argument)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except (HydraException, StopIteration):
            continue  # interval(...) and glob(...): not enumerable here
        plain.append(f"{argument.partition('=')[0]}={first}")
    with initialize_config_module("plmu.conf", version_base="1.3"):
        try:
            compose("config", plain, return_hydra_config=True)
            return None
        except ConfigCompositionException as error:
            full_key = getattr(error.__cause__, "full_key", None)
            if not full_key or "not in" not in str(error.__cause__):  # e.g. ~key of a key that is not there
                return one_line(error)
        except Exception:  # Hydra's own report names it
            return None
        # the keys a section has come from the config groups chosen (other overrides may hold typos too)
        choices = [
            argument
            for argument in plain
            if "." not in (key := argument.partition("=")[0]) and key != full_key and not key.startswith(("+", "~"))
        ]
        try:
            others = compose("config", choices, return_hydra_config=True)
        except Exception:  # Hydra's own report names it
            return None
    parent, _, name = full_key.rpartition(".")
    node = OmegaConf.select(others, parent) if parent else others
    keys = [str(key) for key in node] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(f'{parent}.{k}' if parent else k for k in close)}?"
    elif keys:
        hint = f"{parent or 'the config'} has: {', '.join(keys)}"
    else:
        hint = f"{parent} is not a section"
    return f"unknown key {full_key}: {hint} (a key the config does not have is added with +{full_key}=...)"


# Hydra's flags that show the composed config without changing what is composed: the overrides beside them are
# checked as any others (``--cfg job trainer.max_epoch=3`` gets the typo's line, not Hydra's traceback).
SHOWING_FLAGS = {"--cfg": 1, "-c": 1, "--package": 1, "-p": 1, "--resolve": 0, "-m": 0, "--multirun": 0}


def _plain_overrides(arguments: list[str]) -> list[str] | None:
    """The arguments that are overrides, or None when Hydra's flags that change what is composed (``--help``,
    ``-cn``, ``--config-dir``...) are present: Hydra answers those."""
    overrides, skip = [], 0
    for argument in arguments:
        if skip:
            skip -= 1
            continue
        if argument in SHOWING_FLAGS:
            skip = SHOWING_FLAGS[argument]
            continue
        if argument.startswith("-"):
            return None
        overrides.append(argument)
    return overrides


def sweep_without_multirun(arguments: list[str], overrides: list[str]) -> str | None:
    """The error line for a sweep override (``trainer.max_epochs=1,2``, ``seed=range(0,3)``) without ``-m``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if {"-m", "--multirun"} & set(arguments):
        return None
    parser = OverridesParser.create()
    for argument in overrides:
        (override,) = parser.parse_overrides([argument])
        if override.is_sweep_override():
            key, _, value = argument.partition("=")
            return (
                f"{argument} gives {key} several values (a sweep): add -m to run one job per value "
                f"(plmu-train -m ... {argument}), or quote it for one string value: {key}='{value}'"
            )
    return None


def command_line_problem(arguments: list[str]) -> str | None:
    """The first problem of ``plmu-train``'s arguments as one line, or None: unknown config choices, output folders
    Hydra cannot create, malformed overrides, then unknown keys."""
    overrides = _plain_overrides(arguments)
    checks = (unknown_group_choice, unusable_output_folder)
    for check in checks:
        problem = check(arguments)
        if problem is not None:
            return problem
    if overrides is None:
        return None
    return malformed_override(overrides) or unknown_key(overrides) or sweep_without_multirun(arguments, overrides)
