"""What a training process asks of the machine it runs on: memory that stays mapped, and bf16 where it is native.

**Freed memory kept** (:func:`keep_freed_memory`). glibc hands every freed block above 128 KiB back to the kernel
at once, so the next step's tensor of the same size is mapped anew and faults in page by page: ~2 µs a 4 KiB page on
this project's virtual machine, ~220,000 faults (about half a second) in each IMDB training step at 2,048 tokens,
40% of the step (issue 25). ``mallopt(M_MMAP_MAX, 0)`` serves large blocks from the heap and a high
``M_TRIM_THRESHOLD`` keeps the heap's freed top, so after the first steps a step faults in nothing. The price is
resident memory: the process keeps its peak (+26% resident on the IMDB step). glibc (Linux) only; elsewhere, and
with ``trainer.keep_memory=false``, nothing changes. It is process-wide and stays for the process's life.

**Batches made ahead** (:func:`prefetch_depth`). ``trainer.prefetch`` makes batches on a background thread
(:mod:`plmu.data.prefetch`) only when torch leaves a core free for it: with as many torch threads as cores the
thread takes a core from the training's threads, which then wait for each other at every operator (psMNIST on 2
cores: 5.5 ms a step with the thread, 5.3 ms making each batch in turn, 3.9 ms for the model alone; with one torch
thread and the batches made ahead, 5.2 ms against the model's 4.9 ms). ``OMP_NUM_THREADS`` below the cores frees one.

**Precision** (:func:`resolve_precision`). ``trainer.precision=auto`` trains in bf16 (autocast) where the device
runs it natively and in float32 elsewhere: a CPU without bf16 instructions emulates it (on an AVX2-only CPU the LMU's
step was 8x slower in bf16 than in float32, and oneDNN's LSTM refuses bf16 there). Native: a CPU with AVX512_BF16
or AMX-BF16 (x86) or the BF16 extension (Arm), a CUDA GPU of compute capability 8.0 or newer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

import torch
from torch import nn

from plmu.errors import ConfigError

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_kept = False


def keep_freed_memory() -> bool:
    """Keep freed memory in the process (module docstring); True if it is (now or already), False where glibc's
    allocator is not the one in use."""
    global _kept
    if _kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # no libc by that name, or no mallopt in it
        return False
    return _kept


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bf16 features this CPU reports (Linux ``/proc/cpuinfo``; ``cpuinfo`` to parse given text)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags = set(value.split())
            return [name for name in ("avx512_bf16", "amx_bf16", "bf16") if name in flags]
    return []


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bf16 natively, the reason in a few words)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"compute capability {major}.{minor}" + ("" if native else ", below 8.0")
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        if flags:
            return True, f"this CPU has {', '.join(flag.upper() for flag in flags)}"
        capability = torch.backends.cpu.get_cpu_capability()
        return False, f"this CPU has no bf16 instructions ({capability}): bf16 would be emulated, several times slower"
    return False, f"not known for device type {device.type}"


def resolve_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """(the precision a run trains in, "32" or "bf16"; why, for the log) from ``trainer.precision``."""
    if setting != "auto":
        if setting == "bf16":
            native, reason = native_bf16(device)
            return "bf16", "as set" + ("" if native else f"; {reason}")
        return setting, "as set"
    native, reason = native_bf16(device)
    return ("bf16" if native else "32"), f"auto: {reason}"


def check_precision(precision: str, device: torch.device, model: nn.Module) -> None:
    """Refuse bf16 where it cannot run: oneDNN's LSTM has no bf16 kernel on a CPU without bf16 instructions (a
    traceback in the first step otherwise)."""
    if precision != "bf16" or device.type != "cpu" or native_bf16(device)[0]:
        return
    if any(isinstance(module, nn.LSTM) for module in model.modules()):
        raise ConfigError(
            f"trainer.precision=bf16: {native_bf16(device)[1]}, and oneDNN's LSTM has no bf16 kernel without them; "
            f"use trainer.precision=auto (float32 here) or trainer.precision=32"
        )


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def prefetch_depth(setting: int) -> tuple[int, str]:
    """(the batches to make ahead on a background thread, why, for the log) from ``trainer.prefetch``."""
    if setting == 0:
        return 0, "batches made in turn (trainer.prefetch=0)"
    threads, cores = torch.get_num_threads(), usable_cores()
    if threads >= cores:
        return 0, (
            f"batches made in turn: torch's {threads} threads use all {cores} cores (a thread beside them would "
            f"slow them; OMP_NUM_THREADS={cores - 1} leaves one for it)"
            if cores > 1
            else "batches made in turn: one core"
        )
    return setting, f"batches made {setting} ahead on a background thread ({threads} torch threads, {cores} cores)"
