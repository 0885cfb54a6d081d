"""plmu-bench --lm runs its three language models and reports what it measured (tiny sizes: seconds)."""

from plmu.bench.lm import generation_characters_per_second, model_sizes, report, training_characters_per_second


def test_lm_training_table_has_every_model():
    rows = training_characters_per_second(chunk=8, repeats=1, device="cpu")
    assert [r["model"] for r in rows] == list(model_sizes())
    assert all(r["characters_per_second"] > 0 and r["parameters"] > 200_000 for r in rows)


def test_generation_and_report():
    rows = generation_characters_per_second(contexts=(4, 8), repeats=2)
    assert len(rows) == 2 * len(model_sizes()) and all(r["characters_per_second"] > 0 for r in rows)
    text = report("cpu", quick=True)
    assert "parallel LMU vs LSTM" in text and "context 4" in text and "device cpu" in text
    assert "goal at least 1.3x" in text and "parallel LMU, precision 32: GEMMs" in text
