"""Where a training step's time goes: its matrix products (GEMMs) against the rest, from ``torch.profiler``.

The GEMMs are the work a model has to do (its multiply-adds); the rest (copies, element-wise passes, reductions,
random masks, the FFT) is what a faster implementation removes. Issue 25's goal for the LMU's text step: the rest
at most 20%. Shares are of the operators' own CPU time, summed over a few profiled steps after a warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.profiler import ProfilerActivity, profile

# The operators that are matrix products (their own time: aten::linear and aten::matmul only dispatch to these)
GEMM_OPS = frozenset(
    {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_addmm_activation"}
)
# oneDNN's recurrent kernels (the LSTM's) are its matrix products too, with the gates fused in
RECURRENT_OPS = frozenset({"aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward", "aten::_thnn_fused_lstm_cell"})
NON_GEMM_GOAL = 0.20


@dataclass
class Split:
    """Seconds of own CPU time per step: in GEMMs and in everything else; the largest of the rest."""

    gemm: float
    rest: float
    top_rest: list[tuple[str, float]]

    @property
    def rest_share(self) -> float:
        total = self.gemm + self.rest
        return self.rest / total if total else 0.0

    def line(self, what: str) -> str:
        top = ", ".join(f"{name.removeprefix('aten::')} {seconds * 1e3:.1f} ms" for name, seconds in self.top_rest)
        return (
            f"{what}: GEMMs {self.gemm * 1e3:.1f} ms, the rest {self.rest * 1e3:.1f} ms a step "
            f"({self.rest_share:.0%} of the operators' time; the largest: {top})"
        )


def gemm_split(step: Callable[[], object], steps: int = 3, warmup: int = 2, top: int = 4) -> Split:
    """Profile ``steps`` calls of ``step`` (after ``warmup``) and split the operators' own CPU time."""
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    gemm, rest = 0.0, {}
    for event in profiler.key_averages():
        seconds = event.self_cpu_time_total / 1e6 / steps
        if event.key in GEMM_OPS or event.key in RECURRENT_OPS:
            gemm += seconds
        elif event.key.startswith("aten::") and seconds > 0:
            rest[event.key] = seconds
    largest = sorted(rest.items(), key=lambda item: -item[1])[:top]
    return Split(gemm, sum(rest.values()), largest)
