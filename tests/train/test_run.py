"""One training run in-process: config composition, validation, resume, NaN handling, results."""

import json

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config, config_names, nan_loss_on_call, task_model_pairs
from omegaconf import OmegaConf

from plmu.errors import CheckpointError, ConfigError, NonFiniteLossError
from plmu.models.build import build_model
from plmu.train import run as run_module
from plmu.train.run import train
from plmu.train.schema import check_config
from plmu.train.trainer import Trainer

TASKS = config_names("task")  # the installed package's configs: a wheel install too


@pytest.mark.parametrize(("task", "model"), task_model_pairs())
def test_every_task_and_model_composes_resolves_and_builds(task, model):
    cfg = compose_config([f"task={task}", f"model={model}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    check_config(cfg)
    built = build_model(cfg)
    assert built.num_parameters > 0


def test_paper_models_have_the_paper_sizes():
    assert build_model(compose_config(["task=psmnist"])).num_parameters == 166_092
    # the LSTM baseline at the parallel LMU's count (the NRU paper's models, whose LSTM row the paper quotes)
    assert build_model(compose_config(["task=psmnist", "model=lstm"])).num_parameters == 166_036
    assert build_model(compose_config(["experiment=psmnist_original_lmu"])).num_parameters == 102_027
    assert build_model(compose_config(["experiment=mackey_glass_lstm"])).num_parameters == 18_426
    assert build_model(compose_config(["task=mackey_glass", "model=original_lmu"])).num_parameters == 18_246
    mackey_glass_plmu = build_model(compose_config(["task=mackey_glass"])).num_parameters
    assert 16_000 <= mackey_glass_plmu <= 20_000  # "≈18k parameters"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.theta=-3", r"^model.theta must be a positive number \(time steps: the memory window\), got -3"),
        ("model.order=0", r"^model.order must be a positive int \(the number of Legendre coefficients\), got 0"),
        ("model.skip=no", r"^model.skip must be true or false, got 'no' \(override it, e.g. model.skip=true\)$"),
        ("+model.hiden_size=4", r"^unknown key model.hiden_size \(did you mean model.hidden_size\?\)$"),
        ("~model.order", r"^model.order is required but not set"),
        (
            "model.mode=fastest",
            r"model.mode must be one of \['auto', 'fused', 'chunked', 'fft', 'direct', 'recurrent'\]",
        ),
        ("model.f2=swish", r"model.f2 must be one of \["),
        ("trainer.batch_size=0", r"trainer.batch_size must be a positive integer, got 0"),
        ("trainer.optimizer.lr=-1", r"trainer.optimizer.lr must be a positive learning rate, got -1"),
        ("trainer.precision=fp8", r"trainer.precision must be one of \('32', 'bf16', 'auto'\), got 'fp8'"),
    ],
)
def test_bad_values_fail_before_data_is_touched(override, message, tmp_path, monkeypatch):
    cfg = compose_config([*TINY_MACKEY_GLASS, override, f"data_dir={tmp_path}"])
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path / "run")


def test_bad_data_arguments_are_config_errors(tmp_path):
    cfg = compose_config([*TINY_MACKEY_GLASS, f"data_dir={tmp_path}", "task.data.n_train=3"])
    with pytest.raises(ConfigError, match=r"task.data \(plmu.data.mackey_glass.mackey_glass\): n_train \+ n_val = 5"):
        train(cfg, tmp_path / "run")


def test_smoke_run_writes_everything(tmp_path):
    cfg = compose_config(
        [*TINY_MACKEY_GLASS, f"data_dir={tmp_path}", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    )
    results = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert json.loads((run / "results.json").read_text()) == results
    assert set(results) >= {
        "task",
        "metric",
        "test",
        "best_val",
        "parameters",
        "epochs",
        "wall_seconds",
        "device",
        "git_commit",
    }
    assert results["task"] == "mackey_glass" and results["metric"] == "nrmse" and results["epochs"] == 2
    assert (run / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in records) and sum("val/nrmse" in r for r in records) == 2
    assert OmegaConf.load(run / "config.yaml").task.name == "mackey_glass"
    assert json.loads((run / "data_info.json").read_text())["spec"]["n_series"] == 8


def _run_config(tmp_path, *extra):
    return compose_config(
        [
            *TINY_MACKEY_GLASS,
            f"data_dir={tmp_path}",
            "trainer.max_epochs=4",
            "model.dropout=0.2",
            "trainer.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1}",
            *extra,
        ]
    )


def test_a_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    uninterrupted = train(_run_config(tmp_path), tmp_path / "a")

    original = Trainer._train_epoch

    def killed_in_epoch_3(self, epoch, bar):
        if epoch == 2:
            original(self, epoch, bar)  # half the work done, then the process dies before the epoch's checkpoint
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(_run_config(tmp_path), tmp_path / "b")
    monkeypatch.undo()
    resumed = train(_run_config(tmp_path), tmp_path / "b")  # trainer.resume=auto finds b/checkpoints/last.pt
    for key in ("test", "best_val", "best_epoch", "epochs"):
        assert resumed[key] == uninterrupted[key], key
    lines = lambda run: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k not in ("time", "epoch_seconds", "seconds", "train_seconds")}
        for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
    ]
    assert lines("b") == lines("a")


