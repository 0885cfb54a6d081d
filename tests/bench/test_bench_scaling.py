"""plmu-bench --scaling: every path over T, the per-case budget that skips larger T, the report files."""

import torch

from plmu import bench
from plmu.bench.scaling import run, table


def test_budget_skips_the_larger_lengths_and_says_why():
    # A budget of a nanosecond: every path's first T exceeds it, so each path's larger T are skipped.
    points, _ = run(torch.device("cpu"), lengths=(8, 16, 32), budget=1e-9, quick=True, paths=("recurrent", "fused"))
    measured = [(p.path, p.steps) for p in points if p.timing is not None]
    assert measured == [("recurrent", 8), ("fused", 8)]
    skipped = [p for p in points if p.timing is None]
    assert len(skipped) == 4 and all("> budget 1e-09 s" in p.skipped for p in skipped)
    text = table(points, (8, 16, 32), "ms")
    assert "| recurrent loop (mode=recurrent) |" in text and "> budget 1e-09 s" in text


def test_a_generous_budget_measures_every_length():
    points, _ = run(torch.device("cpu"), lengths=(8, 16), budget=60.0, quick=True, paths=("last_state", "lstm"))
    assert all(p.timing is not None and p.timing.median > 0 for p in points) and len(points) == 4


def test_quick_scaling_writes_its_report_and_plot(tmp_path, capsys):
    assert bench.main(["--scaling", "--quick", "--lengths", "8", "--device", "cpu", "--output-dir", str(tmp_path)]) == 0
    report = (tmp_path / "scaling.md").read_text()
    assert report == capsys.readouterr().out and "command: `plmu-bench --scaling --quick" in report
    labels = ("recurrent loop", "original LMU 2019", "LSTM", "causal transformer", "plain FFT", "fused", "last state")
    for label in labels:
        assert label in report
    assert "peak MB" in report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in report
    else:
        assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
