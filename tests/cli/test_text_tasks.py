"""IMDB, QQP and SNLI end to end on fixtures in the hub's layout: train, then plmu-eval as an RNN."""

import json

import pytest
from conftest import compose_config
from data.text_fixtures import write_imdb, write_qqp, write_snli

from plmu.cli import eval as eval_cli
from plmu.train.run import train

WRITERS = {"imdb": write_imdb, "qqp": write_qqp, "snli": write_snli}


def _config(task, tmp_path, *extra):
    data = WRITERS[task](tmp_path / task)
    carve = [] if task == "snli" else ["task.data.val_size=20"]  # SNLI has its own validation split
    overrides = [
        f"task={task}",
        f"task.data.path={data}",
        "task.data.vocab_size=300",
        *carve,
        f"data_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=1",
        "trainer.batch_size=16",
        "logger=none",
        "trainer.progress=false",
        *extra,
    ]
    return compose_config(overrides)


@pytest.mark.parametrize("task", ["imdb", "qqp", "snli"])
def test_text_task_trains_and_runs_as_an_rnn(task, tmp_path, capsys):
    run = tmp_path / "run"
    results = train(_config(task, tmp_path), run)
    assert results["dataset"].startswith(f"local files ({task}) in the ") and 0 <= results["test"] <= 1
    assert results["data_path"] == f"../{task}"  # relative to the run folder
    capsys.readouterr()
    assert eval_cli.main([str(run), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "recurrent" and report["value"] == pytest.approx(results["test"])
    assert report["max_relative_difference_recurrent_vs_parallel"] < 1e-5  # float32 rounding


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_baselines_are_one_override_away(model, tmp_path, capsys):
    plmu = train(_config("imdb", tmp_path), tmp_path / "plmu")
    baseline = train(_config("imdb", tmp_path, f"model={model}"), tmp_path / model)
    embedding = 300 * 128  # the tokenizer's vocabulary here is the requested 300
    ratio = (baseline["parameters"] - embedding) / (plmu["parameters"] - embedding)
    assert 0.98 <= ratio <= 1.02, (plmu["parameters"], baseline["parameters"])
    if model == "transformer":  # bidirectional: no RNN form, a clear line says so
        assert eval_cli.main([str(tmp_path / model), "--no-progress"]) == 2
        assert "--mode parallel" in capsys.readouterr().err
