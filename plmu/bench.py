"""`plmu-bench`: time one training step of the same model through every memory path, in one process.

A step is forward, cross-entropy, backward and an Adam update. Two cases, at psMNIST's sizes by default:

- ``last``: classify from the last step only (psMNIST): the parallel layer needs m_T alone (eq. 25);
- ``full``: a prediction at every step (Mackey-Glass, text8): the layer's whole output sequence is needed.

Each row reports the median seconds per step, the peak memory the step adds (CUDA: allocator peak; CPU: the
process's resident set, sampled while one step runs, over its level before), and the speed-up over the recurrent
loop of the same parallel model. ``--crossover`` instead times the direct and FFT convolutions over sequence
lengths (the rule behind ``plmu.conv.DIRECT_MAX_STEPS``).
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import torch
from torch import Tensor, nn

from plmu.layers import ParallelLMU
from plmu.original import OriginalLMU

# Targets of the core issue, checked against what this run measured.
TARGET_LAST_VS_LOOP = 150.0
TARGET_FULL_VS_BASELINES = 2.0


class NaiveFFTLMU(ParallelLMU):
    """The textbook parallel LMU: the whole memory by one unchunked FFT under autograd, then the readout.

    Kept here, outside the library, as the "plain FFT" reference the fast paths are measured against.
    """

    def forward(self, x: Tensor, state: Tensor | None = None, return_state: bool | None = None) -> Tensor:
        u = self.f1(self.input_to_memory(x))  # (batch, T, C)
        steps, n = x.shape[1], 2 * x.shape[1]
        H = self.memory.impulse_response(steps, u.dtype)  # (T, d)
        u_f = torch.fft.rfft(u.transpose(1, 2), n=n)[..., None, :]  # (batch, C, 1, F)
        m = torch.fft.irfft(u_f * torch.fft.rfft(H.t(), n=n), n=n)[..., :steps]  # (batch, C, d, T)
        m = m.permute(0, 3, 1, 2).reshape(x.shape[0], steps, -1)
        return self.dropout(self.f2(self._add_skip(self.memory_to_output(m), x)))


class Classifier(nn.Module):
    """A sequence layer then a linear head, applied to the last step or to every step."""

    def __init__(self, layer: nn.Module, hidden: int, classes: int) -> None:
        super().__init__()
        self.layer, self.head = layer, nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(x))


@dataclass
class Row:
    case: str
    path: str
    seconds: float
    peak_mb: float

    def speedup(self, baseline: Row) -> float:
        return baseline.seconds / self.seconds


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The median wall time of ``repeats`` calls of ``run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so the next step's resident set starts from what is live."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    """Memory one call of ``step`` adds at its peak, in MB (see the module docstring for how)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if not sys.platform.startswith("linux"):
        return float("nan")
    _release_freed_memory()
    before = peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step()
    done.set()
    sampler.join()
    return (max(peak, _rss_bytes()) - before) / 2**20


