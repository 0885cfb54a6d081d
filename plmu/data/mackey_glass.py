"""Mackey-Glass, exactly as the corrected LMU experiment (Voelker et al., 2019) generated it.

dx/dt = β x(t−τ) / (1 + x(t−τ)^n) − γ x(t), β = 0.2, γ = 0.1, n = 10, τ = 17, by forward Euler with dt = 0.1
(10 sub-steps per sample, a 170-sub-step delay line). 128 series of 5000 + 15 + 100 samples from one RandomState(0)
stream; tanh(x − 1), the first 100 samples dropped, the global mean removed. Input x[t], target x[t + 15].
Series 0-63 train (the last 32 of them validation), 64-127 test. Check: predicting y = x gives test NRMSE 162.400%.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from plmu.data.folders import data_folder
from plmu.data.splits import DataSplits, TensorSplit, check_int
from plmu.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MackeyGlassSpec:
    """The generator's settings; their hash names the cache file, so a change never reads a stale cache."""

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


def _cache_folder(cache_dir: object) -> Path:
    """``cache_dir`` as a Path, or a ConfigError naming task.data.cache_dir when it cannot be a folder."""
    return data_folder(
        cache_dir,
        "task.data.cache_dir",
        "a folder or null (no cache)",
        "set task.data.cache_dir (or data_dir) to a folder, or to null to not cache",
    )


def _read_cache(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached series, or None when there is none or it is unusable (then a warning names the file)."""
    try:
        series = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as error:  # truncated, garbage, a folder, unreadable
        log.warning("Mackey-Glass cache %s is unreadable (%s); generating the series again", path, error)
        return None
    if not isinstance(series, np.ndarray):  # an .npz archive under the .npy name
        series.close()
        log.warning("Mackey-Glass cache %s is not a .npy array; generating the series again", path)
        return None
    if series.shape != shape or series.dtype != np.float64 or not np.isfinite(series).all():
        log.warning(
            "Mackey-Glass cache %s holds %s %s, expected finite float64 %s; generating the series again",
            path,
            series.dtype,
            series.shape,
            shape,
        )
        return None
    return series


def _write_cache(path: Path, series: np.ndarray) -> None:
    """Write ``series`` to ``path`` atomically: a temp file of this process's own (so two runs at once never
    write into the same one) renamed over ``path``. A folder that cannot be written only costs a warning: the
    series can always be generated again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        log.warning("cannot cache the Mackey-Glass series in %s (%s); using them uncached", path.parent, error)
        return
    done = False
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, series)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them the cache
        os.chmod(name, 0o644)  # mkstemp makes it 0600; a cache np.save wrote was readable by all
        os.replace(name, path)
        done = True
    except OSError as error:
        log.warning("cannot write the Mackey-Glass cache %s (%s); using the series uncached", path, error)
    finally:
        if not done:
            with contextlib.suppress(OSError):  # removing it is tidying up: never the error a run reports
                Path(name).unlink(missing_ok=True)


def load_series(spec: MackeyGlassSpec, cache_dir: str | Path | None) -> np.ndarray:
    """``generate(spec)``: (n_series, steps + horizon) float64, cached as .npy under ``cache_dir`` (the pure-Python
    generator takes seconds). A cache that cannot be read, or holds the wrong array, is generated again and
    replaced; a folder that cannot be written only costs a warning."""
    if cache_dir is None:
        return generate(spec)
    folder = _cache_folder(cache_dir)
    key = hashlib.sha1(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"mackey_glass_{key}.npy"
    series = _read_cache(path, (spec.n_series, spec.steps + spec.horizon))
    if series is not None:
        return series
    series = generate(spec)
    _write_cache(path, series)
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

    The first ``n_train`` series train, the next ``n_val`` validate, the second half of all series tests; all
    three are non-empty and disjoint. Every argument is checked before anything is generated or read.
    """
    # Even: the series are split into two equal halves (train + validation | test) as in the 2019 code; an odd
    # count would give the test half one series more. At least 4: one train and one validation series.
    meaning = "the number of series: the first half trains and validates, the second half tests"
    if check_int("task.data.n_series", n_series, 4, meaning) % 2 != 0:
        raise ConfigError(
            f"task.data.n_series must be an even integer ({meaning}), got {n_series}: fix task.data.n_series in "
            f"the config or command line"
        )
    check_int("task.data.steps", steps, 1, "the time steps of each sequence")
    # 0 is allowed: the target is then the input itself, a degenerate but well-defined task (a pipeline sanity
    # check: NRMSE should go to 0); only a negative horizon is wrong (the target would be in the past, and the
    # slices below would not line up).
    check_int("task.data.horizon", horizon, 0, "how many steps ahead the target is")
    check_int("task.data.n_train", n_train, 1, "the number of training series")
    check_int("task.data.n_val", n_val, 1, "the number of validation series")
    check_int("task.data.seed", seed, 0, "a numpy RandomState seed", below=2**32)
    if n_train + n_val > n_series // 2:
        # a ValueError (not a ConfigError): the runner prefixes it with task.data (the loader), as it always did
        raise ValueError(
            f"n_train + n_val = {n_train + n_val} must fit in the first half of n_series = {n_series} "
            f"(the second half is the test set): lower task.data.n_train or task.data.n_val, or raise "
            f"task.data.n_series"
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
