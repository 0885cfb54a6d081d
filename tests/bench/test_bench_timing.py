"""The one timing harness: median and IQR, the spread warning, warm-up and repeat counts, devices, peak memory."""

import sys

import pytest
import torch

from plmu.bench.timing import SPREAD_WARNING, Timing, measure, peak_memory_mb, resolve_device, warnings_block


def test_median_and_iqr():
    timing = Timing([1.0, 2.0, 3.0, 4.0, 5.0])
    assert timing.median == 3.0
    assert timing.iqr == pytest.approx(2.0)  # quartiles 2 and 4 (inclusive method)
    assert timing.ms() == "3000.0 ± 1000.0"


def test_spread_warning_only_when_the_samples_disagree():
    steady = Timing([1.0, 1.01, 0.99, 1.0])
    assert steady.spread < SPREAD_WARNING and steady.warning("x") is None
    noisy = Timing([1.0, 2.0, 1.0, 2.0])
    message = noisy.warning("fused T=256")
    assert message is not None and "fused T=256" in message and "spread" in message
    assert warnings_block([None, message]) == f"\n- {message}\n"
    assert warnings_block([None]) == ""


def test_measure_runs_warmup_then_repeats():
    calls = []
    timing = measure(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(timing.samples) == 4 and all(s >= 0 for s in timing.samples)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure(lambda: None, repeats=0)


def test_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="--device must be auto, cpu or cuda, got 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident-set sampling reads /proc")
def test_peak_memory_sees_a_large_temporary_allocation():
    def step() -> None:
        x = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        x.add_(1)

    assert peak_memory_mb(step, "cpu") > 30


def test_interleaved_times_every_run_in_turns_and_thread_scaling_restores_the_count():
    import torch

    from plmu.bench.timing import interleaved, thread_scaling

    order = []
    timings = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3  # the warm-ups, then one call of each per round
    assert [len(t.samples) for t in timings.values()] == [3, 3]
    before = torch.get_num_threads()
    seen = []
    scaling = thread_scaling(lambda: seen.append(torch.get_num_threads()), (1, 2), repeats=2, rounds=1)
    assert seen == [1, 1, 1, 2, 2, 2] and sorted(scaling) == [1, 2] and torch.get_num_threads() == before
