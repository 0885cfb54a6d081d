"""``plmu-bench --mackey-glass``: one Mackey-Glass training step per model, where its time goes, and its floor.

The models come from the configs ``plmu-train`` composes (``task=mackey_glass``, each registered family with sizes
in ``conf/sizes/<family>.yaml`` but the transformer; the parallel LMU is 4 layers × 72 units, order 4),
so the sizes match the task. A step: batch 32 × 5000 steps, MSE, backward, Adam. The original LMU's cell runs
under ``torch.compile`` (what a careful user would do; its first step, which compiles, is the untimed warm-up).

``--profile`` adds, for the parallel LMU and the LSTM: the top operators of one step (``torch.profiler``, self CPU
time), the step's matmul/conv FLOPs (``torch.utils.flop_counter``, plus the LSTM kernels by formula; FFTs are not
counted) and the floor those FLOPs set at this machine's GEMM rate, measured in the same run: the rate of a large
square matmul (the best this CPU does) and of the step's thin shape (batch·T rows × the layer's width), which bounds
what a real step can reach.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from plmu.bench.configs import compose, sized_families
from plmu.bench.timing import measure, synchronize, warnings_block
from plmu.models.backbones import family_label

BATCH, STEPS = 32, 5000
# The transformer is left out: its attention over 5000 steps needs tens of GB (batch × heads × T² scores).
SKIPPED_FAMILIES = ("transformer",)
TOP_OPS = 12


def families() -> list[str]:
    """The registered families with Mackey-Glass sizes, but the transformer (:mod:`plmu.bench.configs`)."""
    return sized_families("mackey_glass", skip=SKIPPED_FAMILIES)


def build(family: str, compile_original: bool = True) -> torch.nn.Module:
    """The model ``plmu-train task=mackey_glass model=<family>`` trains."""
    from plmu.models.build import build_model

    model = build_model(compose(["task=mackey_glass", f"model={family}"]))
    if family == "original_lmu" and compile_original:
        for layer in model.backbone.layers:  # the cell alone: compiling the 5000-step loop would unroll it
            layer.cell = torch.compile(layer.cell)
    return model


def training_step(model: torch.nn.Module, batch: int, steps: int, device: torch.device):
    """One step (forward, MSE, backward, Adam) on random (batch, steps, 1) inputs and targets."""
    model = model.to(device)
    x, y = torch.randn(batch, steps, 1, device=device), torch.randn(batch, steps, 1, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def gemm_rate(m: int, k: int, n: int, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of an (m × k) · (k × n) float32 matmul on ``device`` (median of ``repeats``)."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    timing = measure(lambda: a @ b, repeats, 2, device)
    return 2 * m * k * n / timing.median


def step_flops(step, model: torch.nn.Module, batch: int, steps: int) -> int:
    """The matmul/conv FLOPs of one call of ``step`` (forward and backward): torch's FLOP counter, plus the LSTM
    kernels it does not see (per layer and step 2·4H·(I + H) per example forward, twice that backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    for lstm in (m for m in model.modules() if isinstance(m, torch.nn.LSTM)):
        for layer in range(lstm.num_layers):
            inputs = lstm.input_size if layer == 0 else lstm.hidden_size
            flops += 3 * 2 * batch * steps * 4 * lstm.hidden_size * (inputs + lstm.hidden_size)
    return flops


def top_ops(step, device: torch.device) -> tuple[list[tuple[str, float, int]], float]:
    """([(operator, self ms, calls)] of the ``TOP_OPS`` largest by self time, total self ms) over one ``step``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) / 1e3
    ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:TOP_OPS]
    return [(e.key, getattr(e, key) / 1e3, e.count) for e in ranked], total


def _short(name: str, width: int = 70) -> str:
    """A kernel's name cut to ``width`` characters (CUDA template names run to hundreds)."""
    return name if len(name) <= width else name[: width - 1] + "…"


def report(
    device: torch.device, quick: bool = False, profile: bool = False, repeats: int = 3, skip_original: bool = False
) -> str:
    batch, steps = (4, 50) if quick else (BATCH, STEPS)
    repeats = 2 if quick else repeats
    timed = [f for f in families() if not ((quick or skip_original) and f == "original_lmu")]
    lines = [
        f"Mackey-Glass training step, batch {batch} × {steps} steps (MSE, Adam); device {device.type}, "
        f"{torch.get_num_threads()} threads; median ± IQR/2 of {repeats} after 1 warm-up",
        "",
        "| model | parameters | ms/step |",
        "| --- | ---: | ---: |",
    ]
    warnings, steps_by_family = [], {}
    for family in timed:
        torch.manual_seed(0)
        model = build(family)
        step = training_step(model, batch, steps, device)
        # the 2019 LMU takes ~30-60 s a step on a CPU: one timed step after the compiling warm-up
        timing = measure(step, 1 if family == "original_lmu" else repeats, 1, device)
        warnings.append(timing.warning(family))
        label = f"{family_label(family)} ({family})"
        lines.append(f"| {label} | {sum(p.numel() for p in model.parameters()):,} | {timing.ms()} |")
        print(f"  [mackey-glass] {family}: {timing.ms()} ms/step", file=sys.stderr, flush=True)
        steps_by_family[family] = (step, timing.median, model)
    if profile:
        lines += ["", *profile_section(steps_by_family, batch, steps, device)]
    return "\n".join(lines) + "\n" + warnings_block(warnings)


def profile_section(steps_by_family: dict, batch: int, steps: int, device: torch.device) -> list[str]:
    """Top operators, FLOPs and the GEMM-rate floor of the parallel LMU's and the LSTM's steps."""
    square = gemm_rate(1024, 1024, 1024, device)
    thin = gemm_rate(batch * steps, 72, 72, device)  # the LMU's per-step readouts: (batch·T × 72) · (72 × 72)
    lines = [
        f"GEMM rate measured in this run: {square / 1e9:.1f} GFLOP/s (1024³ float32 matmul), "
        f"{thin / 1e9:.1f} GFLOP/s at the step's thin shape ({batch * steps:,} × 72 · 72 × 72)",
        "",
        "| model | ms/step | matmul/conv GFLOP per step | floor at the square rate, ms | floor at the thin rate, ms "
        "| step / thin floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    tables = []
    for family in ("plmu", "lstm"):
        if family not in steps_by_family:
            continue
        step, seconds, model = steps_by_family[family]
        flops = step_flops(step, model, batch, steps)
        lines.append(
            f"| {family} | {seconds * 1e3:.1f} | {flops / 1e9:.2f} | {flops / square * 1e3:.1f} | "
            f"{flops / thin * 1e3:.1f} | {seconds / (flops / thin):.1f}x |"
        )
        ops, total = top_ops(step, device)
        tables += [
            "",
            f"Where one {family} step's time goes (torch.profiler, self time; total {total:.0f} ms):",
            "",
            "| operator | self ms | share | calls |",
            "| --- | ---: | ---: | ---: |",
            *[f"| `{_short(name)}` | {ms:.1f} | {ms / total:.0%} | {calls} |" for name, ms, calls in ops],
        ]
    return lines + tables
