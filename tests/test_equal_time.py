"""plmu.equal_time and ``plmu-report --by-time``: the clock each record gives, the best value within a budget, and
bad input as one line."""

import json
from pathlib import Path

import pytest

from plmu.cli import report as report_cli
from plmu.equal_time import TimeReportError, clock_points, load_timed_run, parse_minutes, time_table


def write_timed_run(folder: Path, lines: list[dict], task="psmnist", metric="accuracy", model="lstm_model") -> Path:
    folder.mkdir(parents=True)
    results = {"task": task, "metric": metric, "test": 0.9, "parameters": 1000, "torch_threads": 1, "precision": "32"}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "config.yaml").write_text(f"model:\n  _target_: plmu.models.{model}\n  hidden_size: 4\n")
    return folder


NEW = [  # plmu-train since issue 26: every validation carries both clocks; train lines carry neither
    {"step": 5, "train/loss": 2.0},
    {"step": 10, "val/accuracy": 0.50, "seconds": 70.0, "train_seconds": 60.0},
    {"step": 20, "val/accuracy": 0.70, "seconds": 150.0, "train_seconds": 120.0, "epoch_seconds": 150.0},
    {"step": 30, "val/accuracy": 0.65, "seconds": 650.0, "train_seconds": 600.0},
]
OLD = [  # before it: epoch records with epoch_seconds (validation included), step validations without a clock
    {"step": 10, "val/accuracy": 0.5},
    {"step": 20, "val/accuracy": 0.6, "epoch_seconds": 100.0},
    {"step": 40, "val/accuracy": 0.8, "epoch_seconds": 110.0},
]


def test_the_clock_is_train_seconds_when_every_validation_has_it():
    assert clock_points(NEW, "accuracy") == ("train_seconds", [(60.0, 0.5), (120.0, 0.7), (600.0, 0.65)])


def test_older_records_fall_back_to_the_running_sum_of_epoch_seconds():
    assert clock_points(OLD, "accuracy") == ("epoch_seconds", [(100.0, 0.6), (210.0, 0.8)])
    assert clock_points([{"step": 1, "val/accuracy": float("nan"), "train_seconds": 1.0}], "accuracy")[1] == []


def test_the_value_at_a_budget_is_the_best_so_far_in_the_metrics_direction(tmp_path):
    run = load_timed_run(write_timed_run(tmp_path / "lstm", NEW))
    assert (run.label, run.clock, run.seconds) == ("LSTM", "train_seconds", 600.0)
    assert run.best_by(59.0) is None and run.best_by(60.0) == 0.5
    assert run.best_by(599.0) == 0.7 and run.best_by(10_000.0) == 0.7  # a later worse validation does not count
    lower = [{"step": 1, "val/nrmse": 0.5, "train_seconds": 1.0}, {"step": 2, "val/nrmse": 0.2, "train_seconds": 2.0}]
    mg = load_timed_run(write_timed_run(tmp_path / "mg", lower, task="mackey_glass", metric="nrmse"))
    assert mg.best_by(1.5) == 0.5 and mg.best_by(2.0) == 0.2


def test_the_table_marks_budgets_after_the_run_ended(tmp_path):
    run = load_timed_run(write_timed_run(tmp_path / "lstm", NEW))
    table = time_table([run], [1, 2, 10, 60])
    row = table.splitlines()[2]
    assert "| lstm | LSTM | 1,000 | 50.00% | 70.00% | 70.00% (done) | 70.00% (done) | 10.0 |" in row
    assert "train_seconds; 1 thread, precision 32" in row


@pytest.mark.parametrize("text", ["", "x", "5,-1", "0", "nan", "5,,inf"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(TimeReportError, match="positive minutes"):
        parse_minutes(text)
    assert parse_minutes("60, 5,10,5") == [5.0, 10.0, 60.0]


def test_runs_without_records_are_one_line_errors(tmp_path):
    with pytest.raises(TimeReportError, match="not a finished plmu-train run"):
        load_timed_run(tmp_path)
    untimed = write_timed_run(tmp_path / "untimed", [{"step": 1, "val/accuracy": 0.5}])
    with pytest.raises(TimeReportError, match="no timed validation of accuracy"):
        load_timed_run(untimed)
    (untimed / "metrics.jsonl").unlink()
    with pytest.raises(TimeReportError, match=r"has no metrics\.jsonl"):
        load_timed_run(untimed)


def test_a_torn_last_line_keeps_the_records_before_it(tmp_path):
    run = write_timed_run(tmp_path / "run", NEW)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 40, "val/accur')
    assert load_timed_run(run).points[-1] == (600.0, 0.65)


def test_plmu_report_by_time_writes_the_table_and_the_figure(tmp_path, capsys):
    lstm = write_timed_run(tmp_path / "lstm", NEW)
    lmu = write_timed_run(tmp_path / "plmu", OLD, model="plmu_model")
    assert report_cli.main([str(lstm), str(lmu), "--by-time", "1,2,5"]) == 0
    out = capsys.readouterr().out
    assert "| lstm | LSTM |" in out and "| plmu | parallel LMU |" in out and "epoch_seconds" in out
    output = tmp_path / "report"
    assert report_cli.main([str(lstm), str(lmu), "--by-time", "1,2,5", "--output", str(output)]) == 0
    text = (output / "time.md").read_text()
    assert "| 1 min | 2 min | 5 min |" in text and "--by-time 1,2,5" in text
    pytest.importorskip("matplotlib")
    assert (output / "time.png").stat().st_size > 1000 and "](time.png)" in text


def test_plmu_report_by_time_refuses_mixed_tasks_and_bad_minutes(tmp_path, capsys):
    lstm = write_timed_run(tmp_path / "lstm", NEW)
    mg = write_timed_run(
        tmp_path / "mg", [{"step": 1, "val/nrmse": 0.5, "train_seconds": 1.0}], "mackey_glass", "nrmse"
    )
    assert report_cli.main([str(lstm), str(mg), "--by-time", "5"]) == 2
    assert "one task; these are of mackey_glass, psmnist" in capsys.readouterr().err
    assert report_cli.main([str(lstm), "--by-time", "five"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "got 'five'" in err[0]
    with pytest.raises(SystemExit):
        report_cli.main([str(lstm), "--by-time", "5", "--readme", "README.md"])
