"""plmu-report: the results table comes from run folders only, the README's table is what it generates, and bad input
is one line naming the file."""

import json
import re
import sys
from pathlib import Path

import pytest

from plmu.cli import report as report_cli
from plmu.report import PAPER, collect, format_value, read_json, results_table

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
README = ROOT / "README.md"


def write_run(folder: Path, task="mackey_glass", metric="nrmse", test=0.0312, params=1234, curve=(0.5, 0.1, 0.05)):
    folder.mkdir(parents=True)
    results = {"task": task, "metric": metric, "test": test, "best_val": min(curve), "best_epoch": len(curve),
               "parameters": params, "epochs": len(curve), "command": f"plmu-train task={task}"}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    lines = [{"step": 10 * (i + 1), "epoch": i + 1, f"val/{metric}": v} for i, v in enumerate(curve)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "config.yaml").write_text("model:\n  _target_: plmu.models.lstm_model\n  hidden_size: 4\n")
    return folder


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plmu-report: error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------------ the committed tree
def test_readme_table_is_generated_from_the_committed_experiments(capsys):
    """Edit experiments/*/results.yaml or the runs, then `plmu-report experiments/ --readme README.md`."""
    assert report_cli.main([str(EXPERIMENTS), "--readme", str(README), "--check"]) == 0, capsys.readouterr().err


def test_every_row_number_is_its_runs_results_json():
    experiments, warnings = collect([EXPERIMENTS])
    assert not warnings
    table = results_table(experiments, ROOT)
    rows = [experiment for experiment in experiments if experiment.rows]
    assert rows, "experiments/ gives no rows"
    for experiment in rows:
        for run in experiment.rows:
            line = next(row for row in table.splitlines() if f"({run.path.relative_to(ROOT).as_posix()})" in row)
            if run.seeds:  # one row over seeds: their mean
                tests = [read_json(seed.path / "results.json")["test"] for seed in run.seeds]
                assert run.value == pytest.approx(sum(tests) / len(tests), rel=1e-12)
            elif run.source == "results.json":
                assert run.value == read_json(run.path / "results.json")["test"]
            shown = format_value(run.metric, run.value)
            single = (f"| {shown} |", f" {shown} |", f" {shown} (†) |")  # (†): its record lacks the code's patch
            assert f"| {shown} ± " in line if run.seeds else any(text in line for text in single)
            assert PAPER[run.task].paper in line
    # every paper task has a row, measured or "not run yet"
    for paper in PAPER.values():
        assert f"| {paper.name} | {paper.metric} | {paper.paper} |" in table


