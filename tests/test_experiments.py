"""The committed experiment records read the same on any machine: no absolute path, no home folder, in any record
a tool writes (results.json, metrics.jsonl, data_info.json, eval and translate reports), except the exact command
and its overrides, which are kept as they were typed. Each run's results.json names its data set and its command.
"""

import json
from pathlib import Path

import pytest

from plmu.train.provenance import machine_paths

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
RECORDS = ("*results.json", "data_info.json", "eval_*.json", "translate_*.json", "metrics.jsonl", "jobs.jsonl")


def records() -> list[Path]:
    return sorted(path for pattern in RECORDS for path in EXPERIMENTS.rglob(pattern))


def test_there_are_records_to_check():
    assert len([p for p in records() if p.name == "results.json"]) >= 20


@pytest.mark.parametrize("path", records(), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_a_record_holds_no_path_of_the_machine_that_wrote_it(path):
    lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
    for number, line in enumerate(lines, start=1):
        found = machine_paths(json.loads(line))
        assert not found, f"{path}:{number}: machine paths in {found}: write them relative to the run folder"


@pytest.mark.parametrize(
    "path", [p for p in records() if p.name == "results.json"], ids=lambda p: str(p.parent.relative_to(EXPERIMENTS))
)
def test_a_result_names_its_data_and_its_command(path):
    results = json.loads(path.read_text())
    assert isinstance(results.get("dataset"), str) and results["dataset"], f"{path}: no dataset"
    assert "run_dir" not in results  # the folder the record lives in; a machine path in older records
    if "command" in results:  # records older than the command field have their command in the experiment's README
        assert results["command"].startswith("plmu-train ")
