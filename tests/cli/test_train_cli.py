"""plmu-train as a user runs it: a subprocess, from another folder, offline."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_MACKEY_GLASS, write_idx_mnist
from omegaconf import OmegaConf

from plmu.data.psmnist import permutations


def plmu_train(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "plmu.cli.train", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_quick_mackey_glass_from_any_folder(tmp_path):
    result = plmu_train(
        "task=mackey_glass", "debug=quick", f"data_dir={tmp_path / 'data'}", *TINY_MACKEY_GLASS[1:6], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (results_file,) = (tmp_path / "outputs" / "mackey_glass" / "plmu").glob("*/results.json")
    assert json.loads(results_file.read_text())["epochs"] == 1


def test_multirun_runs_every_combination(tmp_path):
    result = plmu_train(
        "-m",
        *TINY_MACKEY_GLASS,
        "debug=quick",
        f"data_dir={tmp_path / 'data'}",
        "model.order=2,3",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    runs = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert len(runs) == 2
    assert [OmegaConf.load(r.parent / "config.yaml").model.order for r in runs] == [2, 3]


def test_unknown_task_or_model_is_one_line_listing_the_choices(tmp_path):
    result = plmu_train("task=psmnits", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("plmu-train: error: task=psmnits: no such task config; choose one of: ")
    assert "mackey_glass" in result.stderr and "psmnist" in result.stderr
    result = plmu_train("-m", "model=plmu,mamba", cwd=tmp_path)  # issue 16: Hydra's multi-line error before
    assert result.returncode == 2 and "model=mamba: no such model config; choose one of: gru, lstm, " in result.stderr


def test_an_interpolation_that_does_not_resolve_is_one_line(tmp_path):
    """Issue 16: Hydra's traceback (8 lines; 69 for oc.env), raised while reading the overrides themselves."""
    for override, line in (
        ("seed=${oc.env:PLMU_NO_SUCH_VARIABLE}", "seed cannot be resolved: "),
        ("trainer.batch_size=${nonexist}", "trainer.batch_size cannot be resolved: Interpolation key 'nonexist'"),
    ):
        result = plmu_train("task=mackey_glass", override, cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"plmu-train: error: {line}")


