"""A model family's sizes per task: ``conf/sizes/<family>.yaml``, read by the configs as they compose.

The defaults list loads the chosen family's table (``- optional sizes: ${model}``) as the node ``sizes``: one entry
per task, ``{hidden_size: 72, num_layers: 4, ...}``. A family's config writes its sized keys ``${size:hidden_size}``
(required: a task without the key is an error that names the file to add it to); a task's config writes the
task-level keys a family may change ``${size:pooling,last}`` (the task's default unless the table says otherwise:
the transformer mean-pools, the LSTM keeps the 2019 learning rate on Mackey-Glass). A user's ``model.KEY=...``
replaces the interpolation, so it always wins.

A run records the values, not the table (:func:`settle`): its ``config.yaml`` holds what it trained, and adding a
size for another task later changes no record and stops no resume.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from plmu.errors import ConfigError

_REQUIRED = object()


def sized_task(cfg: DictConfig) -> str | None:
    """The task whose entry of the sizes table a config reads: ``task.sizes_from`` if set (a new task sized like
    another: ``sizes_from: qqp``), else ``task.name``."""
    return OmegaConf.select(cfg, "task.sizes_from", default=None) or OmegaConf.select(cfg, "task.name", default=None)


def size(key: str, default: Any = _REQUIRED, *, _root_: DictConfig) -> Any:
    """The resolver ``${size:KEY}`` / ``${size:KEY,DEFAULT}``: ``sizes[<task>][KEY]``, else ``DEFAULT``, else a
    :class:`ConfigError` naming the family's sizes file (``<task>``: :func:`sized_task`)."""
    task = sized_task(_root_)
    table = OmegaConf.select(_root_, f"sizes.{task}", default=None) if task is not None else None
    if table is not None and key in table:
        return table[key]
    if default is not _REQUIRED:
        return default
    family = OmegaConf.select(_root_, "model.backbone", default=None) or "<family>"
    raise ConfigError(
        f"model {family} has no {key} for task {task}: set model.{key}=... on the command line, add it to "
        f"conf/sizes/{family}.yaml under {task}:, or size the task like another (task.sizes_from=<a task>)"
    )


def settle(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every ``${size:...}`` (and ``${sizes.<task>.<key>}``: an experiment borrowing another task's
    sizes) replaced by its value and the ``sizes`` table gone: what a run records.
    Other interpolations (``${data_dir}``, ``${task.data.max_length}``) stay as they are."""
    if "sizes" not in cfg:
        return cfg
    _check_table(cfg)
    cfg = cfg.copy()
    struct = OmegaConf.is_struct(cfg)
    OmegaConf.set_struct(cfg, False)
    for key in cfg:
        if key != "sizes":
            _replace_sizes(cfg._get_node(key))
    del cfg["sizes"]
    OmegaConf.set_struct(cfg, struct)
    return cfg


_SIZE_KEY = re.compile(r"\$\{size:\s*([A-Za-z_]\w*)")


def _check_table(cfg: DictConfig) -> None:
    """Every key of the task's entry in the sizes table is read by some ``${size:KEY}``: a misspelt size
    (``poolng: mean``) would otherwise be ignored without a word."""
    task = sized_task(cfg)
    table = OmegaConf.select(cfg, f"sizes.{task}", default=None) if task is not None else None
    if not isinstance(table, DictConfig):
        return
    written = OmegaConf.to_container(cfg, resolve=False)
    written.pop("sizes", None)
    # what this config reads, and what any of plmu's configs read (a command-line model.KEY=... replaced its ${size:})
    read = set(_SIZE_KEY.findall(str(written))) | _keys_the_configs_read()
    unread = [str(key) for key in table if key not in read]
    if unread:
        family = OmegaConf.select(cfg, "model.backbone", default=None) or "<family>"
        raise ConfigError(
            f"conf/sizes/{family}.yaml: {task}.{unread[0]} is read by no config key (the keys a size may set: "
            f"{', '.join(sorted(read))}); fix its name, or write the key in the config as ${{size:{unread[0]}}}"
        )


@functools.cache
def _keys_the_configs_read() -> frozenset[str]:
    """Every KEY of a ``${size:KEY}`` in plmu's own configs (the installed ``plmu.conf``)."""
    from importlib.resources import files

    try:
        folder = files("plmu.conf")
    except ModuleNotFoundError:  # the configs are not installed: only the composed config is read
        return frozenset()
    found: set[str] = set()
    stack = [folder]
    while stack:
        for entry in stack.pop().iterdir():
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".yaml"):
                code = "\n".join(line.split("#", 1)[0] for line in entry.read_text().splitlines())  # not comments
                found |= set(_SIZE_KEY.findall(code))
    return frozenset(found)


def _replace_sizes(node: Any) -> None:
    """Resolve, in place, each value below ``node`` that is a ``${size:...}`` interpolation."""
    if not (isinstance(node, DictConfig) or OmegaConf.is_list(node)):
        return
    for key in list(node.keys() if isinstance(node, DictConfig) else range(len(node))):
        child = node._get_node(key)
        if isinstance(child, DictConfig) or OmegaConf.is_list(child):
            _replace_sizes(child)
        elif OmegaConf.is_interpolation(node, key) and any(
            ref in str(child._value()) for ref in ("${size:", "${sizes.")
        ):
            node[key] = node[key]  # its value (a size may itself interpolate: the transformer's embed_dim)
