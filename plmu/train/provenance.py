"""What makes a result comparable later: versions, the machine, the code's git state, the exact command."""

from __future__ import annotations

import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

import plmu


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(plmu.__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit of the plmu source tree and whether it had uncommitted changes (None: not a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit.strip(), "git_dirty": None if status is None else bool(status.strip())}


def device_name(device: Any) -> str:
    """A human name for the device a run used: the GPU's model, or the CPU's."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Any) -> dict[str, Any]:
    import torch

    return {
        "plmu_version": plmu.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        **git_state(),
    }


def command_line(overrides: list[str], run_dir: Path) -> str:
    """The ``plmu-train`` command that runs (or resumes) this run: its overrides and its folder, shell-quoted."""
    kept = [o for o in overrides if not o.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "hydra.job."))]
    return shlex.join(["plmu-train", *kept, f"hydra.run.dir={run_dir.resolve()}"])
