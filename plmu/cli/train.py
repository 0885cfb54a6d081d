"""``plmu-train``: train one task (``plmu-train task=psmnist``) or sweep (``plmu-train -m model.order=4,8``).

Configs come from the package (``conf/`` of the repository, installed as ``plmu.conf``), so the command works from
any folder after ``pip install``. Returns the best validation metric, for Hydra sweepers (e.g. Optuna) to optimise.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from plmu.errors import NonFiniteLossError, PlmuError
from plmu.train.run import train

log = logging.getLogger("plmu")


@hydra.main(config_path="pkg://plmu.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    try:
        results = train(cfg, hydra_cfg.runtime.output_dir)
    except NonFiniteLossError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one diverged trial must not end the sweep
            log.error("%s", error)
            return float("nan")
        _fail(error)
    except PlmuError as error:
        _fail(error)
    log.info(
        "%s %s: test %s %.4f, best val %.4f, %d parameters, %.0f s -> %s",
        results["task"],
        results["model"],
        results["metric"],
        results["test"],
        results["best_val"],
        results["parameters"],
        results["wall_seconds"],
        hydra_cfg.runtime.output_dir,
    )
    return results["best_val"]


def _fail(error: Exception) -> None:
    print(f"plmu-train: error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
