"""What the machine has: cores and native bf16 instructions. Facts only; what to do with them is decided elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

#: CPU flags (Linux /proc/cpuinfo names) of instructions that run bf16 matrix work natively; without them
#: torch emulates bf16 and autocast makes a CPU slower, not faster.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def physical_cores() -> int:
    """Cores this process may run on, counting hyper-threads once (they share one core's matrix units)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
    except ImportError:
        physical = logical
    return max(1, min(physical, logical))


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16_cpu(flags: set[str] | None = None) -> str | None:
    """The CPU feature that runs bf16 natively (`amx_bf16`, `avx512_bf16`), or None."""
    flags = cpu_flags() if flags is None else flags
    found = next((flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags), None)
    if found is None and not flags:  # not Linux: ask torch (private helpers, so guarded)
        import torch

        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        found = "avx512_bf16" if probe is not None and probe() else None
    return found


def cpu_vendor() -> str:
    """`GenuineIntel`, `AuthenticAMD`, ... (the `vendor_id` of /proc/cpuinfo); "" where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
