"""Mackey-Glass, exactly as the corrected LMU experiment (Voelker et al., 2019) generated it.

dx/dt = β x(t−τ) / (1 + x(t−τ)^n) − γ x(t), β = 0.2, γ = 0.1, n = 10, τ = 17, by forward Euler with dt = 0.1
(10 sub-steps per sample, a 170-sub-step delay line). 128 series of 5000 + 15 + 100 samples from one RandomState(0)
stream; tanh(x − 1), the first 100 samples dropped, the global mean removed. Input x[t], target x[t + 15].
Series 0-63 train (the last 32 of them validation), 64-127 test. Check: predicting y = x gives test NRMSE 162.400%.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from plmu.data.splits import DataSplits, TensorSplit


@dataclass(frozen=True)
class MackeyGlassSpec:
    n_series: int = 128
    steps: int = 5000
    horizon: int = 15
    washout: int = 100
    tau: float = 17.0
    beta: float = 0.2
    gamma: float = 0.1
    power: float = 10.0
    substeps: int = 10
    seed: int = 0


def generate(spec: MackeyGlassSpec) -> np.ndarray:
    """The raw series after tanh(x − 1) and the washout: (n_series, steps + horizon), float64, mean not removed."""
    rng = np.random.RandomState(spec.seed)  # the same stream as the 2019 code's numpy.random.seed(0)
    delay = round(spec.tau * spec.substeps)
    length = spec.steps + spec.horizon + spec.washout
    series = np.empty((spec.n_series, length))
    x = 1.2  # set once: each series starts from the previous one's last value (a quirk of the original code)
    for k in range(spec.n_series):
        history = deque(1.2 + 0.2 * (rng.rand(delay) - 0.5))
        for t in range(length):
            for _ in range(spec.substeps):
                x_tau = history.popleft()
                history.append(x)
                # "/ substeps", not "* dt": the system is chaotic, and the check value needs the same rounding.
                x = x + (spec.beta * x_tau / (1.0 + x_tau**spec.power) - spec.gamma * x) / spec.substeps
            series[k, t] = x
    return np.tanh(series[:, spec.washout :] - 1.0)


def load_series(spec: MackeyGlassSpec, cache_dir: str | Path | None) -> np.ndarray:
    """``generate(spec)``, cached as .npy under ``cache_dir`` (the pure-Python generator takes seconds)."""
    if cache_dir is None:
        return generate(spec)
    key = hashlib.sha1(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir).expanduser() / f"mackey_glass_{key}.npy"
    if path.exists():
        return np.load(path)
    series = generate(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, series)
    tmp.replace(path)
    return series


def mackey_glass(
    cache_dir: str | Path | None = None,
    n_series: int = 128,
    steps: int = 5000,
    horizon: int = 15,
    n_train: int = 32,
    n_val: int = 32,
    seed: int = 0,
) -> DataSplits:
    """Train / validation / test splits: x (series, steps, 1) → y (series, steps, 1), float32.

    The first ``n_train`` series train, the next ``n_val`` validate, the second half of all series tests.
    """
    if n_train + n_val > n_series // 2:
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} must fit in the first half of n_series = {n_series} "
            f"(the second half is the test set)"
        )
    spec = MackeyGlassSpec(n_series=n_series, steps=steps, horizon=horizon, seed=seed)
    series = load_series(spec, cache_dir)
    mean = float(series.mean())
    series = series - mean
    x = torch.from_numpy(series[:, :steps, None]).float()
    y = torch.from_numpy(series[:, horizon : horizon + steps, None]).float()
    half = n_series // 2
    return DataSplits(
        train=TensorSplit(x[:n_train], y[:n_train]),
        val=TensorSplit(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        test=TensorSplit(x[half:], y[half:]),
        info={"mean_removed": mean, "spec": asdict(spec)},
    )
