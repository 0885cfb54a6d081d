import pytest

from plmu import bench

TINY = ["--batch", "3", "--steps", "20", "--order", "8", "--theta", "10", "--hidden", "4", "--repeats", "1"]


def test_bench_reports_every_path_and_the_targets(tmp_path, capsys):
    output = tmp_path / "speed.md"
    assert bench.main([*TINY, "--output", str(output)]) == 0
    report = output.read_text()
    assert report == capsys.readouterr().out
    assert "command: `plmu-bench --batch 3" in report
    for label in [
        "| last | recurrent loop",
        "| last | last state, one matmul",
        "| last | original LMU 2019",
        "| full | plain FFT, memory materialised (naive)",
        "| full | chunked FFT",
        "| full | direct conv",
        "| full | fused: W_m folded",
    ]:
        assert label in report
    assert "- last-state step vs its recurrent loop:" in report
    assert "- full-sequence step vs the plain FFT:" in report
    assert "peak memory vs the plain FFT" in report


def test_naive_fft_reference_is_exact():
    import torch

    layer = bench.NaiveFFTLMU(2, 3, order=5, theta=6.0).double()
    reference = bench.ParallelLMU(2, 3, order=5, theta=6.0, mode="recurrent").double()
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 17, 2, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=1e-10)


def test_crossover_table(capsys):
    assert bench.main([*TINY, "--crossover", "--warmup", "0"]) == 0
    assert "| T | direct ms | fft ms | faster |" in capsys.readouterr().out


def test_bad_cases_argument():
    with pytest.raises(SystemExit):
        bench.main(["--cases", "middle"])
