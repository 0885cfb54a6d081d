import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, assert_parsing_imports_no_torch, compose_config, write_idx_mnist

from plmu.cli import eval as eval_cli
from plmu.cli import run_tools as report_files
from plmu.data.splits import TensorSplit
from plmu.models.sequence import SequenceModel
from plmu.train import checkpoint
from plmu.train.run import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    cfg = compose_config([*TINY_MACKEY_GLASS, f"data_dir={root / 'data'}", "trainer.max_epochs=2"])
    results = train(cfg, root / "run")
    return root / "run", results


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy, for tests that look at (or break) what the run folder holds."""
    shutil.copytree(trained_run[0], tmp_path / "run", ignore=shutil.ignore_patterns("eval_*"))
    return tmp_path / "run"


def error_line(capsys) -> str:
    """The one stderr line an error must be (no traceback, no progress bar)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plmu-eval: error: ")
    return lines[0]


def strict_loads(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def reports(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("eval_", ".eval_")))


@pytest.mark.parametrize("mode", ["recurrent", "parallel"])
def test_eval_reproduces_the_test_metric(trained_run, mode, capsys):
    run_dir, results = trained_run
    assert eval_cli.main([str(run_dir), "--mode", mode]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metric"] == "nrmse" and report["samples"] == 4
    assert report["value"] == pytest.approx(results["test"], rel=1e-5)
    assert report["max_abs_difference_recurrent_vs_parallel"] < 1e-5  # float32 rounding
    assert report["max_relative_difference_recurrent_vs_parallel"] < 1e-5
    assert report["samples_per_second"] > 0


def test_eval_last_checkpoint_and_validation_split(trained_run, capsys):
    run_dir, _ = trained_run
    assert eval_cli.main([str(run_dir), "--checkpoint", "last", "--split", "val", "--mode", "parallel"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


def test_another_runs_checkpoint_gets_its_own_report(trained_run, run_copy, capsys):
    """Issue 16: --checkpoint <another run>/checkpoints/last.pt wrote eval_..._last.json, replacing the report of
    this run's own last.pt."""
    assert eval_cli.main([str(run_copy), "--checkpoint", "last", "--mode", "parallel", "--no-progress"]) == 0
    foreign = trained_run[0] / "checkpoints" / "last.pt"
    assert eval_cli.main([str(run_copy), "--checkpoint", str(foreign), "--mode", "parallel", "--no-progress"]) == 0
    names = reports(run_copy)
    assert "eval_parallel_test_last.json" in names and len(names) == 2
    assert re.fullmatch(r"eval_parallel_test_last-[0-9a-f]{8}\.json", next(n for n in names if "-" in n))


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes()[:500])
    assert eval_cli.main([str(run_dir), "--checkpoint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plmu-eval: error: checkpoint {broken} is unreadable")
    assert "Traceback" not in err


def test_data_root_points_at_the_data(trained_run, capsys):
    run_dir, results = trained_run
    data_dir = run_dir.parent / "data" / "mackey_glass"
    assert eval_cli.main([str(run_dir), "--mode", "parallel", "--data-root", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["value"] == pytest.approx(results["test"], rel=1e-5)
    # records write paths relative to the run folder (tests/test_experiments.py): the same on any machine
    assert report["data_root"] == "../data/mackey_glass" and report["data_root_from"] == "--data-root"
    assert report["data"]["cache_dir"] == "../data/mackey_glass"


# ------------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("flag", ["--batch-size", "--limit-batches"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_batch_flags_must_be_positive_integers(trained_run, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([str(trained_run[0]), flag, value])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"plmu-eval: error: argument {flag}: must be a positive integer (1, 2, ...), got '{value}'"


def test_run_dir_must_be_a_run(trained_run, tmp_path, capsys):
    assert eval_cli.main([str(tmp_path / "missing")]) == 2
    assert error_line(capsys).endswith(
        f"run directory {tmp_path / 'missing'} does not exist: give the folder plmu-train wrote"
    )
    assert eval_cli.main([str(trained_run[0] / "config.yaml")]) == 2
    assert "is not a folder" in error_line(capsys)
    assert eval_cli.main([str(tmp_path)]) == 2
    assert f"{tmp_path} is not a plmu-train run (it has no checkpoints/ folder)" in error_line(capsys)


def test_checkpoint_flag_mistakes(run_copy, capsys):
    assert eval_cli.main([str(run_copy), "--checkpoint", str(run_copy / "checkpoints")]) == 2
    assert f"--checkpoint {run_copy / 'checkpoints'} is a folder" in error_line(capsys)
    assert eval_cli.main([str(run_copy), "--checkpoint", "epoch3.pt"]) == 2
    assert "--checkpoint epoch3.pt: no such file" in error_line(capsys)
    (run_copy / "checkpoints" / "best.pt").unlink()  # e.g. no epoch had a finite validation metric
    assert eval_cli.main([str(run_copy)]) == 2
    assert error_line(capsys).endswith("has no checkpoints/best.pt (no epoch finished yet?): use --checkpoint last")


def test_device_errors_name_the_flag(trained_run, capsys):
    run_dir = str(trained_run[0])
    assert eval_cli.main([run_dir, "--device", "tpu"]) == 2
    assert error_line(capsys) == (
        "plmu-eval: error: --device tpu: not a device plmu runs on; use cpu, cuda, cuda:N or auto"
    )
    if not torch.cuda.is_available():
        assert eval_cli.main([run_dir, "--device", "cuda"]) == 2
        assert error_line(capsys) == (
            "plmu-eval: error: --device cuda: CUDA is not available here; use --device cpu or auto"
        )


def test_data_root_that_is_not_a_folder_names_the_flag(trained_run, tmp_path, capsys):
    assert eval_cli.main([str(trained_run[0]), "--data-root", str(tmp_path / "nowhere")]) == 2
    line = error_line(capsys)
    assert line.startswith(f"plmu-eval: error: --data-root {tmp_path / 'nowhere'}: no such folder")
    assert "task.data" not in line


@pytest.fixture(scope="module")
def psmnist_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_psmnist")
    write_idx_mnist(root / "data", n_train=60, n_test=20)
    overrides = ["task=psmnist", f"data_dir={root / 'data'}", "task.data.val_size=20", "trainer.batch_size=20"]
    overrides += [
        "model.order=4",
        "model.hidden_size=4",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.progress=false",
    ]
    train(compose_config(overrides), root / "run")
    return root


def test_missing_mnist_is_said_in_terms_of_data_root(psmnist_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert eval_cli.main([str(psmnist_run / "run"), "--data-root", str(empty)]) == 2  # offline: conftest
    line = error_line(capsys)
    assert line.startswith(f"plmu-eval: error: --data-root {empty}: mnist not found in {empty}/MNIST/raw")
    assert "point --data-root at a folder that has them" in line and "task.data" not in line

    shutil.move(psmnist_run / "data", tmp_path / "moved")  # the data is no longer where training found it
    try:
        assert eval_cli.main([str(psmnist_run / "run")]) == 2
        line = error_line(capsys)
        assert f"mnist not found in {psmnist_run / 'data'}/MNIST/raw" in line
        assert "--data-root" in line and "task.data" not in line
        assert eval_cli.main([str(psmnist_run / "run"), "--data-root", str(tmp_path / "moved"), "--no-progress"]) == 0
        assert json.loads(capsys.readouterr().out)["samples"] == 20
    finally:
        shutil.move(tmp_path / "moved", psmnist_run / "data")


# ------------------------------------------------------------------------------------------- the checkpoint's config
def rewritten_checkpoint(run_dir: Path, tmp_path: Path, change) -> Path:
    payload = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    change(payload["config"])
    checkpoint.save_atomic(payload, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def test_checkpoint_config_without_needed_keys(trained_run, tmp_path, capsys):
    path = rewritten_checkpoint(trained_run[0], tmp_path, lambda config: config["task"].pop("data"))
    assert eval_cli.main([str(trained_run[0]), "--checkpoint", str(path)]) == 2
    assert f"checkpoint {path}: its config lacks task.data._target_" in error_line(capsys)


def test_empty_split_is_an_error_not_nan(trained_run, monkeypatch, capsys):
    from plmu.train import run

    real_load_data = run.load_data

    def without_validation(cfg):  # e.g. a loader configured with no validation series
        data = real_load_data(cfg)
        data.val = TensorSplit(data.val.x[:0], data.val.y[:0])
        return data

    monkeypatch.setattr(run, "load_data", without_validation)
    assert eval_cli.main([str(trained_run[0]), "--split", "val"]) == 2
    assert error_line(capsys) == "plmu-eval: error: --split val: task mackey_glass has no val data; use another split"


# ------------------------------------------------------------------------------------------------ the report file
def test_report_records_what_was_evaluated(trained_run, run_copy, capsys):
    assert eval_cli.main([str(run_copy), "--checkpoint", "last", "--limit-batches", "1", "--batch-size", "1"]) == 0
    out, err = capsys.readouterr()
    report = strict_loads(out)
    assert report["checkpoint"] == "checkpoints/last.pt"  # relative to the run folder
    assert report["checkpoint_epoch"] == 2 and report["checkpoint_step"] == 2  # 2 epochs of 1 batch
    assert (report["batch_size"], report["limit_batches"], report["batches"], report["samples"]) == (1, 1, 1, 1)
    data_root = trained_run[0].parent / "data" / "mackey_glass"  # the one training used
    assert (run_copy / report["data_root"]).resolve() == data_root.resolve()
    assert report["data_root_from"] == "checkpoint config" and report["data"]["n_series"] == 8
    assert report["torch_version"] == torch.__version__ and report["plmu_version"]
    assert report["notes"] == [] and report["output"] == "eval_recurrent_test_last_limit1.json"
    assert strict_loads((run_copy / "eval_recurrent_test_last_limit1.json").read_text()) == report
    assert err.strip().splitlines()[-1] == f"plmu-eval: wrote {run_copy / 'eval_recurrent_test_last_limit1.json'}"


def test_different_evaluations_get_different_files(run_copy, capsys):
    for flags in ([], ["--checkpoint", "last"], ["--limit-batches", "1"], ["--mode", "parallel"], ["--split", "val"]):
        assert eval_cli.main([str(run_copy), "--no-progress", *flags]) == 0
    assert reports(run_copy) == [
        "eval_parallel_test.json",
        "eval_recurrent_test.json",
        "eval_recurrent_test_last.json",
        "eval_recurrent_test_limit1.json",
        "eval_recurrent_val.json",
    ]
    capsys.readouterr()
    assert eval_cli.main([str(run_copy), "--no-progress"]) == 0  # the same evaluation again: replaced, and said so
    assert capsys.readouterr().err.strip().endswith("(replaced an earlier report)")


def test_output_flag(run_copy, tmp_path, capsys):
    assert eval_cli.main([str(run_copy), "--no-progress", "--output", str(tmp_path / "mine.json")]) == 0
    output = strict_loads((tmp_path / "mine.json").read_text())["output"]
    assert (run_copy / output).resolve() == (tmp_path / "mine.json").resolve()
    folder = tmp_path / "reports"
    folder.mkdir()
    assert eval_cli.main([str(run_copy), "--no-progress", "--output", str(folder)]) == 0
    assert reports(folder) == ["eval_recurrent_test.json"] and reports(run_copy) == []
    capsys.readouterr()
    assert eval_cli.main([str(run_copy), "--output", str(tmp_path / "no" / "such.json")]) == 2
    assert "--output" in error_line(capsys)


def test_unwritable_run_dir_fails_before_evaluating(run_copy, tmp_path, monkeypatch, capsys):
    real_mkstemp = report_files.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # root ignores chmod, so the refusal is simulated
        if Path(dir) == run_copy:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the output was checked")

    monkeypatch.setattr(report_files.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(checkpoint, "load", never)
    assert eval_cli.main([str(run_copy)]) == 2
    assert error_line(capsys) == (
        f"plmu-eval: error: cannot write the report into {run_copy}: Permission denied; "
        "pass --output PATH to write it elsewhere"
    )
    monkeypatch.undo()
    monkeypatch.setattr(report_files.tempfile, "mkstemp", read_only)
    assert eval_cli.main([str(run_copy), "--no-progress", "--output", str(tmp_path / "report.json")]) == 0
    assert (tmp_path / "report.json").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_dir_for_real(run_copy, capsys):
    run_copy.chmod(0o555)
    try:
        assert eval_cli.main([str(run_copy)]) == 2
        assert "pass --output PATH" in error_line(capsys)
    finally:
        run_copy.chmod(0o755)


def test_non_finite_numbers_become_null_with_a_note(run_copy, monkeypatch, capsys):
    monkeypatch.setattr("plmu.train.objectives.Regression.reduce", lambda self, stats: {"nrmse": float("nan")})
    assert eval_cli.main([str(run_copy), "--no-progress"]) == 0
    report = strict_loads(capsys.readouterr().out)
    assert report["value"] is None and "value was nan (not finite); written as null" in report["notes"]
    assert strict_loads((run_copy / "eval_recurrent_test.json").read_text())["value"] is None


# ------------------------------------------------------------------------------------------------ running
def test_progress_bar_goes_to_stderr(run_copy, monkeypatch, capsys):
    import tqdm

    made = []

    class Spy(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Spy)
    assert eval_cli.main([str(run_copy), "--batch-size", "1"]) == 0
    out, err = capsys.readouterr()
    strict_loads(out)  # stdout is the report alone
    assert "4/4" in err and "batch" in err
    assert made[0]["total"] == 4 and made[0]["mininterval"] == 30.0  # stderr is not a terminal here
    assert eval_cli.main([str(run_copy), "--no-progress"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[0].startswith("plmu-eval: wrote ")  # one line, no bar


def test_ctrl_c_exits_130_without_a_report(run_copy, monkeypatch, capsys):
    def interrupted(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(SequenceModel, "forward_recurrent", interrupted)
    try:
        assert eval_cli.main([str(run_copy)]) == 130
    except KeyboardInterrupt:  # escaping would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped plmu-eval")
    assert capsys.readouterr().err.strip().splitlines()[-1] == "plmu-eval: interrupted"
    assert reports(run_copy) == []  # neither the report nor its temp file


def test_sigterm_ends_it_as_ctrl_c_does(run_copy, monkeypatch, capsys):
    """Issue 16: SIGTERM left 0-byte .eval_* temp files (its default handler ends the process on the spot)."""
    import os
    import signal

    previous = signal.getsignal(signal.SIGTERM)

    def terminated(self, x):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid>` mid-evaluation
        pytest.fail("SIGTERM did not stop the evaluation")

    monkeypatch.setattr(SequenceModel, "forward_recurrent", terminated)
    try:
        assert eval_cli.main([str(run_copy)]) == 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err.strip().splitlines()[-1] == "plmu-eval: interrupted"
    assert reports(run_copy) == []  # neither the report nor its temp file


def test_out_of_memory_suggests_a_smaller_batch(run_copy, monkeypatch, capsys):
    def out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nSee documentation")

    monkeypatch.setattr(SequenceModel, "forward_recurrent", out_of_memory)
    assert eval_cli.main([str(run_copy), "--no-progress"]) == 2
    assert error_line(capsys).endswith("at batch size 2; pass a smaller --batch-size")
    assert reports(run_copy) == []


def test_help_works_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "plmu.cli.eval", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--output PATH" in result.stdout and "--no-progress" in result.stdout


def test_help_does_not_import_torch():
    assert_parsing_imports_no_torch("eval")
