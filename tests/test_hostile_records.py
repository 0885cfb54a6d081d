"""Issue 27's hostile cases: each one that once left a record silently wrong or destroyed, kept as a regression test.

A run's record (config.yaml, metrics.jsonl, results.json, checkpoints) is what a reproduction tool is trusted for:
no command may write over one it does not own, and no number may be recorded as something it is not.
"""

from pathlib import Path

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.errors import RunFolderError
from plmu.train import run as run_module
from plmu.train.run import train
from plmu.train.trainer import Trainer


def _cfg(tmp_path, *extra):
    return compose_config([*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", "trainer.max_epochs=1", *extra])


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_data(monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded: the check came too late"))


# 1. A run writes only into an empty folder, its own run folder, or a folder it created.


def test_a_folder_of_someone_elses_files_is_refused_and_left_as_it_is(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "config.yaml").write_text("mine\n")
    (mine / "metrics.jsonl").write_text("{}\n")
    torch.save({"weights": torch.ones(2)}, mine / "checkpoints" / "best.pt")
    before = _snapshot(mine)
    _no_data(monkeypatch)
    with pytest.raises(RunFolderError, match=r"not a plmu run's config .*hydra.run.dir="):
        train(_cfg(tmp_path), mine)
    assert _snapshot(mine) == before


def test_a_working_directory_full_of_files_is_refused(tmp_path, monkeypatch):
    """``hydra.run.dir=`` (empty) runs into the working directory."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("keep\n")
    (work / "train.log").write_text("my own log\n")
    _no_data(monkeypatch)
    with pytest.raises(RunFolderError, match=r"is not empty and holds no plmu run \(notes.txt\)"):
        train(_cfg(tmp_path), work)
    assert _snapshot(work) == {p.relative_to(work): p.read_bytes() for p in [work / "notes.txt", work / "train.log"]}


def test_an_early_attempt_of_another_run_is_not_mixed_with_a_new_one(tmp_path, monkeypatch):
    """A run that stopped before its first checkpoint (no last.pt, no results.json) takes only its own config again."""

    def stopped_in_first_epoch(self, epoch, bar):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", stopped_in_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path), tmp_path / "run")
    monkeypatch.undo()
    before = _snapshot(tmp_path / "run")
    _no_data(monkeypatch)
    with pytest.raises(RunFolderError, match=r"another run that stopped before its first checkpoint \(model"):
        train(_cfg(tmp_path, "model.hidden_size=6"), tmp_path / "run")
    assert _snapshot(tmp_path / "run") == before
    monkeypatch.undo()
    results = train(_cfg(tmp_path, "trainer.progress=false"), tmp_path / "run")  # its own config: it starts over
    assert results["best_epoch"] == 1 and (tmp_path / "run" / "checkpoints" / "last.pt").exists()


# 2, 3. No tool writes over a run's records or checkpoints.


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    for name in ("A", "B"):
        train(compose_config([*TINY_MACKEY_GLASS, "trainer.max_epochs=1", f"data_dir={root / 'data'}"]), root / name)
    return root / "A", root / "B"


def test_save_pretrained_never_writes_into_a_run_folder(two_runs, tmp_path):
    from plmu.hub import PlmuModel

    run_a, run_b = two_runs
    before = _snapshot(run_b), _snapshot(run_a)
    hub = PlmuModel.from_run(run_a)
    for target in (run_b, run_a, run_b / "checkpoints"):
        with pytest.raises(RunFolderError, match="is a plmu-train run folder"):
            hub.save_pretrained(target)
    assert (_snapshot(run_b), _snapshot(run_a)) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep\n")
    with pytest.raises(RunFolderError, match=r"holds files a save did not write \(notes.txt\)"):
        hub.save_pretrained(tmp_path / "mine")
    hub.save_pretrained(tmp_path / "hf")
    hub.save_pretrained(tmp_path / "hf")  # its own earlier save: replaced


@pytest.mark.parametrize("target", ["results.json", "metrics.jsonl", "checkpoints/best.pt", "eval_mine.json"])
def test_eval_and_export_outputs_never_land_on_another_runs_records(two_runs, target, capsys):
    from plmu.cli import eval as eval_cli
    from plmu.cli import export as export_cli

    run_a, run_b = two_runs
    before = _snapshot(run_b)
    assert eval_cli.main([str(run_a), "--mode", "parallel", "--no-progress", "--output", str(run_b / target)]) == 2
    assert "--output" in capsys.readouterr().err
    assert export_cli.main([str(run_a), "--output", str(run_b / target)]) == 2
    assert "--output" in capsys.readouterr().err
    assert _snapshot(run_b) == before


def test_a_report_into_its_own_run_folder_is_still_allowed(two_runs):
    from plmu.cli import eval as eval_cli

    run_a, _ = two_runs
    assert eval_cli.main([str(run_a), "--mode", "parallel", "--no-progress", "--output", str(run_a / "mine.json")]) == 0
    with pytest.raises(RunFolderError, match="record of the run"):
        from plmu.train.run_folder import refuse_writing_records

        refuse_writing_records(run_a / "results.json", run_a, "--output")


# 7. A card describes an unfinished run as what it is.


def test_the_card_of_an_unfinished_run_says_so(tmp_path, monkeypatch):
    from plmu.hub import PlmuModel

    original = Trainer._train_epoch
    calls = []

    def stopped_in_second_epoch(self, epoch, bar):
        calls.append(epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", stopped_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "trainer.max_epochs=3", "model=lstm", "model.hidden_size=4"), tmp_path / "run")
    monkeypatch.undo()
    hub = PlmuModel.from_run(tmp_path / "run", checkpoint="last")
    hub.save_pretrained(tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "an unfinished run" in card and "status: interrupted" in card and "no test was measured" in card
    assert "`last.pt` after epoch 1" in card and "(`model=lstm`)" in card
    assert f"parameters: {sum(p.numel() for p in hub.model.parameters())}" in card
    assert "None" not in card and "`?`" not in card


# 4. A test on part of the split is recorded as what it is and never enters a results table.


def test_a_limited_test_is_recorded_as_one_and_kept_out_of_tables(tmp_path, caplog):
    import json
    import logging

    from plmu.report import ReportError, collect

    caplog.set_level(logging.INFO, logger="plmu")
    full = train(_cfg(tmp_path, "task.data.n_series=12", "trainer.eval_batch_size=2"), tmp_path / "full")
    total = full["test_scored"]["of_batches"]
    assert full["test_limited"] is False and full["test_scored"]["batches"] == total >= 2
    assert json.loads((tmp_path / "full" / "results.json").read_text())["test_scored"]["examples"] > 2
    extra = ("task.data.n_series=12", "trainer.eval_batch_size=2", "trainer.limit_eval_batches=1")
    results = train(_cfg(tmp_path, *extra), tmp_path / "exp" / "run")
    assert results["test_limited"] is True
    assert results["test_scored"] == {"batches": 1, "of_batches": total, "examples": 2, "limit_eval_batches": 1}
    assert f"on 1 of {total} test batches (2 examples; trainer.limit_eval_batches=1): a limited test" in caplog.text
    experiments, _ = collect([tmp_path / "exp"])
    assert experiments[0].rows == [] and f"limited test: 1 of {total} batches" in experiments[0].others[0].label
    (tmp_path / "exp" / "results.yaml").write_text(
        "task: mackey_glass\ndata: x\nprotocol: p\nruns:\n  - dir: run\n    model: m\n"
    )
    with pytest.raises(ReportError, match=r"lists run, which is no result \(limited test"):
        collect([tmp_path / "exp"])


# 5. A sweep's table holds only its own jobs.


def _plmu_train(*args: str, cwd):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "plmu.cli.train", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


SWEEP_DIR = "hydra.sweep.dir=sw"


def test_a_job_resumed_alone_updates_its_own_sweep_not_a_later_one_in_the_folder(tmp_path):
    arguments = [*TINY_MACKEY_GLASS, "debug=quick", "logger=none", f"data_dir={tmp_path / 'data'}", SWEEP_DIR]
    assert _plmu_train("-m", *arguments, "seed=0,1", cwd=tmp_path).returncode == 0
    _plmu_train("-m", *arguments, "seed=5,6", cwd=tmp_path)  # both jobs refused: their folders hold seed 0's, 1's
    table = (tmp_path / "sw" / "summary.md").read_text()
    result = _plmu_train("resume=sw/0", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = (tmp_path / "sw" / "summary.md").read_text()
    row = next(line for line in after.splitlines() if line.startswith("| 0 |"))
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[2] == "seed=5" and cells[3].startswith("failed")  # the later sweep's own job, as it ended
    assert after.split("\n", 1)[1] == table.split("\n", 1)[1].replace("2 lines of earlier", "3 lines of earlier")


def test_a_failed_jobs_missing_folder_is_not_named_as_its_run_folder(tmp_path):
    arguments = [*TINY_MACKEY_GLASS, "debug=quick", "logger=none", f"data_dir={tmp_path / 'data'}", SWEEP_DIR]
    _plmu_train("-m", *arguments, "model.order=4,0", cwd=tmp_path)
    row = next(line for line in (tmp_path / "sw" / "summary.md").read_text().splitlines() if line.startswith("| 1 |"))
    assert not (tmp_path / "sw" / "1").exists() and row.endswith("| none (the job wrote nothing; 1 was not kept) |")


# 6. Local text data edited in place, size and modification time kept, is read as it is now.


def test_a_local_file_edited_in_place_with_its_mtime_kept_is_read_anew(tmp_path):
    import os

    from data.text_fixtures import IMDB_FEATURES, imdb_columns, write_parquet

    from plmu.data.text import load_raw

    columns = imdb_columns(40, seed=1)
    test_file = write_parquet(tmp_path / "imdb" / "plain_text" / "test-00000-of-00001.parquet", columns, IMDB_FEATURES)
    write_parquet(tmp_path / "imdb" / "plain_text" / "train-00000-of-00001.parquet", columns, IMDB_FEATURES)
    first = list(load_raw("imdb", tmp_path / "cache", tmp_path / "imdb", ("test",))["test"]["label"])
    stat = test_file.stat()
    flipped = {**columns, "label": [1 - label for label in columns["label"]]}
    write_parquet(test_file, flipped, IMDB_FEATURES)
    os.utime(test_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # touch -r: the cache's key as it was
    assert test_file.stat().st_size == stat.st_size
    again = list(load_raw("imdb", tmp_path / "cache", tmp_path / "imdb", ("test",))["test"]["label"])
    assert again == [1 - label for label in first]  # datasets alone keys its cache on (path, mtime): the old labels


# 8. Interruption and divergence told apart.


def test_ctrl_c_before_the_first_checkpoint_is_not_called_divergence(tmp_path, monkeypatch, capsys):
    import json

    from plmu.train.run_folder import RunInterrupted

    def interrupted(self, epoch, bar):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    with pytest.raises(RunInterrupted, match="it was interrupted before its first checkpoint") as stopped:
        train(_cfg(tmp_path), tmp_path / "run")
    assert "diverged" not in stopped.value.kept
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted" and "diverged" not in status["detail"]


def test_divergence_names_only_the_fixes_not_already_set(tmp_path, monkeypatch):
    from conftest import nan_loss_on_call

    from plmu.errors import NonFiniteLossError

    nan_loss_on_call(monkeypatch, when=1)
    with pytest.raises(NonFiniteLossError, match="it diverged before its first checkpoint") as diverged:
        train(_cfg(tmp_path, "trainer.precision=32", "trainer.grad_clip=1.0"), tmp_path / "run")
    assert "trainer.precision=32" not in str(diverged.value) and "grad_clip" not in str(diverged.value)
    assert "lower trainer.optimizer.lr" in str(diverged.value)


# Item 3: a record names the code that made it.


def test_a_run_from_a_modified_tree_keeps_the_difference_and_tables_mark_those_that_do_not(tmp_path, monkeypatch):
    import json
    import shutil

    from plmu.report import UNRECORDED_CODE_MARK, collect, results_table
    from plmu.train import provenance

    patch = "diff --git a/plmu/lti.py b/plmu/lti.py\n--- a/plmu/lti.py\n+++ b/plmu/lti.py\n@@ -1 +1 @@\n-a\n+b\n"
    monkeypatch.setattr(provenance, "git_state", lambda: {"git_commit": "0" * 40, "git_dirty": True})
    monkeypatch.setattr(provenance, "git_patch", lambda: patch)
    results = train(_cfg(tmp_path), tmp_path / "exp" / "run")
    assert results["git_dirty"] is True and results["git_patch"].startswith("code_")
    assert (tmp_path / "exp" / "run" / results["git_patch"]).read_text() == patch
    (tmp_path / "exp" / "results.yaml").write_text(
        "task: mackey_glass\ndata: x\nprotocol: p\nruns:\n  - dir: run\n    model: m\n  - dir: lost\n    model: m\n"
    )
    shutil.copytree(tmp_path / "exp" / "run", tmp_path / "exp" / "lost")
    (tmp_path / "exp" / "lost" / results["git_patch"]).unlink()  # a record from before the patch was kept
    lost = json.loads((tmp_path / "exp" / "lost" / "results.json").read_text())
    experiments, _ = collect([tmp_path / "exp"])
    table = results_table(experiments, tmp_path)
    rows = [line for line in table.splitlines() if "exp/" in line]
    assert UNRECORDED_CODE_MARK not in rows[0] and UNRECORDED_CODE_MARK in rows[1]
    assert "its commit alone is not the code that ran" in table and lost["git_patch"] == results["git_patch"]


# Poor cases: the command line, one line each.


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["hydra.run.dir=/proc/plmu-run"], "hydra.run.dir=/proc/plmu-run: cannot create it"),
        (["trainer.max_epochs=1,2"], "gives trainer.max_epochs several values (a sweep): add -m"),
        (["seed=range(0,2)"], "gives seed several values (a sweep): add -m"),
        (["--cfg", "job", "trainer.max_epoch=3"], "unknown key trainer.max_epoch: did you mean trainer.max_epochs"),
    ],
)
def test_command_line_mistakes_are_one_line(arguments, expected):
    from plmu.cli.preflight import command_line_problem

    problem = command_line_problem(["task=mackey_glass", *arguments])
    assert problem is not None and expected in problem and "\n" not in problem


def test_a_sweep_with_m_and_showing_flags_pass_the_preflight():
    from plmu.cli.preflight import command_line_problem

    assert command_line_problem(["-m", "task=mackey_glass", "seed=0,1"]) is None
    assert command_line_problem(["--cfg", "job", "--resolve", "task=mackey_glass", "trainer.max_epochs=3"]) is None


# Poor cases: the memory check comes before the model is allocated, and knows the splits it can.


def test_a_model_too_large_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    from plmu.errors import ConfigError

    real_build = run_module.build_model

    def build(cfg, *args, **kwargs):
        model = real_build(cfg, *args, **kwargs)
        assert next(model.parameters()).device.type == "meta", "the real model was built before the check"
        return model

    monkeypatch.setattr(run_module, "build_model", build)
    _no_data(monkeypatch)
    with pytest.raises(ConfigError, match=r"this run needs about .* GiB"):
        train(_cfg(tmp_path, "model.hidden_size=100000"), tmp_path / "run")


def test_the_estimate_caps_a_batch_at_the_splits_the_config_states():
    from plmu.train.peak_memory import estimate

    config = _cfg(Path("/tmp"), "trainer.batch_size=100000")
    from omegaconf import OmegaConf

    found = estimate(OmegaConf.to_container(config, resolve=True), 1000)
    assert found.batch == 2 and found.eval_batch == 4  # TINY_MACKEY_GLASS: 8 series, 2 train, 2 val, 4 test


# Poor cases: a sweep stopped by SIGTERM lists every job, and one command resumes it.


def test_a_sweep_stopped_mid_job_lists_every_job_and_resumes_with_one_command(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    small = [*TINY_MACKEY_GLASS, "logger=none", f"data_dir={tmp_path / 'data'}", "trainer.progress=false"]
    arguments = ["-m", *small, "trainer.max_epochs=100000", "seed=0,1,2", SWEEP_DIR]
    process = subprocess.Popen(
        [sys.executable, "-m", "plmu.cli.train", *arguments], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (tmp_path / "sw" / "0" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    hint = stderr.strip().splitlines()[-1]
    assert "the sweep was interrupted at job 0; 3 of its jobs are not finished" in hint
    rows = [line for line in (tmp_path / "sw" / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert "| 0 | seed=0 | interrupted: " in rows[1] and "| 1 | seed=1 | not run |" in rows[2] and len(rows) == 4
    command = hint.split("Resume them all with: plmu-", 1)[1].split()
    assert command[0] == "train" and "seed=0,1,2" in command and "hydra.sweep.dir=sw" in command
    assert os.path.isdir(tmp_path / "sw" / "0") and not (tmp_path / "sw" / "1").exists()


# Poor cases: resume and signals.


@pytest.mark.parametrize("signals", [("SIGINT", "SIGINT", "SIGINT"), ("SIGHUP",)])
def test_repeated_ctrl_c_and_sighup_end_as_one_interruption(tmp_path, signals):
    import json
    import signal
    import subprocess
    import sys
    import time

    arguments = [*TINY_MACKEY_GLASS, "logger=none", f"data_dir={tmp_path / 'data'}", "trainer.progress=false",
                 "trainer.max_epochs=100000", "hydra.run.dir=run"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "plmu.cli.train", *arguments], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    for name in signals:
        process.send_signal(getattr(signal, name))
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Resume with: plmu-train resume=run" in stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "interrupted"


def test_resuming_with_another_task_names_the_task_first(tmp_path):
    from plmu.errors import ConfigError

    train(_cfg(tmp_path), tmp_path / "run")
    other = compose_config(["task=psmnist", f"data_dir={tmp_path / 'data'}", "trainer.resume=auto"])
    with pytest.raises(ConfigError, match=r"different config \(task.name: 'mackey_glass' in the checkpoint, 'psmnist'"):
        train(other, tmp_path / "run")


def test_a_results_json_without_last_pt_says_the_run_cannot_be_resumed(tmp_path):
    train(_cfg(tmp_path), tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()
    with pytest.raises(RunFolderError, match=r"no checkpoints/last.pt .*init_from=.*best.pt") as refused:
        train(_cfg(tmp_path, "trainer.max_epochs=2"), tmp_path / "run")
    assert "trainer.resume=auto" not in str(refused.value)


def test_a_corrupt_data_info_is_not_taken_for_an_older_runs(tmp_path):
    train(_cfg(tmp_path), tmp_path / "run")
    (tmp_path / "run" / "data_info.json").write_text('{"fingerprint": ')
    with pytest.raises(RunFolderError, match=r"data_info\.json cannot be read"):
        train(_cfg(tmp_path, "trainer.max_epochs=2"), tmp_path / "run")
    assert (tmp_path / "run" / "data_info.json").read_text() == '{"fingerprint": '


def test_a_relative_data_path_says_what_it_is_relative_to(tmp_path, monkeypatch):
    from plmu.data.text import load_raw
    from plmu.errors import DataNotFoundError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError, match=f"relative to the working directory {tmp_path}"):
        load_raw("imdb", tmp_path / "cache", "data/imdb")


# Poor cases: local text files that cannot be used, one line with the reason.


def _imdb_folder(tmp_path, train: bytes, suffix: str):
    folder = tmp_path / "imdb"
    folder.mkdir()
    (folder / f"train{suffix}").write_bytes(train)
    (folder / f"test{suffix}").write_bytes(b'{"text": "fine", "label": 1}\n' if suffix == ".jsonl" else train)
    return folder


@pytest.mark.parametrize(
    ("content", "suffix", "reason"),
    [
        (b'{"text": "a", "label": 1}\n{"text": "b", "lab', ".jsonl", r"could not read .*train.jsonl \(\S"),
        (bytes(range(256)) * 4, ".jsonl", r"could not read .*\('utf-8' codec can't decode"),
        (b"", ".jsonl", r"train.jsonl is empty \(0 bytes\)"),
        (b"", ".parquet", r"train.parquet is empty \(0 bytes\)"),
        (b"not a parquet file at all" * 20, ".parquet", r"Parquet magic bytes not found"),
        (b'text,label\n"abc,1\nxyz,0\n', ".csv", r"EOF inside string"),
        (b'{"text": "a", "label": 1}\n{"text": "b", "label": "pos"}\n', ".jsonl", r"'label' holds mixed values"),
        (b'{"text": 5, "label": 1}\n{"text": 6, "label": 0}\n', ".jsonl", r"'text' holds integers, not text"),
    ],
)
def test_unusable_local_text_files_are_one_line_with_the_reason(tmp_path, capsys, content, suffix, reason):
    from plmu.data.text import clean, load_raw, resolve_task
    from plmu.errors import DataError

    folder = _imdb_folder(tmp_path, content, suffix)
    with pytest.raises(DataError, match=reason) as refused:
        raw = load_raw("imdb", tmp_path / "cache", folder, ("train",))
        clean(raw["train"], resolve_task("imdb"), "train", labelled=True)
    assert "An error occurred while generating" not in str(refused.value) and "\n" not in str(refused.value)
    printed = capsys.readouterr().err
    assert "[ERROR]" not in printed and "Failed to" not in printed  # datasets' own error line, kept quiet


def test_a_parquet_with_no_rows_is_called_empty_not_unreadable(tmp_path):
    from data.text_fixtures import IMDB_FEATURES, write_parquet

    from plmu.data.text import load_raw
    from plmu.errors import DataError

    write_parquet(tmp_path / "imdb" / "train.parquet", {"text": [], "label": []}, IMDB_FEATURES)
    with pytest.raises(DataError, match=r"train.parquet: no rows \(an empty 'train' split\)"):
        load_raw("imdb", tmp_path / "cache", tmp_path / "imdb", ("train",))


# Poor cases: the Python API and the tools.


@pytest.mark.parametrize(("device", "said"), [("banana", "not a device plmu runs on"), ("cuda:7", "cuda:7: ")])
def test_load_run_names_a_bad_device_in_one_line(two_runs, device, said):
    import plmu
    from plmu.errors import ConfigError

    with pytest.raises(ConfigError, match=f"device={device}: .*"):
        plmu.load_run(two_runs[0], device=device)


def test_export_config_and_checkpoint_mistakes_are_one_line(two_runs, tmp_path, capsys):
    from plmu.cli import export as export_cli

    assert export_cli.main(["--config", "model=mamba", "--output", str(tmp_path / "s.pt2")]) == 2
    err = capsys.readouterr().err
    assert "model=mamba: no such model config; choose one of" in err and "search path" not in err
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert export_cli.main([str(two_runs[0]), "--checkpoint", str(script), "--output", str(tmp_path / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint (not a PyTorch file)" in err and "Delete it" not in err
    assert script.read_text() == "#!/bin/sh\necho hi\n"


def test_a_saved_models_weights_are_as_readable_as_its_other_files(two_runs, tmp_path):
    import os
    import stat

    from plmu.hub import PlmuModel

    PlmuModel.from_run(two_runs[0]).save_pretrained(tmp_path / "hf")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "hf").iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes["model.safetensors"] == modes["run_config.yaml"] == 0o666 & ~umask


def test_plmu_eval_off_a_terminal_prints_no_data_bars(tmp_path, capsys):
    import shutil

    import datasets
    from data.text_fixtures import write_imdb

    from plmu.cli import eval as eval_cli

    overrides = ["task=imdb", f"task.data.path={write_imdb(tmp_path / 'imdb')}", f"data_dir={tmp_path / 'data'}",
                 "task.data.vocab_size=300", "model.hidden_size=8", "trainer.max_epochs=1",
                 "trainer.batch_size=16"]  # fmt: skip
    train(compose_config(overrides), tmp_path / "run")
    shutil.rmtree(tmp_path / "data" / "hf" / "local")  # the split is generated again: its bar would show
    datasets.enable_progress_bars()  # as in a fresh process
    capsys.readouterr()
    assert eval_cli.main([str(tmp_path / "run"), "--mode", "parallel", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "Generating" not in err and "examples/s" not in err and "it/s" not in err


def test_the_fix_for_a_changed_resume_is_a_command_that_works(tmp_path):
    from plmu.errors import ConfigError

    train(_cfg(tmp_path), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"Resume with the checkpoint's values \(plmu-train resume=\S+ seed=0\)"):
        train(_cfg(tmp_path, "seed=9", "trainer.max_epochs=2"), tmp_path / "run")
    train(_cfg(tmp_path, "seed=0", "trainer.max_epochs=2"), tmp_path / "run")  # what the line says: it resumes


def test_a_data_warning_said_before_train_log_opens_is_in_it(tmp_path):
    from data.text_fixtures import IMDB_FEATURES, imdb_columns, write_parquet

    columns = imdb_columns(60, seed=1)
    columns["text"][3] = ""  # dropped with a warning while the data loads, before the run folder is written
    write_parquet(tmp_path / "imdb" / "train.parquet", columns, IMDB_FEATURES)
    write_parquet(tmp_path / "imdb" / "test.parquet", imdb_columns(20, seed=2), IMDB_FEATURES)
    overrides = ["task=imdb", f"task.data.path={tmp_path / 'imdb'}", f"data_dir={tmp_path / 'data'}",
                 "task.data.vocab_size=300", "model.hidden_size=8", "trainer.max_epochs=1", "trainer.batch_size=16",
                 "task.data.val_size=10"]  # fmt: skip
    train(compose_config(overrides), tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "dropped 1 row(s) with an empty text" in log.splitlines()[0]
