"""plmu-bench --text runs its three models and reports what it measured (tiny lengths: seconds)."""

from plmu.bench.text import model_sizes, poolings, report, step_latency, training_tokens_per_second


def test_text_training_table_has_every_model_pooling_and_length():
    rows = training_tokens_per_second(lengths=(8, 16), repeats=1, device="cpu")
    expected = {(m, p, n) for m in model_sizes() for p in poolings(m) for n in (8, 16)}
    assert {(r["model"], r["pooling"], r["length"]) for r in rows} == expected
    assert all(r["tokens_per_second"] > 0 for r in rows)
    parameters = [r["parameters"] for r in rows if r["length"] == 8]
    assert max(parameters) / min(parameters) < 1.02  # equal parameter counts, besides the shared embedding


def test_step_latency_and_report():
    rows = step_latency(contexts=(4, 8), repeats=2)
    assert [r["context"] for r in rows] == [4, 8] and all(r["lmu_ms"] > 0 and r["transformer_ms"] > 0 for r in rows)
    text = report("cpu", quick=True)
    assert (
        "parallel LMU vs LSTM, both read by last" in text
        and "both read by max" in text
        and "(goal at 512 and 2,048: at least 1.3x" in text
        and "transformer step with KV cache" in text
        and "device cpu" in text
        and "Precision 32:" in text
    )
    assert "parallel LMU (max), 16 tokens, precision 32: GEMMs" in text and "LSTM (max), 16 tokens" in text
    assert "bf16 not measured" in text or "Precision bf16:" in text  # measured only where it is native
