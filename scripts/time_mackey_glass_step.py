"""Time one Mackey-Glass training step (batch 32 × 5000 steps, MSE, Adam) of each model at the task's paper sizes.

    python scripts/time_mackey_glass_step.py [--repeats 3] [--models plmu,lstm,original_lmu]

Builds the models from the same configs `plmu-train` uses (conf/task/mackey_glass.yaml), so the sizes match.
The original LMU's step loop is slow here (a Python loop over 5000 steps × 4 layers, then its backward pass).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from plmu.train.run import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="plmu,lstm,original_lmu", help="comma-separated model families")
    args = parser.parse_args()
    from hydra import compose, initialize_config_module

    x, y = torch.randn(32, 5000, 1), torch.randn(32, 5000, 1)
    families = args.models.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} after 1 warm-up")
    print("| model | parameters | s/training step |\n| --- | ---: | ---: |")
    for family in families:
        with initialize_config_module(config_module="plmu.conf", version_base="1.3"):
            cfg = compose("config", overrides=["task=mackey_glass", f"model={family}"])
        model = build_model(cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        print(f"| {family} | {model.num_parameters:,} | {statistics.median(times[1:]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
