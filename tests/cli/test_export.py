"""plmu-export and plmu.export: a model's step, saved, loads without plmu and equals model.step; errors are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_MACKEY_GLASS, compose_config
from torch.utils._pytree import tree_flatten

from plmu import export as ex
from plmu.cli import export as export_cli
from plmu.cli.export import model_from_run
from plmu.models.build import build_model
from plmu.train.run import train

# Runs in a fresh interpreter where importing plmu fails: the file must load and run with torch alone.
WITHOUT_PLMU = """
import sys, importlib.abc
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "plmu" or name.startswith("plmu."):
            raise ImportError("plmu must not be needed to run an exported step")
sys.meta_path.insert(0, Refuse())
import torch
program_path, data_path, fmt = sys.argv[1:4]
data = torch.load(data_path)
step = torch.export.load(program_path).module() if fmt == "export" else torch.jit.load(program_path)
state = tuple(data["state"])
worst = 0.0
with torch.no_grad():
    for x_t, expected in zip(data["x"], data["outputs"]):
        out, state = step(x_t, state)
        worst = max(worst, (out - expected).abs().max().item())
print(worst, "plmu" in sys.modules)
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    cfg = compose_config([*TINY_MACKEY_GLASS, f"data_dir={root / 'data'}", "trainer.max_epochs=1"])
    train(cfg, root / "run")
    return root / "run"


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plmu-export: error: ")
    return lines[0]


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_exported_step_runs_without_plmu_and_equals_model_step(trained_run, tmp_path, capsys, fmt):
    output = tmp_path / f"step.{fmt}"
    assert export_cli.main([str(trained_run), "--format", fmt, "--output", str(output)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(output.resolve()) and output.is_file()
    assert report["max_abs_difference_vs_model_step_20_steps"] < 1e-6
    assert report["signature"]["input_shape"] == [None, 1] and report["signature"]["output_shape"] == [None, 1]

    model, _ = model_from_run(trained_run, "best")
    x = ex.random_inputs(model, 20, 1, seed=3) * 0.5
    leaves, _ = tree_flatten(model.initial_state(1))
    state, outputs = model.initial_state(1), []
    with torch.no_grad():
        for x_t in x:
            out, state = model.step(x_t, state)
            outputs.append(out)
    assert torch.stack(outputs).abs().max() > 0  # a zero model would make the comparison empty
    torch.save({"x": x, "state": leaves, "outputs": outputs}, tmp_path / "data.pt")
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PLMU, str(output), str(tmp_path / "data.pt"), fmt],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    worst, imported = done.stdout.split()
    assert float(worst) < 1e-5 and imported == "False"


def test_default_output_is_in_the_run_folder(trained_run, capsys):
    assert export_cli.main([str(trained_run), "--checkpoint", "last"]) == 0
    path = Path(json.loads(capsys.readouterr().out)["output"])
    assert path == (trained_run / "step_last.pt2").resolve() and path.is_file()
    loaded = ex.load_step(path)
    assert loaded.metadata["checkpoint"].endswith("last.pt") and loaded.metadata["format"] == "export"


def test_not_a_run_folder(tmp_path, capsys):
    assert export_cli.main([str(tmp_path)]) == 2
    assert "is not a plmu-train run" in error_line(capsys)
    assert export_cli.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in error_line(capsys)


def test_no_checkpoint(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    assert export_cli.main([str(tmp_path)]) == 2
    assert "has no checkpoints/best.pt" in error_line(capsys)


def test_model_without_a_fixed_step(capsys):
    assert export_cli.main(["--config", "task=qqp"]) == 2  # a pair model classifies two whole sequences
    assert "a sentence-pair classifier (qqp, snli) reads two whole sequences" in error_line(capsys)
    # issue 16: "pass example_input=a (batch, features) tensor", a Python argument, to a command-line user
    assert export_cli.main(["--config", "task=iwslt15_en_vi"]) == 2
    message = error_line(capsys)
    assert "translate with plmu-translate" in message and "example_input" not in message
    assert export_cli.main(["--config", "task=text8", "model=transformer"]) == 2  # its key/value cache grows
    assert "changes shape from step to step" in error_line(capsys)
    assert export_cli.main(["--config", "task=psmnist", "model=transformer"]) == 2  # not causal: no stream
    assert "cannot run as an RNN: a state (streaming, step) needs causal=True" in error_line(capsys)


def test_run_dir_or_config_not_both(capsys):
    with pytest.raises(SystemExit):
        export_cli.main([])
    assert "give a RUN_DIR or --config" in capsys.readouterr().err


def test_latency_from_config(capsys):
    args = ["--config", "task=mackey_glass", "model.hidden_size=8", "--latency", "30", "--warmup", "5"]
    assert export_cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] is None and report["weights"] == "untrained (seed 0)"
    for timing in report["latency"]["eager_model_step"], report["latency"]["loaded_export"]:
        assert timing["steps"] == 30 and 0 < timing["p10_us"] <= timing["median_us"] <= timing["p90_us"]


# ------------------------------------------------------------------------------------------------ the library
@pytest.fixture(scope="module")
def lstm():
    return build_model(compose_config(["task=psmnist", "model=lstm", "model.hidden_size=6", "logger=none"])).eval()


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_batch_stays_free_and_state_batch_dim_is_kept(lstm, tmp_path, fmt):
    program, signature = ex.export_step(lstm, fmt)
    assert signature.state_batch_dim == 1 and signature.state_shapes == [[1, None, 6], [1, None, 6]]
    loaded = ex.load_step(ex.save_step(program, signature, tmp_path / "s.pt2"))
    for batch in (1, 3):
        x = ex.random_inputs(lstm, 20, batch)
        assert ex.max_step_difference(lstm, loaded, x) < 1e-6


def test_training_mode_and_bad_format_are_refused(lstm):
    lstm.train()
    try:
        with pytest.raises(ex.ExportError, match=r"training mode .* call model.eval\(\) first"):
            ex.export_step(lstm)
    finally:
        lstm.eval()
    with pytest.raises(ex.ExportError, match=r"format must be one of \['export', 'torchscript'\], got 'onnx'"):
        ex.export_step(lstm, "onnx")
    with pytest.raises(ex.ExportError, match="has no step/initial_state"):
        ex.export_step(torch.nn.Linear(2, 2).eval(), example=torch.zeros(2, 2))


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_shape_errors_of_a_loaded_step_are_clear(lstm, tmp_path, fmt):
    program, signature = ex.export_step(lstm, fmt)
    step = ex.load_step(ex.save_step(program, signature, tmp_path / "s"))
    state = step.initial_state(2)
    out, new = step(torch.zeros(2, 1), state)
    assert out.shape == (2, 10) and [s.shape for s in new] == [(1, 2, 6), (1, 2, 6)]
    with pytest.raises(ex.ExportError, match=r"x_t must be \(batch, 1\) float32, got \(2, 3\) float32"):
        step(torch.zeros(2, 3), state)
    with pytest.raises(ex.ExportError, match=r"x_t must be \(batch, 1\) float32, got \(2, 1\) int64"):
        step(torch.zeros(2, 1, dtype=torch.long), state)
    with pytest.raises(ex.ExportError, match=r"state\[0\] must be \(1, batch, 6\) float32 with batch 3 \(as x_t\)"):
        step(torch.zeros(3, 1), state)
    with pytest.raises(ex.ExportError, match="state must be a tuple of 2 tensors"):
        step(torch.zeros(2, 1), state[:1])


def test_a_file_plmu_did_not_write(tmp_path):
    (tmp_path / "x.pt2").write_bytes(b"not a program")
    with pytest.raises(ex.ExportError, match=r"neither a torch\.export \.pt2 nor a TorchScript file"):
        ex.load_step(tmp_path / "x.pt2")
    with pytest.raises(ex.ExportError, match="no exported step at"):
        ex.load_step(tmp_path / "missing.pt2")


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_a_failed_write_keeps_the_previous_export_whole(lstm, tmp_path, fmt, monkeypatch):
    """Issue 16: on a full disk the second export tore the first (and torch's writer aborted the process)."""
    import errno

    from plmu.errors import RunFolderError
    from plmu.train import checkpoint

    program, signature = ex.export_step(lstm, fmt)
    path = ex.save_step(program, signature, tmp_path / "step.pt2", {"run": "first"})
    before = path.read_bytes()

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint._Sink, "write", full_disk)
    with pytest.raises(RunFolderError, match=r"could not write the export .*step.pt2: No space left on device "
                       r"\(ENOSPC\); free disk space or choose another --output$"):  # fmt: skip
        ex.save_step(program, signature, path, {"run": "second"})
    assert path.read_bytes() == before and ex.read_metadata(path)[1]["run"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.pt2"]  # no temp file left


def test_a_torchscript_file_loads_without_torch_exports_complaints(lstm, tmp_path, capfd, caplog):
    """Issue 16: loading a TorchScript step tried torch.export.load first, which logged 20 lines ending in "your
    checkpoint file is corrupted" before the fallback found the right format."""
    program, signature = ex.export_step(lstm, "torchscript")
    path = ex.save_step(program, signature, tmp_path / "step.pt")
    capfd.readouterr()
    assert ex.read_metadata(path)[0] == "torchscript"
    captured = capfd.readouterr()
    assert "corrupted" not in captured.err + captured.out + caplog.text