def time_training_step(
    model: nn.Module, x: Tensor, y: Tensor, full: bool, repeats: int, warmup: int
) -> tuple[float, float]:
    """(median seconds per training step, peak MB of one step) for ``model`` on (x, y)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = y.repeat_interleave(x.shape[1]) if full else y

    def step() -> None:
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return median_seconds(step, repeats, warmup), peak_memory_mb(step, x.device)


def build_paths(args: argparse.Namespace, full: bool) -> list[tuple[str, Callable[[], nn.Module]]]:
    """(label, constructor) for every path of one case; the first is the recurrent baseline."""
    sizes = dict(order=args.order, theta=args.theta, memory_d=args.memory_d)

    def parallel(mode: str, cls: type[ParallelLMU] = ParallelLMU) -> Callable[[], nn.Module]:
        return lambda: cls(args.input_size, args.hidden, return_sequences=full, mode=mode, **sizes)

    def original() -> nn.Module:
        return OriginalLMU(args.input_size, args.hidden, return_sequences=full, **sizes)

    if not full:
        return [
            ("recurrent loop (mode=recurrent)", parallel("recurrent")),
            ("last state, one matmul (eq. 25; mode=auto)", parallel("auto")),
            ("original LMU 2019, step loop", original),
        ]
    return [
        ("recurrent loop (mode=recurrent)", parallel("recurrent")),
        ("plain FFT, memory materialised (naive)", parallel("fft", NaiveFFTLMU)),
        ("chunked FFT, memory materialised (mode=fft)", parallel("fft")),
        ("direct conv, memory materialised (mode=direct)", parallel("direct")),
        ("fused: W_m folded into the kernel (mode=auto)", parallel("auto")),
        ("original LMU 2019, step loop", original),
    ]


def run_case(args: argparse.Namespace, case: str, device: torch.device) -> list[Row]:
    full = case == "full"
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, args.steps, args.input_size, generator=generator).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=generator).to(device)
    rows = []
    for label, make in build_paths(args, full):
        if args.skip_original and label.startswith("original"):
            continue
        torch.manual_seed(0)
        model = Classifier(make(), args.hidden, args.classes).to(device)
        seconds, peak = time_training_step(model, x, y, full, args.repeats, args.warmup)
        rows.append(Row(case, label, seconds, peak))
        print(f"  [{case}] {label}: {seconds * 1e3:.1f} ms/step, peak +{peak:.0f} MB", file=sys.stderr, flush=True)
        del model
        _release_freed_memory()
    return rows


def format_table(rows: list[Row]) -> str:
    lines = ["| case | path | ms/step (median) | peak MB | speed-up vs loop |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        baseline = next(r for r in rows if r.case == row.case)
        lines.append(
            f"| {row.case} | {row.path} | {row.seconds * 1e3:.1f} | {row.peak_mb:.0f} | {row.speedup(baseline):.1f}x |"
        )
    return "\n".join(lines)


def check_targets(rows: list[Row]) -> list[str]:
    """One line per target of the core issue: the measured ratio, the target, and whether it is met."""
    by_key = {(r.case, r.path.split(" (")[0]): r for r in rows}
    lines = []

    def line(what: str, fast: Row | None, slow: Row | None, target: float) -> None:
        if fast and slow:
            ratio = fast.speedup(slow)
            verdict = "met" if ratio >= target else "NOT met"
            lines.append(f"- {what}: {ratio:.1f}x (target >= {target:g}x): {verdict}")

    last, fused = (
        by_key.get(("last", "last state, one matmul")),
        by_key.get(("full", "fused: W_m folded into the kernel")),
    )
    line("last-state step vs its recurrent loop", last, by_key.get(("last", "recurrent loop")), TARGET_LAST_VS_LOOP)
    line(
        "full-sequence step vs its recurrent loop",
        fused,
        by_key.get(("full", "recurrent loop")),
        TARGET_FULL_VS_BASELINES,
    )
    line(
        "full-sequence step vs the plain FFT",
        fused,
        by_key.get(("full", "plain FFT, memory materialised")),
        TARGET_FULL_VS_BASELINES,
    )
    plain = by_key.get(("full", "plain FFT, memory materialised"))
    if fused and plain:
        verdict = "met" if fused.peak_mb < plain.peak_mb else "NOT met"
        lines.append(
            f"- full-sequence peak memory vs the plain FFT: {fused.peak_mb:.0f} MB vs {plain.peak_mb:.0f} MB: {verdict}"
        )
    original = by_key.get(("last", "original LMU 2019, step loop"))
    if last and original:
        lines.append(f"- last-state step vs the original LMU (the paper's 'up to 200x'): {last.speedup(original):.0f}x")
    return lines


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def crossover(args: argparse.Namespace, device: torch.device) -> str:
    """Forward+backward of the memory, direct vs FFT, over sequence lengths."""
    from plmu.memory import LegendreMemory

    lines = ["| T | direct ms | fft ms | faster |", "| ---: | ---: | ---: | --- |"]
    memory = LegendreMemory(args.order, args.theta, args.memory_d).to(device)
    for steps in (4, 8, 16, 32, 64, 128, 256, 512):
        u = torch.rand(args.batch, steps, args.memory_d, device=device, requires_grad=True)
        times = {}
        for mode in ("direct", "fft"):
            samples = []
            for _ in range(args.warmup + args.repeats):
                start = time.perf_counter()
                memory(u, mode=mode).sum().backward()
                samples.append(time.perf_counter() - start)
            times[mode] = statistics.median(samples[args.warmup :])
        faster = min(times, key=times.get)
        lines.append(f"| {steps} | {times['direct'] * 1e3:.2f} | {times['fft'] * 1e3:.2f} | {faster} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plmu-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=784, help="sequence length T")
    parser.add_argument("--input-size", type=int, default=1)
    parser.add_argument("--memory-d", type=int, default=1)
    parser.add_argument("--order", type=int, default=468)
    parser.add_argument("--theta", type=float, default=784.0)
    parser.add_argument("--hidden", type=int, default=346)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per path (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cases", default="last,full", help="comma-separated: last, full")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--skip-original", action="store_true", help="leave out the (slow) 2019 LMU rows")
    parser.add_argument("--crossover", action="store_true", help="time direct vs fft over T instead")
    parser.add_argument(
        "--text", action="store_true", help="the text classifiers (LMU, LSTM, transformer) instead: tokens/s, latency"
    )
    parser.add_argument(
        "--lm", action="store_true", help="the text8 language models instead: training and generation characters/s"
    )
    parser.add_argument("--output", type=Path, help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in ("last", "full") for c in cases):
        parser.error(f"--cases must list 'last' and/or 'full', got {args.cases!r}")
    args.cases = cases
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    command = "plmu-bench " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        f"command: `{command.strip()}`",
        f"machine: {machine_description(device)}",
        f"date: {time.strftime('%Y-%m-%d')}",
        f"sizes: batch {args.batch}, T {args.steps}, input {args.input_size}, memory_d {args.memory_d}, "
        f"order {args.order}, theta {args.theta:g}, hidden {args.hidden}, classes {args.classes}; "
        f"median of {args.repeats} steps after {args.warmup} warm-up",
        "",
    ]
    if args.text:  # CPU: the text table is the CPU's
        from plmu.bench_text import report as text_report

        header[3] = "sizes: conf/task_model/imdb_*.yaml"
        body = text_report()
    elif args.lm:  # CPU, as --text
        from plmu.bench_lm import report as lm_report

        header[3] = "sizes: conf/task_model/text8_*.yaml"
        body = lm_report()
    elif args.crossover:
        body = crossover(args, device)
    else:
        rows = [row for case in args.cases for row in run_case(args, case, device)]
        body = format_table(rows) + "\n\n" + "\n".join(check_targets(rows))
    report = "\n".join(header) + body + "\n"
    print(report, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
