"""plmu.train.machine: freed memory kept, bf16 only where native (or as set), the LSTM's bf16 refused by name."""

import ctypes
import platform
import resource

import pytest
import torch
from torch import nn

from plmu.errors import ConfigError
from plmu.train import machine

X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_bf16_flags_are_read_from_cpuinfo():
    assert machine.cpu_bf16_flags(X86_AVX2) == []
    assert machine.cpu_bf16_flags(X86_BF16) == ["avx512_bf16", "amx_bf16"]
    assert machine.cpu_bf16_flags(ARM_BF16) == ["bf16"]
    assert machine.cpu_bf16_flags("") == []


def test_auto_is_bf16_where_native_and_32_elsewhere_with_the_reason(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(machine, "cpu_bf16_flags", lambda cpuinfo=None: [])
    precision, why = machine.resolve_precision("auto", cpu)
    assert precision == "32" and why.startswith("auto: this CPU has no bf16 instructions")
    assert machine.resolve_precision("bf16", cpu) == ("bf16", f"as set; {why.removeprefix('auto: ')}")
    monkeypatch.setattr(machine, "cpu_bf16_flags", lambda cpuinfo=None: ["avx512_bf16"])
    assert machine.resolve_precision("auto", cpu) == ("bf16", "auto: this CPU has AVX512_BF16")
    assert machine.resolve_precision("32", cpu) == ("32", "as set")


def test_bf16_without_native_support_refuses_an_lstm_before_any_step(monkeypatch):
    monkeypatch.setattr(machine, "cpu_bf16_flags", lambda cpuinfo=None: [])
    lstm = nn.Sequential(nn.LSTM(4, 4))
    with pytest.raises(ConfigError, match=r"trainer.precision=bf16: this CPU has no bf16 instructions .*oneDNN's LSTM"):
        machine.check_precision("bf16", torch.device("cpu"), lstm)
    machine.check_precision("32", torch.device("cpu"), lstm)  # float32: nothing to refuse
    machine.check_precision("bf16", torch.device("cpu"), nn.Linear(2, 2))  # no LSTM: emulated, slow, allowed
    monkeypatch.setattr(machine, "cpu_bf16_flags", lambda cpuinfo=None: ["amx_bf16"])
    machine.check_precision("bf16", torch.device("cpu"), lstm)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_kept_memory_is_not_faulted_in_again():
    assert machine.keep_freed_memory() and machine.keep_freed_memory()  # idempotent
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for _ in range(6):  # 32 MB, mapped during the first few rounds (as in a run's first steps)
        torch.empty(8 << 20).fill_(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(8 << 20).fill_(1)  # the same size again: the heap's memory, no new pages
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 2048  # 8,192 pages per tensor otherwise


def test_batches_are_made_ahead_only_on_a_spare_core(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(machine, "usable_cores", lambda: threads + 1)
    assert machine.prefetch_depth(2) == (2, f"batches made 2 ahead on a background thread ({threads} torch threads, "
                                             f"{threads + 1} cores)")  # fmt: skip
    assert machine.prefetch_depth(0)[0] == 0
    monkeypatch.setattr(machine, "usable_cores", lambda: threads)
    depth, why = machine.prefetch_depth(2)
    assert depth == 0 and why.startswith("batches made in turn")
