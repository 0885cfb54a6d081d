"""plmu-bench's default report (every path, the targets), the naive FFT reference, the crossover, the CLI."""

import runpy
import sys

import pytest
import torch

from plmu import bench
from plmu.bench.models import NaiveFFTLMU, build
from plmu.layers import ParallelLMU

TINY = ["--batch", "3", "--steps", "20", "--order", "8", "--theta", "10", "--hidden", "4", "--repeats", "2"]


def test_bench_reports_every_path_and_the_targets(tmp_path, capsys):
    output = tmp_path / "speed.md"
    assert bench.main([*TINY, "--device", "cpu", "--output", str(output)]) == 0
    report = output.read_text()
    assert report == capsys.readouterr().out
    assert "command: `plmu-bench --batch 3" in report and "machine: " in report
    for label in [
        "| last | recurrent loop",
        "| last | last state, one matmul",
        "| last | original LMU 2019",
        "| full | plain FFT, memory materialised (naive)",
        "| full | FFT, memory materialised (mode=fft",
        "| full | direct conv",
        "| full | fused: W_m folded",
        "| full | mode=auto (what this device's rule picks)",
    ]:
        assert label in report
    assert "ms/step (median ± IQR/2)" in report
    assert "- last-state step vs its recurrent loop:" in report
    assert "- full-sequence step vs the plain FFT:" in report
    assert "peak memory vs the plain FFT" in report
    assert "- full sequence, mode=auto on this device:" in report


def test_naive_fft_reference_is_exact():
    layer = NaiveFFTLMU(2, 3, order=5, theta=6.0).double()
    reference = ParallelLMU(2, 3, order=5, theta=6.0, mode="recurrent").double()
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 17, 2, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=1e-10)


def test_every_path_is_the_librarys_model_and_gives_the_same_outputs_as_the_loop():
    sizes = dict(input_size=1, classes=3, hidden=4, order=6, theta=8.0)
    torch.manual_seed(0)
    loop = build("recurrent", **sizes).double()
    x = torch.randn(2, 12, 1, dtype=torch.float64)
    for path in ("naive_fft", "fft", "direct", "fused"):
        model = build(path, **sizes).double()
        model.load_state_dict(loop.state_dict())
        torch.testing.assert_close(model(x), loop(x), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="last_state"):
        build("last_state", **sizes, full=True)
    with pytest.raises(ValueError, match="path must be one of"):
        build("gru", **sizes)


def test_crossover_says_the_device_and_what_auto_picks(capsys):
    assert bench.main([*TINY, "--crossover", "--crossover-steps", "4,128", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out and "| T | direct ms | fft ms | faster | auto picks | auto right? |" in out
    assert "| 4 |" in out and "| direct |" in out  # auto picks direct at T = 4 (plmu.conv.DIRECT_MAX_STEPS)
    assert "auto's choice was" in out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        bench.main(["--cases", "middle"])
    with pytest.raises(SystemExit):
        bench.main(["--device", "tpu"])
    with pytest.raises(SystemExit):
        bench.main(["--text", "--lm"])  # one study at a time


def test_python_dash_m_runs_the_same_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["plmu-bench", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("plmu.bench", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--scaling" in out and "--device" in out