def test_typo_key_is_one_line_with_did_you_mean(tmp_path):
    """Issue 16: Hydra's 6-line "Could not override", no suggestion; the other cases: tests/cli/test_preflight.py."""
    result = plmu_train("task=mackey_glass", "model.ordr=4", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("plmu-train: error: unknown key model.ordr: did you mean model.order?")
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a folder


def test_negative_theta_is_a_one_line_error(tmp_path):
    result = plmu_train("task=mackey_glass", "model.theta=-4", f"data_dir={tmp_path / 'none'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("plmu-train: error: model.theta must be a positive")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "none").exists()  # no data was touched


def test_missing_mnist_offline_says_where_to_put_it(tmp_path):
    result = plmu_train(
        "task=psmnist", f"data_dir={tmp_path / 'empty'}", "logger=none", cwd=tmp_path, env={"HF_DATASETS_OFFLINE": "1"}
    )
    assert result.returncode == 2
    assert f"mnist not found in {tmp_path / 'empty'}/MNIST/raw and offline" in result.stderr
    assert "Traceback" not in result.stderr


def test_psmnist_train_then_eval_recurrent_reproduces_the_test_metric(tmp_path):
    write_idx_mnist(tmp_path / "data", n_train=120, n_test=40)
    run_dir = tmp_path / "run"
    result = plmu_train(
        "task=psmnist",
        f"data_dir={tmp_path / 'data'}",
        "task.data.val_size=20",
        "trainer.batch_size=20",
        "model.order=32",
        "model.hidden_size=16",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["parameters"] == 16 * 32 + 16 + 16 + 2 + 16 * 10 + 10
    pixel_order = json.loads((run_dir / "data_info.json").read_text())["pixel_order"]
    assert pixel_order == permutations(120)[1].tolist()  # the permutation is stored with the run

    evaluation = subprocess.run(
        [sys.executable, "-m", "plmu.cli.eval", str(run_dir)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert report["mode"] == "recurrent" and report["samples"] == 40
    # the same predictions up to float32 rounding: at most a near-tie could flip one of the 40 test samples
    assert abs(report["value"] - results["test"]) <= 1 / 40
    assert report["max_abs_difference_recurrent_vs_parallel"] < 1e-4
    assert (run_dir / "eval_recurrent_test.json").exists()


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "plmu.cli.train", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_started_together_get_two_folders(tmp_path):
    args = ("task=mackey_glass", "debug=quick", f"data_dir={tmp_path / 'data'}", *TINY_MACKEY_GLASS[1:6])
    plmu_train(*args, cwd=tmp_path)  # generate the data once, so both start at once below
    first, second = _start(*args, cwd=tmp_path), _start(*args, cwd=tmp_path)
    assert first.wait(300) == 0 and second.wait(300) == 0
    assert len(list((tmp_path / "outputs" / "mackey_glass" / "plmu").glob("*/results.json"))) == 3


def test_a_run_folder_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = (*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}")
    first = _start(*args, "trainer.max_epochs=500", cwd=tmp_path)
    deadline = time.time() + 120
    while not (run_dir / "train.log").exists() and time.time() < deadline:
        time.sleep(0.2)
    second = plmu_train(*args, "trainer.max_epochs=500", cwd=tmp_path)
    first.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT) or a cluster's pre-emption
    first_err = first.communicate(timeout=120)[1]
    assert second.returncode == 2
    assert f"plmu-train: error: run folder {run_dir} is in use by another plmu-train process" in second.stderr
    # Ctrl-C: one line saying what the folder holds and the command that resumes it
    assert first.returncode == 130 and "Traceback" not in first_err
    line = first_err.strip().splitlines()[-1]
    # the folder as seen from the working directory (tmp_path): the same command from the same place anywhere
    assert line.startswith("plmu-train: interrupted.") and line.endswith(
        f"hydra.run.dir={run_dir.relative_to(tmp_path)})"
    )
    assert f"Resume with: plmu-train resume={run_dir.relative_to(tmp_path)} (that is: plmu-train " in line


def test_a_refusal_leaves_a_live_runs_folder_and_the_users_own_folder(tmp_path):
    from plmu.train.run_folder import RunFolder

    run_dir = tmp_path / "run"
    args = (*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}")
    with RunFolder(run_dir):  # another process's live run, still loading its data (the folder empty)
        refused = plmu_train(*args, cwd=tmp_path)
        assert refused.returncode == 2 and "is in use by another plmu-train process" in refused.stderr
        assert run_dir.is_dir()  # issue 16: the refusal removed it, and a third run could then take the path
    bad = plmu_train(*args, "model.theta=-1", cwd=tmp_path)  # the user made the (empty) folder before this
    assert bad.returncode == 2 and run_dir.is_dir()


def test_a_bad_job_does_not_stop_the_sweep(tmp_path):
    result = plmu_train(
        "-m",
        *TINY_MACKEY_GLASS,
        "debug=quick",
        f"data_dir={tmp_path / 'data'}",
        "model.theta=-1,4",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert (tmp_path / "sweep" / "1" / "results.json").exists()  # the good job ran after the bad one
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "| 0 | " in summary and "failed: model.theta must be" in summary
    assert "| 1 | " in summary and "| ok |" in summary
    assert "1 failed: jobs [0]" in result.stdout + result.stderr
    # the jobs' records name their folders inside the sweep's, so a committed sweep reads the same anywhere
    assert [json.loads(line)["run_dir"] for line in (tmp_path / "sweep" / "jobs.jsonl").read_text().splitlines()] == [
        "0",
        "1",
    ]


def test_a_sweep_job_resumed_alone_brings_its_sweeps_table_up_to_date(tmp_path):
    # e.g. a job the kernel killed, finished later with resume=<sweep>/<n>: summary.md must not keep its old status
    sweep = tmp_path / "sweep"
    arguments = [*TINY_MACKEY_GLASS, "debug=quick", f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    assert plmu_train("-m", *arguments, "model.order=2,3", cwd=tmp_path).returncode == 0
    sweep_id = json.loads((sweep / "sweep.json").read_text())["sweep"]
    result = plmu_train("resume=sweep/1", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads((sweep / "1" / "results.json").read_text())
    assert results["epochs"] == 2
    last = json.loads((sweep / "jobs.jsonl").read_text().splitlines()[-1])
    assert (last["job"], last["sweep"], last["epochs"], last["test"], last["alone"]) == (
        1, sweep_id, 2, results["test"], True,
    )  # fmt: skip
    assert "trainer.max_epochs=2" in last["overrides"] and "model.order=3" in last["overrides"]
    row = next(line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("| 1 |"))
    assert "| ok (run alone) |" in row and f"| {results['test']:.6g} |" in row
    assert not (tmp_path / "outputs").exists()  # the run stayed in the job's folder


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "seed"),
        ("trainer.compile=maybe", "trainer.compile"),
        ("+trainer.max_epoch=2", "trainer.max_epoch"),
        ("trainer.device=tpu", "trainer.device"),
        ("logger.mode=bogus", "logger.mode"),
    ],
)
def test_bad_types_and_keys_are_one_line_before_data(override, message, tmp_path):
    result = plmu_train("task=mackey_glass", override, f"data_dir={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("plmu-train: error: ") and message in last
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "outputs").exists()  # issue 16: not even the empty outputs/mackey_glass/plmu/ tree


def test_a_failed_command_keeps_the_output_folders_that_were_there(tmp_path):
    """Issue 16: the empty parents a failed command made go; those that existed before it (empty or not) stay."""
    mine = tmp_path / "outputs" / "mackey_glass" / "plmu"
    mine.mkdir(parents=True)
    result = plmu_train("task=mackey_glass", "seed=abc", f"data_dir={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert mine.is_dir() and not list(mine.iterdir())
    result = plmu_train("task=mackey_glass", "seed=abc", f"hydra.run.dir={tmp_path}/a/b/run", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "a").exists(), result.stderr
    (tmp_path / "a").mkdir()
    result = plmu_train("task=mackey_glass", "seed=abc", f"hydra.run.dir={tmp_path}/a/b/run", cwd=tmp_path)
    assert result.returncode == 2 and (tmp_path / "a").is_dir() and not (tmp_path / "a" / "b").exists()


def test_help_does_not_import_torch(tmp_path):
    code = "import sys; sys.argv = ['plmu-train', '--help']\nfrom plmu.cli.train import main\ntry:\n    main()\n"
    code += "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "plmu-train -m" in result.stdout


def test_a_run_folder_hydra_could_not_create_is_one_line(tmp_path):
    """Issue 16: hydra.run.dir=<a file> ended in Hydra's mkdir traceback, before plmu's checks."""
    from plmu.cli.preflight import unusable_output_folder

    afile = tmp_path / "afile"
    afile.write_text("")
    assert unusable_output_folder([f"hydra.run.dir={afile}"]) == (
        f"hydra.run.dir={afile} is a file, not a folder: choose a folder for the run"
    )
    assert f"{afile} is a file" in unusable_output_folder([f"hydra.sweep.dir={afile}/sweep"])
    assert unusable_output_folder([f"hydra.run.dir={tmp_path}/new/run", "hydra.run.dir=${now:%H}"]) is None


def test_resume_in_one_word(tmp_path):
    """Issue 18: `plmu-train resume=<run folder>` re-runs the saved overrides into the same folder; a later argument
    of the same key replaces the saved one (here: a longer run); a refused resume names that command."""
    tiny = [*TINY_MACKEY_GLASS[:6], "model.order=2", "model.theta=4", "logger=none", "trainer.progress=false"]
    run = tmp_path / "run"
    result = plmu_train(*tiny, "trainer.max_epochs=1", f"data_dir={tmp_path / 'data'}", f"hydra.run.dir={run}",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = plmu_train(f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plmu-train: resuming with: task=mackey_glass" in result.stderr and f"hydra.run.dir={run}" in result.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 2
    assert "trainer.max_epochs=2" in (run / ".hydra" / "overrides.yaml").read_text()  # the next resume extends it
    refused = plmu_train(*tiny, "trainer.max_epochs=2", "model.order=3", f"data_dir={tmp_path / 'data'}",
                         f"hydra.run.dir={run}", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2 and "(plmu-train resume=run model.order=2)" in refused.stderr, refused.stderr
    for arguments, message in (
        ([f"resume={tmp_path / 'nothing'}"], f"resume={tmp_path / 'nothing'}: no such run folder"),
        ([f"resume={tmp_path / 'data'}"], "overrides.yaml is missing or unreadable"),
        ([f"resume={run}", f"hydra.run.dir={run}"], "already names the folder: drop hydra.run.dir"),
        (["-m", f"resume={run}"], "cannot be combined with -m"),
        (["resume="], "resume= needs a run folder"),
    ):
        result = plmu_train(*arguments, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_run_killed_without_a_word_says_so_and_resumes(tmp_path):
    """Issue 18: kill -9 (the kernel's out-of-memory killer) writes nothing; status.json still says running, with
    the process gone, and the next attempt says what happened before it resumes."""
    import signal

    run = tmp_path / "run"
    args = (*TINY_MACKEY_GLASS, "task.data.steps=2000", "trainer.max_epochs=200", f"data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={run}")  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "plmu.cli.train", *args], cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "running" and status["pid"] == first.pid and "killed without a word" in status["note"]
    resumed = plmu_train(f"resume={run}", cwd=tmp_path)  # on to its 200 epochs (a few seconds)
    assert resumed.returncode == 0, resumed.stderr
    assert f"process {first.pid} stopped while training" in (run / "train.log").read_text()
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_the_default_wandb_logger_is_quiet(tmp_path):
    """Issue 18: wandb printed about 30 lines a run; its console output is off unless logger.quiet=false, and plmu's
    log says where the offline run is and how to upload it."""
    args = (*[a for a in TINY_MACKEY_GLASS if a != "logger=none"], "logger=wandb", "trainer.max_epochs=1",
            f"data_dir={tmp_path / 'data'}")  # fmt: skip
    env = {"WANDB_MODE": "offline"}
    result = plmu_train(*args, f"hydra.run.dir={tmp_path / 'quiet'}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    wandb_lines = [line for line in (result.stdout + result.stderr).splitlines() if "wandb:" in line]
    assert len(wandb_lines) == 1 and "wandb: offline run in" in wandb_lines[0] and "wandb sync" in wandb_lines[0]
    loud = plmu_train(*args, "logger.quiet=false", f"hydra.run.dir={tmp_path / 'loud'}", cwd=tmp_path, env=env)
    lines = (loud.stdout + loud.stderr).splitlines()
    assert loud.returncode == 0 and sum("wandb:" in line for line in lines) > 5, loud.stderr
