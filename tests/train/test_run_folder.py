"""A run folder's record stays true: one writer, no mixed runs, resume only with the same run's config."""

import json
import logging

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config, nan_loss_on_call

from plmu.errors import ConfigError, NonFiniteLossError, RunFolderError
from plmu.train import run as run_module
from plmu.train.loggers import NullLogger
from plmu.train.run import train
from plmu.train.run_folder import RunFolder, RunInterrupted, check_resume, flatten
from plmu.train.trainer import Trainer


def _cfg(tmp_path, *extra):
    return compose_config([*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", "trainer.max_epochs=2", *extra])


def _snapshot(folder):
    """Every file of a run folder with its bytes: what a failed command must leave untouched."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_in_use_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    with RunFolder(tmp_path / "run"), pytest.raises(RunFolderError, match="in use by another plmu-train process"):
        train(_cfg(tmp_path), tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


def test_the_lock_is_released_after_a_run_and_after_a_failure(tmp_path):
    with pytest.raises(ConfigError):
        train(_cfg(tmp_path, "task.data.n_val=0"), tmp_path / "run")
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    with RunFolder(tmp_path / "run"):  # free again
        pass


def test_resume_with_a_changed_config_is_refused_and_names_the_keys(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        train(_cfg(tmp_path, "trainer.optimizer.lr=0.01", "seed=7"), tmp_path / "run")
    assert "seed: 0 in the checkpoint, 7 now" in str(error.value)
    assert "trainer.optimizer.lr: 0.003 in the checkpoint, 0.01 now" in str(error.value)
    assert _snapshot(tmp_path / "run") == before  # nothing in the folder was touched


def test_a_failed_command_does_not_touch_a_finished_run(tmp_path):
    train(_cfg(tmp_path), tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"model.order: 4 in the checkpoint, 100 now"):
        train(_cfg(tmp_path, "model.order=100"), tmp_path / "run")
    assert _snapshot(tmp_path / "run") == before


def test_resume_may_extend_max_epochs_and_says_so(tmp_path, caplog):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="plmu"):
        results = train(_cfg(tmp_path, "trainer.max_epochs=2", "trainer.progress=false"), tmp_path / "run")
    assert results["epochs"] == 2 and results["resumed_from"].endswith("last.pt")
    assert f"resumed from {tmp_path / 'run' / 'checkpoints' / 'last.pt'} at epoch 1" in caplog.text
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=1 is below what .* has done \(2\)"):
        train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")


def test_a_finished_run_started_again_is_left_as_it_is(tmp_path):
    first = train(_cfg(tmp_path), tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    assert train(_cfg(tmp_path), tmp_path / "run") == first
    assert _snapshot(tmp_path / "run") == before


def test_resume_null_in_a_used_folder_is_refused(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(_cfg(tmp_path, "trainer.resume=null"), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == lines


def _lines(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in ("time", "epoch_seconds", "seconds", "train_seconds")}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def test_lines_of_an_attempt_killed_before_its_first_checkpoint_are_dropped(tmp_path, monkeypatch):
    train(_cfg(tmp_path, "trainer.log_every_n_steps=1"), tmp_path / "clean")
    original = Trainer._train_epoch

    def killed_in_first_epoch(self, epoch, bar):
        original(self, epoch, bar)  # its steps are logged, then the process dies before last.pt
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", killed_in_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "trainer.log_every_n_steps=1"), tmp_path / "run")
    monkeypatch.undo()
    assert _lines(tmp_path / "run")  # the killed attempt left lines
    train(_cfg(tmp_path, "trainer.log_every_n_steps=1"), tmp_path / "run")
    assert _lines(tmp_path / "run") == _lines(tmp_path / "clean")  # each step once, as if never killed


def test_a_torn_last_metrics_line_does_not_stop_a_resume(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"time": 1, "step": 9, "train/lo')  # the disk filled up mid-append
    train(_cfg(tmp_path), tmp_path / "run")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]  # every line parses again
    assert [r["epoch"] for r in records if "val/nrmse" in r] == [1, 2]


def test_orphan_temp_files_of_a_killed_write_are_removed(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    orphan = tmp_path / "run" / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train(_cfg(tmp_path), tmp_path / "run")
    assert not orphan.exists()


def test_results_record_what_makes_them_comparable(tmp_path):
    results = train(_cfg(tmp_path), tmp_path / "run", overrides=["task=mackey_glass", "seed=0"])
    text = (tmp_path / "run" / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
    assert results["dataset"] == "mackey_glass" and results["seed"] == 0
    assert results["overrides"] == ["task=mackey_glass", "seed=0"]
    assert results["command"].startswith("plmu-train task=mackey_glass seed=0 hydra.run.dir=")
    assert results["torch_version"] == torch.__version__ and results["plmu_version"]
    assert results["device_name"] and "git_dirty" in results


def test_train_log_tells_the_story_without_progress_bars(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1", "trainer.progress=false"), tmp_path / "run")
    train(_cfg(tmp_path, "trainer.progress=false"), tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "run folder" in log and "parameters" in log and "data mackey_glass: train 2, val 2, test 4" in log
    assert "epoch 1/1:" in log and "epoch 2/2:" in log and "resumed from" in log and "done: test nrmse" in log


def test_nan_stop_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path, monkeypatch):
    nan_loss_on_call(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written"):
        train(_cfg(tmp_path), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_nan_stop_names_the_epoch_last_pt_holds(tmp_path, monkeypatch):
    nan_loss_on_call(monkeypatch, 2)  # one batch per epoch: the second epoch diverges
    with pytest.raises(NonFiniteLossError, match=r"last.pt holds epoch 1; best.pt holds epoch 1"):
        train(_cfg(tmp_path), tmp_path / "run")


def test_ctrl_c_says_what_the_folder_holds(tmp_path, monkeypatch):
    original = Trainer._train_epoch

    def interrupted_in_epoch_2(self, epoch, bar):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted_in_epoch_2)
    with pytest.raises(RunInterrupted, match=r"last.pt holds epoch 1"):
        train(_cfg(tmp_path), tmp_path / "run")
    assert "interrupted (Ctrl-C)" in (tmp_path / "run" / "train.log").read_text()


def test_check_resume_allows_where_and_how_but_not_what():
    saved = {"seed": 0, "data_dir": "/a", "trainer": {"max_epochs": 5, "device": "cpu"}, "logger": {"mode": "x"}}
    moved = {"seed": 0, "data_dir": "/b", "trainer": {"max_epochs": 9, "device": "cuda"}, "logger": {"mode": "y"}}
    check_resume(saved, moved, epoch=3, path="last.pt")
    with pytest.raises(ConfigError, match=r"extra: '<absent>' in the checkpoint, 1 now"):
        check_resume(saved, {**moved, "extra": 1}, epoch=3, path="last.pt")
    # A setting added to plmu since, at null (off: what the old run did), resumes; set to anything else, it differs.
    check_resume(saved, {**moved, "task": {"data": {"train_split": None}}}, epoch=3, path="last.pt")
    with pytest.raises(ConfigError, match=r"task.data.train_split: '<absent>' in the checkpoint, 'validation' now"):
        check_resume(saved, {**moved, "task": {"data": {"train_split": "validation"}}}, epoch=3, path="last.pt")
    assert flatten({"a": {"b": [1, {"c": 2}]}}) == {"a.b.0": 1, "a.b.1.c": 2}


def test_a_read_only_run_folder_is_refused_before_data(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    monkeypatch.setattr("plmu.train.run_folder.os.access", lambda path, mode: False)  # root ignores chmod
    with pytest.raises(RunFolderError, match=r"is not writable; choose another hydra.run.dir"):
        train(_cfg(tmp_path), tmp_path / "run")


def test_a_sweep_job_is_a_tracker_run_in_the_sweeps_group(tmp_path, monkeypatch):
    seen = {}

    def start(self, run_dir, config, run_name, group=None):
        seen.update(name=run_name, group=group)

    monkeypatch.setattr(NullLogger, "start", start)
    overrides = ["task=mackey_glass", "model.order=4"]
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run", overrides=overrides, group="mackey_glass-sweep")
    assert seen == {"name": "task=mackey_glass,model.order=4", "group": "mackey_glass-sweep"}
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "single")
    assert seen == {"name": "mackey_glass-single", "group": None}


def test_epoch_time_adds_up_over_attempts(tmp_path):
    train(_cfg(tmp_path, "trainer.max_epochs=1"), tmp_path / "run")
    results = train(_cfg(tmp_path), tmp_path / "run")
    seconds = [
        r["epoch_seconds"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").open()) if "epoch_seconds" in r
    ]
    assert results["epoch_seconds_total"] == pytest.approx(sum(seconds), abs=0.02)


def test_resume_may_find_local_text_files_elsewhere():
    saved = {"task": {"data": {"path": "/old/imdb", "vocab_size": 300}}}
    check_resume(saved, {"task": {"data": {"path": "/new/imdb", "vocab_size": 300}}}, epoch=1, path="last.pt")
    with pytest.raises(ConfigError, match=r"task.data.vocab_size: 300 in the checkpoint, 500 now"):
        check_resume(saved, {"task": {"data": {"path": "/new/imdb", "vocab_size": 500}}}, epoch=1, path="last.pt")


def test_a_failed_command_removes_only_the_empty_folder_it_made(tmp_path):
    import time

    older = tmp_path / "made_by_the_user"
    older.mkdir()
    started = time.time_ns()
    time.sleep(0.05)  # the file system's clock may be coarse
    assert not RunFolder(older).remove_if_created_since(started) and older.is_dir()  # the user's own: kept
    live, ours = tmp_path / "live_run", tmp_path / "ours"
    live.mkdir()
    ours.mkdir()
    with RunFolder(live):  # a live run holds it (still empty while it loads its data)
        assert not RunFolder(live).remove_if_created_since(started) and live.is_dir()
    (ours / "train.log").write_text("kept")
    assert not RunFolder(ours).remove_if_created_since(started)  # not empty: it holds something
    (ours / "train.log").unlink()
    assert RunFolder(ours).remove_if_created_since(started) and not ours.exists()
