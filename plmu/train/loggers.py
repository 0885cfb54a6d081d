"""Where metrics go: always ``metrics.jsonl`` in the run directory, plus wandb (offline by default) or nothing.

``conf/logger/*.yaml`` picks one with ``_target_``; wandb runs through its own API, so ``wandb sync`` uploads an
offline run later and ``logger.mode=online`` streams it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class JsonlLog:
    """One JSON object per line: {"time", "step", "epoch", ...metrics}; appended, so a resumed run continues it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the lines logged after ``step`` (a resumed run re-runs them)."""
        if self.path.exists():
            lines = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in lines))


class NullLogger:
    """``logger=none``: only metrics.jsonl."""

    def start(self, run_dir: Path, config: dict[str, Any], run_name: str) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger(NullLogger):
    """Weights & Biases. ``mode``: offline (default; no account needed), online, or disabled."""

    def __init__(
        self,
        project: str = "plmu",
        mode: str = "offline",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be one of offline, online, disabled; got {mode!r}")
        self.project, self.mode, self.entity, self.group, self.tags = project, mode, entity, group, list(tags or [])
        self.run = None

    def start(self, run_dir: Path, config: dict[str, Any], run_name: str) -> None:
        import wandb

        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.group,
            tags=self.tags,
            mode=self.mode,
            dir=str(run_dir),
            name=run_name,
            config=config,
            resume="allow",
            id=_stable_id(run_dir),  # a resumed run continues the same wandb run
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _stable_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
