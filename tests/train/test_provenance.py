"""Paths in a run's records: relative to the run folder, or from the user's home when only the home is shared."""

from pathlib import Path

import pytest

from plmu.train.provenance import from_record, is_machine_path, machine_paths, portable, run_relative


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_a_path_beside_the_run_is_relative_to_the_run_folder(tmp_path, home):
    run = tmp_path / "work" / "outputs" / "task" / "run"
    assert run_relative(tmp_path / "work" / "data" / "mnist", run) == "../../../data/mnist"
    assert run_relative(run / "checkpoints" / "best.pt", run) == "checkpoints/best.pt"
    # a project inside the home: the run and its data share a folder below it, so still relative
    inside = home / "project" / "outputs" / "run"
    assert run_relative(home / "project" / "data", inside) == "../../data"


def test_the_home_cache_of_a_run_outside_the_home_is_written_from_the_home(tmp_path, home):
    # the newcomer's case: a run in /tmp/x reading the default cache ~/.cache/plmu (was ../../../../home/alice/...)
    run = tmp_path / "scratch" / "outputs" / "run"
    assert run_relative(home / ".cache" / "plmu" / "mackey_glass", run) == "~/.cache/plmu/mackey_glass"
    assert run_relative("~/.cache/plmu", run) == "~/.cache/plmu"
    assert run_relative(home, run) == "~"
    # a run directly in the home shares only the home itself with the cache: from the home too
    assert run_relative(home / ".cache" / "plmu", home / "outputs" / "run") == "~/.cache/plmu"
    assert from_record("~/.cache/plmu", run) == home / ".cache" / "plmu"
    assert run_relative(None, run) is None


def test_portable_records_keep_home_paths_and_relativise_absolute_ones(tmp_path, home):
    run = tmp_path / "scratch" / "run"
    record = {
        "data": {"cache_dir": "~/.cache/plmu/x", "root": str(tmp_path / "scratch" / "data")},
        "command": f"plmu-train hydra.run.dir={run}",
        "files": [str(home / ".cache" / "tok.json")],
        "value": 3,
    }
    written = portable(record, run)
    assert written["data"] == {"cache_dir": "~/.cache/plmu/x", "root": "../data"}
    assert written["command"] == record["command"] and written["files"] == ["~/.cache/tok.json"]
    assert machine_paths(written) == []
    assert machine_paths(record) == ["data.root", "files[0]"]


@pytest.mark.parametrize(
    ("value", "machine"),
    [("/data/x", True), ("~bob/data", True), ("~/data", False), ("~", False), ("../data", False), (3, False)],
)
def test_which_values_only_mean_something_on_one_machine(value, machine):
    assert is_machine_path(value) is machine


def test_a_home_of_slash_never_turns_every_path_into_a_home_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/")
    assert run_relative(tmp_path / "data", tmp_path / "run") == "../data"
    assert Path.home() == Path("/")