def test_a_row_over_seeds_is_their_mean_and_std_and_the_papers_data_comes_first(tmp_path, capsys):
    stand_in, real = tmp_path / "exp" / "a_stand_in", tmp_path / "exp" / "b_real"
    write_run(stand_in / "one", task="psmnist", metric="accuracy", test=0.88)
    for seed, test in enumerate((0.985, 0.987, 0.986)):
        write_run(real / f"seed{seed}", task="psmnist", metric="accuracy", test=test)
    (stand_in / "results.yaml").write_text(
        "task: psmnist\ndata: a stand-in\nprotocol: from scratch\nruns:\n  - dir: one\n    protocol: this row's way\n"
    )
    (real / "results.yaml").write_text(
        "task: psmnist\ndata: MNIST\npaper_data: true\nprotocol: from scratch\n"
        "runs:\n  - dirs: [seed0, seed1, seed2]\n    model: LMU\n"
    )
    assert report_cli.main([str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| psMNIST")]
    assert "**the paper's data**: MNIST" in rows[0] and "a stand-in" in rows[1]  # the paper's data first
    assert "| 98.60% ± 0.10 (3 seeds: 98.50%–98.70%) |" in rows[0]
    assert "| from scratch | LMU |" in rows[0] and "| this row's way |" in rows[1]  # the experiment's, the entry's
    for seed in ("seed0", "seed1", "seed2"):  # every seed is in the every-run table, listed
        assert re.search(rf"\[b_real/{seed}\]\(.*\) \| yes \|", out), seed
    (real / "results.yaml").write_text(
        "task: psmnist\ndata: MNIST\nprotocol: from scratch\nruns:\n  - dirs: [seed0, nope]\n"
    )
    assert report_cli.main([str(tmp_path / "exp")]) == 2
    assert "names nope, but" in error_line(capsys)
    (real / "results.yaml").write_text(
        "task: psmnist\ndata: MNIST\nprotocol: from scratch\nruns:\n  - dir: seed0\n    dirs: [seed1]\n"
    )
    assert report_cli.main([str(tmp_path / "exp")]) == 2
    assert "dirs: [<run folder>, ...]" in error_line(capsys)


# ------------------------------------------------------------------------------------------------ run folders
def test_one_run_folder_gives_its_row_and_the_other_tasks_say_not_run(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert report_cli.main([str(run)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| Mackey-Glass"))
    assert "| LSTM | 0.0312 | 1,234 |" in row and "not described (no results.yaml)" in row
    assert "| psMNIST | test accuracy | 98.49% (165k params) | — | — | — | not run yet |" in out
    assert "`plmu-train task=mackey_glass`" in out  # the every-run table keeps the command


def test_a_corrupt_run_among_many_is_skipped_with_a_warning(tmp_path, capsys):
    write_run(tmp_path / "runs" / "good")
    bad = write_run(tmp_path / "runs" / "bad", test=0.9)
    (bad / "results.json").write_text('{"task": "mackey_glass", "metric": ')
    assert report_cli.main([str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    assert "0.0312" in captured.out and "0.9000" not in captured.out
    assert re.search(r"plmu-report: warning: skipped .*bad: .*bad/results.json is not valid JSON", captured.err)


def test_a_corrupt_run_given_by_name_stops_the_report(tmp_path, capsys):
    bad = write_run(tmp_path / "bad")
    (bad / "results.json").write_text("[1, 2]")
    assert report_cli.main([str(bad)]) == 2
    assert f"{bad / 'results.json'} holds a list, not a JSON object" in error_line(capsys)


def test_a_corrupt_metrics_line_is_skipped_and_named(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    with (run / "metrics.jsonl").open("a") as file:
        file.write('{"step": 40, "val/nr')  # a torn last line
    experiments, warnings = collect([run])
    assert experiments[0].rows[0].curve == [(10, 0.5), (20, 0.1), (30, 0.05)]
    assert warnings == [f"{run / 'metrics.jsonl'}:4: not a JSON line, skipped (a torn write?)"]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_path_without_runs(tmp_path, capsys, make):
    path = tmp_path / "nothing"
    if make == "empty":
        (path / "sub").mkdir(parents=True)
    assert report_cli.main([str(path)]) == 2
    line = error_line(capsys)
    assert (f"{path} does not exist" in line) if make == "missing" else (f"no runs under {path}" in line)


# ------------------------------------------------------------------------------------------------ manifests
def write_manifest(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.yaml").write_text(text)


def test_a_manifest_picks_the_rows_labels_them_and_says_the_data(tmp_path, capsys):
    exp = tmp_path / "experiments" / "mg"
    write_run(exp / "chosen", test=0.02)
    write_run(exp / "sweep", test=0.07)
    write_manifest(
        exp,
        "task: mackey_glass\ndata: generated series\nprotocol: from scratch\n"
        "runs:\n  - dir: chosen\n    model: my LMU\n",
    )
    (exp / "README.md").write_text("# mg\n")
    assert report_cli.main([str(tmp_path / "experiments")]) == 0
    out = capsys.readouterr().out
    table, every = out.split("\n\n", 1)
    assert "| my LMU | 0.0200 |" in table
    assert "| [generated series](mg/README.md) | from scratch | my LMU |" in results_table(
        collect([exp.parent])[0], exp.parent
    )
    assert "0.0700" not in table and "0.0700" in every  # the unlisted sweep run is listed apart
    assert "| no |" in every


def test_metric_from_reads_another_measured_file(tmp_path, capsys):
    exp = tmp_path / "mt"
    run = write_run(exp / "r", task="iwslt15_en_vi", metric="perplexity", test=1.5)
    (run / "translate_test.json").write_text(json.dumps({"bleu_tokenized": 27.345}))
    entry = "  - dir: r\n    metric_from: {file: translate_test.json, key: bleu_tokenized, name: BLEU}\n"
    write_manifest(exp, f"task: iwslt15_en_vi\ndata: synthetic\nprotocol: from scratch\nruns:\n{entry}")
    assert report_cli.main([str(exp)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| IWSLT"))
    assert "| 27.3 |" in row and "1.50" not in row


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("task: mnist\ndata: x\nprotocol: from scratch\nruns: [{dir: r}]\n", "task must be one of ['psmnist', "),
        ("task: psmnist\nruns: [{dir: r}]\n", "data must say, in words, what data the runs used"),
        ("task: psmnist\ndata: x\nprotocol: from scratch\nruns: [{dir: gone}]\n", "names gone, but"),
        ("task: psmnist\ndata: x\nprotocol: from scratch\n", "needs task, data and runs"),
        ("task: psmnist\ndata: x\nruns: [{dir: r}]\n", "protocol must say, in words, how ['r'] were trained"),
        ("task: psmnist\ndata: x\nprotocol: a\nruns: [{dir: r, protocol: ''}]\n", "protocol must say"),
        ("task: [\n", "is not valid YAML"),
    ],
)
def test_bad_manifests_are_one_line(tmp_path, capsys, manifest, message):
    write_run(tmp_path / "exp" / "r", task="psmnist", metric="accuracy", test=0.5)
    write_manifest(tmp_path / "exp", manifest)
    assert report_cli.main([str(tmp_path / "exp")]) == 2
    line = error_line(capsys)
    assert message in line and "results.yaml" in line


# ------------------------------------------------------------------------------------------------ README, output
def test_readme_rewrites_only_between_the_markers(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    readme = tmp_path / "README.md"
    before, after = "# title\n\ntext above\n", "text below\n"
    readme.write_text(f"{before}{report_cli.BEGIN_LINE}\nold table\n{report_cli.END}\n{after}")
    assert report_cli.main([str(run), "--readme", str(readme), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert report_cli.main([str(run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(before + report_cli.BEGIN_LINE + "\n| task |") and text.endswith(
        f"{report_cli.END}\n{after}"
    )
    assert "old table" not in text and "[run](run)" in text  # links relative to the README's folder
    capsys.readouterr()
    assert report_cli.main([str(run), "--readme", str(readme), "--check"]) == 0
    assert "results table is up to date" in capsys.readouterr().err  # issue 18: it said nothing on success


def test_readme_without_markers(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    (tmp_path / "README.md").write_text("# no markers\n")
    assert report_cli.main([str(run), "--readme", str(tmp_path / "README.md")]) == 2
    assert "needs one '<!-- results:begin ... -->' line" in error_line(capsys)


def test_output_writes_report_and_curves(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    speed = tmp_path / "speed"
    speed.mkdir()
    (speed / "plot.png").write_bytes(b"\x89PNG")
    assert report_cli.main([str(run), str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    png = tmp_path / "out" / "curves" / "mackey_glass.png"
    assert png.read_bytes().startswith(b"\x89PNG") and "![mackey_glass](curves/mackey_glass.png)" in report
    assert "- [../speed/plot.png](../speed/plot.png)" in report


def test_without_matplotlib_the_tables_remain(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    run = write_run(tmp_path / "run")
    assert report_cli.main([str(run), "--output", str(tmp_path / "out")]) == 0
    assert "| Mackey-Glass |" in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "curves").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_a_seed_row_draws_every_seeds_curve_and_a_selection_run_says_not_measured(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp"
    for seed in range(3):
        write_run(exp / f"seed{seed}", task="psmnist", metric="accuracy", test=0.98, curve=(0.5, 0.9))
    (exp / "results.yaml").write_text(
        "task: psmnist\ndata: MNIST\nprotocol: from scratch\nruns:\n  - dirs: [seed0, seed1, seed2]\n"
    )
    selection = write_run(exp / "sweep" / "0", task="psmnist", metric="accuracy", test=None)
    results = json.loads((selection / "results.json").read_text())
    (selection / "results.json").write_text(json.dumps({**results, "test_metrics": None}))  # trainer.test=false
    drawn = []
    real_plot_curves = report_cli.plot_curves

    def spy(experiments, folder, warnings):
        written = real_plot_curves(experiments, folder, warnings)
        drawn.extend(line.get_label() for line in __import__("matplotlib.pyplot").pyplot.gcf().axes[0].lines)
        return written

    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "close", lambda figure=None: None)  # keep the figure to read its lines
    monkeypatch.setattr(report_cli, "plot_curves", spy)
    assert report_cli.main([str(exp), "--output", str(tmp_path / "out")]) == 0
    assert sorted(label.rsplit("(", 1)[1] for label in drawn) == ["seed0)", "seed1)", "seed2)"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "not measured (selection run)" in report and "not finite" not in report


def test_smoke_runs_are_marked_and_legends_name_what_differs(tmp_path):
    """Issue 18: debug=quick runs entered the tables unmarked; the learning-curve legends named runs by timestamp."""
    from plmu.report import Run, legend_name, read_run_record

    run = tmp_path / "2026-12-02_10-00-00-000000"
    run.mkdir()
    results = {"task": "mackey_glass", "metric": "nrmse", "test": 0.5, "model": "plmu",
               "overrides": ["task=mackey_glass", "debug=quick", "seed=1", "hydra.run.dir=x"]}  # fmt: skip
    (run / "results.json").write_text(json.dumps(results))
    (run / "config.yaml").write_text("task:\n  name: mackey_glass\nmodel:\n  _target_: plmu.models.plmu_model\n")
    loaded = read_run_record(run)
    assert loaded.label == "parallel LMU [debug: a smoke run, not a result]"
    assert legend_name(loaded) == "parallel LMU [debug: a smoke run, not a result] (debug=quick seed=1)"
    plain = Run(run, {"overrides": ["task=mackey_glass"]}, {}, "LSTM", "nrmse", 0.5, "results.json")
    assert legend_name(plain) == f"LSTM ({run.name})"  # nothing sets it apart: its folder


def test_a_resumed_runs_wall_time_says_it_is_the_last_attempts(tmp_path):
    from plmu.report import runs_table

    fresh = write_run(tmp_path / "exp" / "fresh")
    resumed = write_run(tmp_path / "exp" / "resumed")
    for folder, extra in ((fresh, {}), (resumed, {"resumed_from": "checkpoints/last.pt"})):
        record = json.loads((folder / "results.json").read_text())
        record.update(wall_seconds=5.33, epoch_seconds_total=41.65, **extra)
        (folder / "results.json").write_text(json.dumps(record))
    experiments, _ = collect([tmp_path / "exp"])
    lines = runs_table(experiments, tmp_path).splitlines()
    fresh_line = next(line for line in lines if "[exp/fresh]" in line or "(exp/fresh)" in line)
    resumed_line = next(line for line in lines if "resumed" in line.split("|")[1])
    assert "| 5.33 |" in fresh_line
    assert "| 5.33 (last attempt; epochs 41.65 in all) |" in resumed_line