def test_resume_from_an_explicit_checkpoint_path_and_a_corrupt_one(tmp_path, monkeypatch):
    train(_run_config(tmp_path, "trainer.max_epochs=1"), tmp_path / "a")
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    # Issue 16: resumed into a new folder, the run had no best.pt and its test scored the last weights.
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
        with pytest.raises(CheckpointError, match=r"is a checkpoint of the run in .*a, not of this run folder .*: "
                           r"continue that run there \(hydra.run.dir=.*a trainer.resume=auto\), or start a new "
                           r"run from its weights with init_from="):  # fmt: skip
            train(_run_config(tmp_path, "trainer.max_epochs=2", f"trainer.resume={last}"), tmp_path / "b")
    assert not (tmp_path / "b" / "checkpoints").exists()
    results = train(_run_config(tmp_path, "trainer.max_epochs=2", f"trainer.resume={last}"), tmp_path / "a")
    assert results["epochs"] == 2
    last.write_bytes(last.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="is unreadable"):
        train(_run_config(tmp_path, "trainer.max_epochs=2"), tmp_path / "a")


def test_resume_from_a_missing_checkpoint_fails_before_data(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "load_data", lambda cfg: pytest.fail("data was loaded"))
    with pytest.raises(CheckpointError, match=r"trainer.resume='/nowhere/last.pt': no such checkpoint"):
        train(_run_config(tmp_path, "trainer.resume=/nowhere/last.pt"), tmp_path / "a")


def test_resume_with_another_model_is_refused(tmp_path):
    train(_run_config(tmp_path, "trainer.max_epochs=1"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"model.hidden_size: 8 in the checkpoint, 9 now"):
        train(_run_config(tmp_path, "trainer.max_epochs=2", "model.hidden_size=9"), tmp_path / "a")


def test_a_resumed_run_names_the_evaluation_reports_it_makes_stale_and_keeps_them(tmp_path, caplog):
    train(_run_config(tmp_path, "trainer.max_epochs=1"), tmp_path / "a")
    report = tmp_path / "a" / "eval_recurrent_test.json"
    report.write_text('{"checkpoint_epoch": 1}')
    with caplog.at_level("WARNING", logger="plmu.train.resume"):
        train(_run_config(tmp_path, "trainer.max_epochs=1"), tmp_path / "a")  # finished: nothing trains, no word
        assert not [r for r in caplog.records if r.name == "plmu.train.resume"]
        train(_run_config(tmp_path, "trainer.max_epochs=2"), tmp_path / "a")  # extended: the report is now old
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "plmu.train.resume"]
    assert warning.startswith("eval_recurrent_test.json in ") and "run plmu-eval / plmu-translate again" in warning
    assert report.read_text() == '{"checkpoint_epoch": 1}'  # a record: kept as it was


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    nan_loss_on_call(monkeypatch, 3)
    kept = r"became nan at epoch 3, step 3.*last.pt holds epoch 2; best.pt holds epoch"
    with pytest.raises(NonFiniteLossError, match=kept):
        train(_run_config(tmp_path), tmp_path / "run")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["train_state"]["epoch"] == 2
    assert torch.isfinite(torch.cat([p.flatten() for p in last["model"].values()])).all()


def test_a_selection_run_never_reads_the_test_split(tmp_path, monkeypatch):
    """trainer.test=false (a sweep choosing on validation): no test evaluation, test null, said in the log."""
    evaluated = []
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, split: evaluated.append(split) or real(self, split))
    cfg = compose_config([*TINY_MACKEY_GLASS, "trainer.max_epochs=1", "trainer.test=false"])
    results = train(cfg, tmp_path / "run")
    assert results["test"] is None and results["test_metrics"] is None and results["best_val"] > 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"] is None
    data = run_module.load_data(cfg)
    assert len(evaluated) == 1 and len(evaluated[0]) == len(data.val)  # validation only
    assert "test nrmse not measured (trainer.test=false)" in (tmp_path / "run" / "train.log").read_text()


def test_bf16_precision_runs(tmp_path):
    results = train(_run_config(tmp_path, "trainer.max_epochs=1", "trainer.precision=bf16"), tmp_path / "run")
    assert results["test"] == results["test"]  # finite, not NaN
    assert results["precision"] == "bf16"


def test_auto_precision_is_resolved_logged_and_recorded(tmp_path):
    from plmu.train.machine import resolve_precision

    results = train(_run_config(tmp_path, "trainer.max_epochs=1", "trainer.precision=auto"), tmp_path / "run")
    precision, why = resolve_precision("auto", torch.device("cpu"))
    assert results["precision"] == precision
    assert f"precision {precision} ({why})" in (tmp_path / "run" / "train.log").read_text()


def test_compiled_model_trains_like_eager(tmp_path):
    eager = train(_run_config(tmp_path, "trainer.max_epochs=1", "model.dropout=0"), tmp_path / "eager")
    compiled = train(
        _run_config(tmp_path, "trainer.max_epochs=1", "model.dropout=0", "trainer.compile=true"), tmp_path / "compiled"
    )
    assert compiled["test"] == pytest.approx(eager["test"], rel=1e-4)


def test_early_stopping(tmp_path):
    cfg = _run_config(
        tmp_path, "trainer.max_epochs=30", "trainer.early_stopping_patience=1", "trainer.optimizer.lr=0.5"
    )
    results = train(cfg, tmp_path / "run")
    assert results["stopped_early"] and results["epochs"] < 30


def test_wandb_offline_run_is_written(tmp_path):
    cfg = compose_config(
        [*TINY_MACKEY_GLASS, f"data_dir={tmp_path}", "trainer.max_epochs=1", "logger=wandb", "logger.mode=offline"]
    )
    train(cfg, tmp_path / "run")
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_every_task_has_sizes_for_the_parallel_lmu_and_a_baseline():
    pairs = task_model_pairs()
    for task in TASKS:
        families = {m for t, m in pairs if t == task}
        assert "plmu" in families and len(families) >= 2, (task, families)
