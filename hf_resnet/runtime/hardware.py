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


#: bf16 autocast is the CPU default only where it measured at least this much faster than fp32 on the machine
#: itself: on some CPUs with AVX512-BF16 (and no AMX) it is slower, the casts costing more than the bf16 math saves.
MIN_BF16_SPEEDUP = 1.1
#: Where the measured speed-up is kept, so the probe runs once per CPU, torch version and thread count.
CACHE_FILE = Path(os.environ.get("HF_RESNET_CACHE", Path.home() / ".cache" / "hf_resnet")) / "cpu_precision.json"


def _probe_seconds(bf16: bool, reps: int = 3) -> float:
    """Best time of a ResNet block's training step (two 3x3 convolutions, BatchNorm, ReLU) at 56 px, 64 channels."""
    import time

    import torch

    torch.manual_seed(0)
    nn = torch.nn
    block = nn.Sequential(
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
    ).to(memory_format=torch.channels_last)  # fmt: skip
    pixels = torch.randn(8, 64, 56, 56).contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(pixels)
        out.float().sum().backward()
        return time.perf_counter() - start

    step()  # oneDNN builds its kernels on the first call
    return min(step() for _ in range(reps))


def cpu_bf16_speedup(threads: int) -> float:
    """fp32 time / bf16-autocast time of a training step on this CPU with `threads` threads (> 1: bf16 is faster).

    Measured once (about a second) and kept in CACHE_FILE, keyed by CPU model, torch version and threads.
    """
    import json

    import torch

    key = f"{cpu_model()} | torch {torch.__version__} | {threads} threads"
    try:
        cached = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        cached = {}
    if key not in cached:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            cached[key] = round(_probe_seconds(False) / _probe_seconds(True), 3)
        finally:
            torch.set_num_threads(previous)
        try:
            CACHE_FILE.parent.mkdir(parents=True, exist_ok=True)
            CACHE_FILE.write_text(json.dumps(cached, indent=2))
        except OSError:
            pass  # a read-only home: measure again next time
    return float(cached[key])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
