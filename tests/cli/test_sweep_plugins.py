"""Sweeps through Hydra's plugins (the `sweep` extra): the joblib launcher (`hydra/launcher=local`), the Slurm
launcher (`hydra/launcher=slurm`) and the Optuna sweeper (`hparams_search=<task>`), with plmu's bookkeeping
(jobs.jsonl, summary.md) intact. Tests that need a plugin skip without it; the last ones test plmu/cli/sweep.py
alone."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_MACKEY_GLASS
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from plmu.cli.sweep import SweepSummary, read_jobs, record_job, summary_table

CONF = Path(__file__).resolve().parents[2] / "conf"
SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))


def plmu_train(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "plmu.cli.train", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def composed(*overrides: str):
    with initialize_config_module("plmu.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def tiny(tmp_path: Path) -> list[str]:
    """A Mackey-Glass run of a second or two: TINY_MACKEY_GLASS, one epoch of 3 batches, data under tmp_path."""
    return [*TINY_MACKEY_GLASS, "debug=quick", f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


# ----- configs ------------------------------------------------------------------------------------------------------


def test_local_launcher_is_joblib_with_plmus_defaults():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    launcher = composed("hydra/launcher=local").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2
    assert composed("hydra/launcher=local", "hydra.launcher.n_jobs=4").hydra.launcher.n_jobs == 4
    assert composed("hydra/launcher=joblib").hydra.launcher.n_jobs == -1  # the plugin's own option is untouched


def test_slurm_launcher_takes_the_partition_from_the_environment_and_the_command_line(monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.delenv("PLMU_SLURM_PARTITION", raising=False)
    launcher = composed("hydra/launcher=slurm", "task=psmnist").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.max_num_timeout > 0  # a job at its time limit is requeued and resumes from last.pt
    assert launcher.partition is None and launcher.name == "plmu-psmnist"
    monkeypatch.setenv("PLMU_SLURM_PARTITION", "gpu_a100")
    assert composed("hydra/launcher=slurm").hydra.launcher.partition == "gpu_a100"
    launcher = composed("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=30")
    assert (launcher.hydra.launcher.partition, launcher.hydra.launcher.timeout_min) == ("debug", 30)


def _distribution(text: str):
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    return create_optuna_distribution_from_override(OverridesParser.create().parse_override(f"key={text}"))


@pytest.mark.parametrize("name", SEARCHES)
def test_each_search_optimises_its_tasks_metric_around_its_defaults(name):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    header = (CONF / "hparams_search" / f"{name}.yaml").read_text()
    for label in ("Command:  plmu-train -m hparams_search=", "Searches:", "Metric:", "Results:"):
        assert label in header, f"conf/hparams_search/{name}.yaml's comment lacks {label!r}"
    cfg = composed(f"hparams_search={name}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.task.name == name
    objective = instantiate(cfg.task.objective)
    assert sweeper.direction == ("maximize" if objective.higher_is_better else "minimize"), objective.metric
    assert {"trainer.optimizer.lr", "model.order", "model.theta"} <= set(sweeper.params)
    for key, text in sweeper.params.items():
        default = OmegaConf.select(cfg, key, default="absent")
        assert default != "absent", f"{name}: the search names {key}, which the config lacks"
        distribution = _distribution(text)
        if hasattr(distribution, "choices"):
            assert default in distribution.choices, (key, default, text)
        else:  # the task's own setting lies inside the searched interval
            assert distribution.low <= default <= distribution.high, (key, default, text)
    lr = _distribution(sweeper.params["trainer.optimizer.lr"])
    assert type(lr).__name__ == "LogUniformDistribution"


# ----- runs ---------------------------------------------------------------------------------------------------------


def test_optuna_search_runs_its_trials_and_names_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = plmu_train("-m", "hparams_search=mackey_glass", "hydra.sweeper.n_trials=2", *tiny(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = read_jobs(sweep)
    assert sorted(jobs) == [0, 1] and all(job["status"] == "ok" for job in jobs.values())
    assert all((sweep / str(n) / "results.json").is_file() for n in jobs)
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    values = {n: job["best_val"] for n, job in jobs.items()}
    assert results.best_value == min(values.values())  # NRMSE: minimised; the trial's value is plmu-train's return
    best_job = min(values, key=values.get)
    assert f"Optuna's best trial: job {best_job}," in (sweep / "summary.md").read_text()
    sampled = json.loads((sweep / str(best_job) / "results.json").read_text())["overrides"]
    assert f"trainer.optimizer.lr={results.best_params['trainer.optimizer.lr']}" in sampled


def test_parallel_optuna_trials_with_joblib_record_a_failed_trial_and_finish(tmp_path):
    # plmu-train must return None, not NaN, for a failed job: hydra-optuna-sweeper passes a NaN to study.tell, then
    # mishandles optuna's refusal and ends the whole search without its results (nor summary.md).
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = ["-m", "hparams_search=mackey_glass", "hydra/launcher=local", "hydra.sweeper.n_jobs=2"]
    result = plmu_train(*args, "hydra.sweeper.n_trials=2", "model.theta=choice(-1,4)", *tiny(tmp_path), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Joblib.Parallel(n_jobs=2," in output and "is launching 2 jobs" in output  # one batch of both trials
    sweep = tmp_path / "sweep"
    jobs = read_jobs(sweep)  # written by the joblib workers
    assert sorted(job["status"] for job in jobs.values()) == ["failed", "ok"], output[-3000:]  # TPE, seed 0
    assert result.returncode == 1  # a sweep with a failed job says so, after it has finished
    (ok,) = (n for n, job in jobs.items() if job["status"] == "ok")
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == jobs[ok]["best_val"]
    summary = (sweep / "summary.md").read_text()
    assert "failed: model.theta must be" in summary and f"Optuna's best trial: job {ok}," in summary


@pytest.mark.skipif(os.name != "posix", reason="a fake sbatch script")
def test_slurm_sweep_submits_one_array_job_per_point_with_a_gpu_each(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    bin_dir = tmp_path / "bin"  # no cluster here: sbatch keeps the script it is given and refuses it
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$SBATCH_CAPTURE"\necho "sbatch: refused (test)" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun before it submits
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "submitted.sh"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SBATCH_CAPTURE": str(script),
        "PLMU_SLURM_PARTITION": "gpu_test",
    }
    args = ["-m", "hydra/launcher=slurm", "seed=0,1,2", "hydra.launcher.timeout_min=30"]
    result = plmu_train(*args, *tiny(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode != 0 and "sbatch: refused (test)" in result.stderr
    text = script.read_text()
    for line in (
        "--array=0-2%",
        "--gpus-per-node=1",
        "--partition=gpu_test",
        "--time=30",
        "--job-name=plmu-mackey_glass",
    ):
        assert f"#SBATCH {line}" in text, (line, text)
    assert f"--output={tmp_path / 'sweep' / '.submitit'}" in text  # Slurm's logs go into the sweep folder


# ----- the bookkeeping alone ----------------------------------------------------------------------------------------


def test_a_non_finite_metric_is_recorded_as_null(tmp_path):
    record_job(tmp_path, {"job": 0, "overrides": [], "status": "ok", "best_val": float("nan"), "test": float("inf")})
    assert read_jobs(tmp_path)[0]["best_val"] is None and read_jobs(tmp_path)[0]["test"] is None


def test_a_crashed_job_is_recorded_and_the_summary_refreshed(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()  # a job still running: a folder, no line yet
    config = OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(tmp_path)},
                "job": {"num": 0},
                "overrides": {"task": ["model.order=4"]},
                "runtime": {"output_dir": str(tmp_path / "0")},
            }
        }
    )
    crashed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("CUDA error: out of memory"))
    SweepSummary().on_job_end(config, crashed)
    assert read_jobs(tmp_path)[0]["status"] == "crashed"
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0 | model.order=4 | crashed: RuntimeError: CUDA error: out of memory |" in summary
    assert "| 1 |  | no record yet (running, or killed) |" in summary
    assert summary_table(tmp_path)[1] == [0, 1]


def test_single_runs_leave_no_sweep_files(tmp_path):
    config = OmegaConf.create({"hydra": {"mode": RunMode.RUN, "sweep": {"dir": str(tmp_path)}}})
    SweepSummary().on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
    assert list(tmp_path.iterdir()) == []


def test_a_reused_sweep_dir_shows_the_current_sweeps_jobs(tmp_path):
    """Issue 16: a second sweep in the same folder appended to jobs.jsonl without an id; job 0 showed as both ok
    (the first sweep) and failed (the second), and the table mixed the two."""
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": "basic"}}})
    SweepSummary().on_multirun_start(config)
    first = json.loads((tmp_path / "sweep.json").read_text())["sweep"]
    for job in (0, 1):
        (tmp_path / str(job)).mkdir()
        record_job(tmp_path, {"job": job, "overrides": [f"seed={job}"], "status": "ok", "best_val": 0.5})
    time.sleep(0.01)
    SweepSummary().on_multirun_start(config)  # the same folder again
    second = json.loads((tmp_path / "sweep.json").read_text())["sweep"]
    assert second != first
    record_job(tmp_path, {"job": 0, "overrides": ["seed=7"], "status": "failed", "error": "run folder 0 holds ..."})
    lines = [json.loads(line) for line in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert [line["sweep"] for line in lines] == [first, first, second]
    assert sorted(read_jobs(tmp_path)) == [0] and read_jobs(tmp_path)[0]["status"] == "failed"
    assert read_jobs(tmp_path, every_sweep=True)[1]["status"] == "ok"
    table, failed = summary_table(tmp_path)
    assert failed == [0] and "| 1 |" not in table  # job 1's folder is the first sweep's
    assert table.startswith(f"Sweep {second} (2 lines of earlier sweeps in this folder's jobs.jsonl)")


def test_an_optuna_search_whose_every_trial_fails_is_one_line(tmp_path):
    """Issue 16: a 20-line "No trials are completed yet" traceback from the sweeper."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = ("-m", "hparams_search=mackey_glass", "hydra.sweeper.n_trials=2", "model.theta=-1")
    result = plmu_train(*args, *tiny(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "plmu-train: error: no trial of the Optuna search completed: every job failed; "
        f"{tmp_path / 'sweep'}/summary.md gives each job's error"
    )
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert summary.count("failed: model.theta must be") == 2
