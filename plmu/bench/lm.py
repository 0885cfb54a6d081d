"""``plmu-bench --lm``: the text8 language models at equal parameters, in one process.

Training: characters per second of one step (forward, cross-entropy over every step, backward, fused Adam) of the
text8 configs (``conf/sizes/<family>.yaml``'s text8, ~232k parameters each), batch 32 streams,
chunks of 1024 characters; the LMU and the LSTM continue a carried state, as ``trainer.state=carry`` trains them.
Generation: characters per second of ``model.step`` (embedding → backbone step → logits over 27 symbols) after a
context of 128 … 8192 characters, batch 1: the LMU's and the LSTM's fixed-size states against the transformer's
key/value cache, which each step reads whole. Medians (and spreads) of timed repeats after a warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plmu.bench.configs import task_models
from plmu.bench.profile import NON_GEMM_GOAL, gemm_split
from plmu.bench.text import RATIO_GOAL
from plmu.bench.timing import interleaved, measure, precisions, warnings_block
from plmu.models.sizing import count_parameters
from plmu.models.state import detach_state
from plmu.models.text import language_model

VOCAB, BATCH = 27, 32


def model_sizes() -> dict[str, dict]:
    """{label: language_model arguments}: every registered family with text8 sizes (conf/sizes/<family>.yaml)."""
    return task_models("text8")


def _lm_step(name: str, chunk: int, precision: str, device: torch.device):
    """(a training step of ``name``'s text8 model on one batch of streams, its parameter count)."""
    sizes = model_sizes()[name]
    torch.manual_seed(0)
    model = language_model(VOCAB, **sizes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    batch = {
        "inputs": torch.randint(0, VOCAB, (BATCH, chunk), device=device),
        "target": torch.randint(0, VOCAB, (BATCH, chunk), device=device),
    }
    carry = model.carry_error() is None  # the state runs on from chunk to chunk, as trainer.state=carry trains
    state = [None]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if carry:
                logits, new_state = model.forward_with_state(batch, state[0])
                state[0] = detach_state(new_state)
            else:
                logits = model(batch)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch["target"].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, count_parameters(model)


def training_characters_per_second(
    chunk: int = 1024, repeats: int = 3, device: torch.device | str = "cpu", precision: str = "32"
) -> list[dict]:
    """One row per model: parameters, seconds per step (median), characters/s, the harness's spread warning; the
    models' steps timed in turns (:func:`plmu.bench.timing.interleaved`)."""
    device = torch.device(device)
    steps = {name: _lm_step(name, chunk, precision, device) for name in model_sizes()}
    timings = interleaved({name: step for name, (step, _) in steps.items()}, repeats, 1, device)
    return [
        {
            "model": name,
            "parameters": parameters,
            "chunk": chunk,
            "precision": precision,
            "seconds": timings[name].median,
            "characters_per_second": BATCH * chunk / timings[name].median,
            "warning": timings[name].warning(f"{name} training, {precision}"),
        }
        for name, (_, parameters) in steps.items()
    ]


@torch.no_grad()
def generation_characters_per_second(
    contexts: tuple[int, ...] = (128, 1024, 8192), repeats: int = 50, device: torch.device | str = "cpu"
) -> list[dict]:
    """One row per (model, context): characters/s of one ``model.step`` after that context, batch 1."""
    device = torch.device(device)
    rows = []
    for name, sizes in model_sizes().items():
        torch.manual_seed(0)
        model = language_model(VOCAB, **sizes).eval().to(device)
        for context in contexts:
            ids = torch.randint(0, VOCAB, (1, context), device=device)
            _, state = model.backbone(model.adapter(ids), None, return_state=True)  # the context, in parallel
            token = torch.randint(0, VOCAB, (1,), device=device)
            timing = measure(lambda m=model, t=token, s=state: m.step(t, s), repeats, 3, device)
            rows.append(
                {
                    "model": name,
                    "context": context,
                    "characters_per_second": 1 / timing.median,
                    "warning": timing.warning(f"{name} generation after {context}"),
                }
            )
    return rows


def report(
    device: torch.device | str = "cpu",
    chunk: int = 1024,
    contexts: tuple[int, ...] = (128, 1024, 8192),
    quick: bool = False,
) -> str:
    if quick:
        chunk, contexts = 8, (4, 8)
    device = torch.device(device)
    measured, skipped = precisions(device)
    lines = [
        f"text8 language models, batch {BATCH} streams × {chunk} characters, training step (forward, backward, fused "
        f"Adam), the models timed in turns; torch {torch.__version__}, device {device.type}, "
        f"{torch.get_num_threads()} threads",
        "",
        "| model | parameters | precision | training characters/s |",
        "| --- | ---: | --- | ---: |",
    ]
    warnings, ratios = [], []
    for precision in measured:
        training = training_characters_per_second(chunk, repeats=2 if quick else 5, device=device, precision=precision)
        warnings += [r["warning"] for r in training]
        lines += [
            f"| {r['model']} | {r['parameters']:,} | {precision} | {r['characters_per_second']:,.0f} |"
            for r in training
        ]
        speed = {r["model"]: r["characters_per_second"] for r in training}
        ratio = speed["parallel LMU"] / speed["LSTM"]
        ratios.append(f"{ratio:.2f}x in {precision} ({'met' if ratio >= RATIO_GOAL else 'not met'})")
    lines.append(f"- parallel LMU vs LSTM: {', '.join(ratios)}; goal at least {RATIO_GOAL}x (issue 25)")
    if skipped:
        lines.append(f"- {skipped}")
    generation = generation_characters_per_second(contexts, repeats=5 if quick else 50, device=device)
    lines += [
        "",
        "Generation, batch 1, one character per step after a context of N characters: characters/s",
        "",
        "| model | " + " | ".join(f"context {n:,}" for n in contexts) + " |",
        "| --- | " + " | ".join("---:" for _ in contexts) + " |",
    ]
    for name in model_sizes():
        rates = [r["characters_per_second"] for r in generation if r["model"] == name]
        lines.append(f"| {name} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
    lmu = [r["characters_per_second"] for r in generation if r["model"] == "parallel LMU"]
    lines.append(
        f"- parallel LMU: {lmu[-1] / lmu[0]:.2f}x the speed at {contexts[-1]:,} characters of context as at "
        f"{contexts[0]:,} (flat: about 1x)"
    )
    if device.type == "cpu":  # last: the profiler slows the steps timed after it; on a GPU its CPU times would be
        # the launches, not the kernels
        split = gemm_split(_lm_step("parallel LMU", chunk, "32", device)[0], steps=2 if quick else 3)
        lines.append("- " + split.line("parallel LMU, precision 32") + f"; goal: the rest at most {NON_GEMM_GOAL:.0%}")
    warnings = [r["warning"] for r in training] + [r["warning"] for r in generation]
    return "\n".join(lines) + "\n" + warnings_block(warnings)
