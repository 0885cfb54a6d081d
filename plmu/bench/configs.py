"""The models the benchmarks time, from the configs ``plmu-train`` composes: each registered family
(:mod:`plmu.models.backbones`) that has sizes for the task (the task's entry in ``conf/sizes/<family>.yaml``), so a
new family is timed once it has them, at the sizes the task trains."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def conf_folder() -> Path:
    """``plmu.conf`` when installed, else the repository's ``conf/`` beside the package (a source tree run with
    PYTHONPATH=., e.g. on a GPU box)."""
    if importlib.util.find_spec("plmu.conf") is not None:
        from importlib.resources import files

        return Path(str(files("plmu.conf")))
    return Path(__file__).resolve().parents[2] / "conf"


def compose(overrides: list[str]) -> Any:
    """The config ``plmu-train <overrides>`` runs with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    if importlib.util.find_spec("plmu.conf") is not None:
        with initialize_config_module(config_module="plmu.conf", version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    with initialize_config_dir(config_dir=str(conf_folder()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def sized_families(task: str, skip: tuple[str, ...] = ()) -> list[str]:
    """The registered families with sizes for ``task``, in the registry's order, less ``skip``."""
    import yaml

    from plmu.models.backbones import BACKBONES

    def sized(family: str) -> bool:
        path = conf_folder() / "sizes" / f"{family}.yaml"
        return path.is_file() and task in (yaml.safe_load(path.read_text()) or {})

    return [name for name in BACKBONES if name not in skip and sized(name)]


def model_options(task: str, family: str) -> dict[str, Any]:
    """``model.*`` of ``plmu-train task=<task> model=<family>`` without ``_target_``: the builder's arguments."""
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(compose([f"task={task}", f"model={family}"]).model, resolve=True)
    options.pop("_target_", None)
    return options


def task_models(task: str) -> dict[str, dict[str, Any]]:
    """{a family's label (``parallel LMU``, ``LSTM``, ...): its builder's arguments for ``task``}."""
    from plmu.models.backbones import family_label

    return {family_label(family): model_options(task, family) for family in sized_families(task)}
