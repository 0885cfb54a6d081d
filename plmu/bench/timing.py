"""The one timing harness every benchmark uses: warm-up, device synchronisation, median and spread, peak memory.

A sample is one call of the timed function, fenced by ``torch.cuda.synchronize()`` on a CUDA device (kernels are
asynchronous: without the fence the clock would stop before the GPU finished). The report is the median and the
inter-quartile range (IQR, the 25th to 75th percentile); an IQR above ``SPREAD_WARNING`` of the median means the
samples disagree (a shared machine, frequency scaling, a background job) and the number should not be trusted alone,
so :meth:`Timing.warning` says so and every report prints it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

SPREAD_WARNING = 0.2  # IQR / median above this: the report warns


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``/``cuda`` as given (cuda refused when there is none)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu (or auto)")
    return torch.device(name)


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds per call: every sample, with the median and the inter-quartile range."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q3 - q1

    @property
    def spread(self) -> float:
        """IQR / median: 0 for identical samples."""
        return self.iqr / self.median if self.median > 0 else 0.0

    def warning(self, what: str) -> str | None:
        """A one-line warning when the spread is large, else None."""
        if self.spread <= SPREAD_WARNING:
            return None
        return (
            f"warning: {what}: spread {self.spread:.0%} of the median (IQR {self.iqr * 1e3:.1f} ms over "
            f"{len(self.samples)} samples, above {SPREAD_WARNING:.0%}): noisy, compare with care"
        )

    def ms(self) -> str:
        """'12.3 ± 0.4' (median ± IQR/2, in ms)."""
        return f"{self.median * 1e3:.1f} ± {self.iqr * 5e2:.1f}"


def measure(run: Callable[[], object], repeats: int, warmup: int = 1, device: torch.device | str = "cpu") -> Timing:
    """Time ``repeats`` calls of ``run`` after ``warmup`` untimed ones, synchronising ``device`` around each."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        run()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return Timing(samples)


def interleaved(
    runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, device: torch.device | str = "cpu"
) -> dict[str, Timing]:
    """Time each of ``runs`` ``repeats`` times, in turns (one call of each, round after round), so that a change in
    the machine's speed (another tenant, the clock) hits them alike: the comparisons of a report are made this way."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            samples[key].append(time.perf_counter() - start)
    return {key: Timing(values) for key, values in samples.items()}


def thread_scaling(
    run: Callable[[], object], counts: tuple[int, ...], repeats: int, rounds: int = 2
) -> dict[int, Timing]:
    """``run`` timed with each count of torch threads: ``rounds`` rounds of a block of ``repeats`` calls per count
    (a warm-up call after each change: switching the count on every call measured 1.3x for a step that runs 1.6x
    faster on 2 threads in blocks); the thread count is restored afterwards."""
    before = torch.get_num_threads()
    samples: dict[int, list[float]] = {n: [] for n in counts}
    try:
        for _ in range(rounds):
            for n in counts:
                torch.set_num_threads(n)
                samples[n] += measure(run, repeats, warmup=1).samples
    finally:
        torch.set_num_threads(before)
    return {n: Timing(values) for n, values in samples.items()}


def precisions(device: torch.device) -> tuple[list[str], str | None]:
    """The precisions worth timing on ``device`` ("32", and "bf16" where it is native), and why bf16 is not."""
    from plmu.train.machine import native_bf16

    native, reason = native_bf16(device)
    return (["32", "bf16"], None) if native else (["32"], f"bf16 not measured: {reason}")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so the next measurement starts from what is live."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_mb(step: Callable[[], object], device: torch.device | str) -> float:
    """Memory one call of ``step`` adds at its peak, in MB.

    CUDA: the allocator's peak (``max_memory_allocated``) over what was allocated before. CPU: the process's resident
    set, sampled every 0.5 ms while the step runs, over its level before (Linux only; NaN elsewhere).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if not sys.platform.startswith("linux"):
        return float("nan")
    release_freed_memory()
    before = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        done.set()
        sampler.join()
    return (max(peak, _rss_bytes()) - before) / 2**20


def machine_description(device: torch.device) -> str:
    """The device's name, cores and torch threads, and torch's version: the header of every report."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def warnings_block(lines: list[str | None]) -> str:
    """The harness's spread warnings, one per line (empty when there are none)."""
    kept = [line for line in lines if line]
    return ("\n" + "\n".join(f"- {line}" for line in kept) + "\n") if kept else ""
