"""plmu-bench --scaling: every path over T, the per-case budget that skips larger T, the report files."""

import torch

from plmu import bench
from plmu.bench.models import PATHS
from plmu.bench.scaling import SCALING_PATHS, read_report, run, table


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


def test_replot_redraws_a_stored_report_from_its_tables(tmp_path, capsys):
    # Write a report, delete its plot, redraw it from the markdown alone: the points come back from the tables.
    arguments = ["--scaling", "--quick", "--lengths", "8,16", "--budget", "60", "--output-dir", str(tmp_path)]
    assert bench.main(arguments) == 0
    capsys.readouterr()
    report = tmp_path / "scaling.md"
    points = read_report(report)
    assert {p.path for p in points} == {PATHS[name] for name in SCALING_PATHS}
    assert {p.steps for p in points} == {8, 16} and all(p.timing and p.timing.median > 0 for p in points)
    assert all(p.peak_mb >= 0 for p in points)  # every peak read back (NaN would fail)
    (tmp_path / "scaling.png").unlink(missing_ok=True)
    assert bench.main(["--replot", str(report)]) == 0
    out = capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in out
    else:
        assert "plot: scaling.png" in out and (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_replot_reads_skipped_cells_and_refuses_a_file_without_tables(tmp_path, capsys):
    report = tmp_path / "scaling.md"
    report.write_text(
        "| path (ms/step (median ± IQR/2)) | T = 256 | T = 1,024 |\n| --- | ---: | ---: |\n"
        "| an older label | 12.5 ± 0.5 | 3.06 s/step at T = 256 > budget 2 s |\n\n"
        "| path (peak MB) | T = 256 | T = 1,024 |\n| --- | ---: | ---: |\n"
        "| an older label | 7 | 3.06 s/step at T = 256 > budget 2 s |\n"
    )
    first, second = read_report(report)
    assert (first.path, first.steps, first.timing.median, first.peak_mb) == ("an older label", 256, 0.0125, 7.0)
    assert second.timing is None and "> budget 2 s" in second.skipped
    (tmp_path / "notes.md").write_text("# no tables here\n")
    assert bench.main(["--replot", str(tmp_path / "notes.md")]) == 2
    assert "holds no scaling table" in capsys.readouterr().err
    assert bench.main(["--replot", str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in capsys.readouterr().err
    (tmp_path / "binary.md").write_bytes(b"\xfd\x00\xff")
    assert bench.main(["--replot", str(tmp_path / "binary.md")]) == 2
    assert "binary.md is not a text file" in capsys.readouterr().err
    (tmp_path / "header.md").write_text("| path (peak MB) | T = many |\n")
    assert bench.main(["--replot", str(tmp_path / "header.md")]) == 2
    assert "header.md: a table's header is not 'T = <length>' cells" in capsys.readouterr().err
