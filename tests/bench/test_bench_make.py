"""`make bench` writes outside the tracked files; copying a result into experiments/ is its own target."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_writes_only_into_bench_results():
    commands = subprocess.run(["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "bench-results" in commands and "experiments/" not in commands
    commit = subprocess.run(["make", "-n", "bench-commit"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "experiments/speed/cpu" in commit.stdout
    assert "bench-results/" in (ROOT / ".gitignore").read_text().split()
