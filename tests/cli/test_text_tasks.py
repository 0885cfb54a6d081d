"""IMDB, QQP and SNLI end to end on fixtures in the hub's layout: train, then plmu-eval as an RNN."""

import json

import pytest
from conftest import compose_config
from data.text_fixtures import write_imdb, write_qqp, write_snli

from plmu.cli import eval as eval_cli
from plmu.train.run import train

WRITERS = {"imdb": write_imdb, "qqp": write_qqp, "snli": write_snli}


def _config(task, tmp_path, *extra):
    WRITERS[task](tmp_path / task)
    return compose_config(_overrides(task, tmp_path, *extra))


def _overrides(task, tmp_path, *extra):
    carve = [] if task == "snli" else ["task.data.val_size=20"]  # SNLI has its own validation split
    return [
        f"task={task}",
        f"task.data.path={tmp_path / task}",
        "task.data.vocab_size=300",
        *carve,
        f"data_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=1",
        "trainer.batch_size=16",
        "logger=none",
        "trainer.progress=false",
        *extra,
    ]


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


def test_the_data_is_part_of_the_run(tmp_path, capsys):
    """Issue 16: a resume and plmu-eval went on with other data (another file, another tokenizer) without a word;
    the same data moved elsewhere stays allowed."""
    import shutil

    import pandas as pd

    from plmu.errors import DataError

    run = tmp_path / "run"
    constant = "trainer.scheduler=null"  # a run's length may then grow on resume
    train(_config("imdb", tmp_path, constant), run)
    fingerprint = json.loads((run / "data_info.json").read_text())["fingerprint"]
    assert set(fingerprint) == {"train", "val", "test"} and fingerprint["test"]["examples"] > 0
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "imdb", moved)
    capsys.readouterr()
    assert eval_cli.main([str(run), "--no-progress", "--data-root", str(moved)]) == 0  # moved: the same data
    test_file = next(moved.rglob("test-*.parquet"))
    frame = pd.read_parquet(test_file)
    frame["text"] = frame["text"].map(lambda text: " ".join(reversed(text.split())))  # other reviews
    frame.to_parquet(test_file)
    capsys.readouterr()
    assert eval_cli.main([str(run), "--no-progress", "--data-root", str(moved)]) == 2
    assert "the test split is not the data this run was trained on" in capsys.readouterr().err
    resumed = compose_config(
        [f"task.data.path={moved}" if o.startswith("task.data.path=") else o for o in _overrides("imdb", tmp_path)]
        + [constant, "trainer.max_epochs=2"]
    )
    with pytest.raises(DataError, match=r"the test split is not the data .* start a new run from these weights"):
        train(resumed, run)
    assert json.loads((run / "results.json").read_text())["epochs"] == 1  # the record is untouched
