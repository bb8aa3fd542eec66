"""Which precision a run trains in when its flags chose none: bf16/fp16 autocast or fp32, and why.

A precision given to `accelerate launch` (command line, config file or environment) wins; otherwise
the device decides: GPUs by their native types, CPUs by their bf16 instructions and a measured speed-up.
"""

from __future__ import annotations

import os
from dataclasses import replace

from .hardware import MIN_BF16_SPEEDUP, cpu_bf16_speedup, native_bf16_cpu, physical_cores
from .launcher import LAUNCHER_PRECISIONS, LauncherChoices, launcher_choices, local_processes


def default_mixed_precision() -> tuple[bool, bool, str]:
    """(bf16, fp16, why) for a run whose flags chose neither; see `launcher.default_precision`."""
    import torch

    choices = launcher_choices()
    own = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if not choices.launched and own in LAUNCHER_PRECISIONS:  # set by the user for this very process
        choices = replace(choices, mixed_precision=own, mixed_precision_source="ACCELERATE_MIXED_PRECISION")
    cuda = torch.cuda.is_available()
    cuda_bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    cpu_bf16 = None if cuda else native_bf16_cpu()
    decided = choices.mixed_precision in LAUNCHER_PRECISIONS
    speedup = cpu_bf16_speedup(max(1, physical_cores() // local_processes())) if cpu_bf16 and not decided else None
    return default_precision(cuda, cuda_bf16, cpu_bf16, choices, speedup)


def default_precision(
    cuda: bool,
    cuda_bf16: bool,
    cpu_bf16: str | None,
    choices: LauncherChoices,
    cpu_speedup: float | None = None,
):
    """(bf16, fp16, why) for a run whose flags chose neither.

    GPUs: bf16 where native, else fp16 with loss scaling. CPUs: bf16 autocast where the CPU has
    native bf16 instructions and bf16 measured faster than fp32 on it (`hardware.cpu_bf16_speedup`:
    AVX512-BF16 without AMX is slower on some CPUs), fp32 elsewhere. A precision the user gave
    `accelerate launch` wins.
    """
    if choices.mixed_precision in LAUNCHER_PRECISIONS:
        bf16, fp16 = LAUNCHER_PRECISIONS[choices.mixed_precision]
        return bf16, fp16, f"{choices.mixed_precision_source}={choices.mixed_precision}"
    if cuda:
        return cuda_bf16, not cuda_bf16, "GPU with native bf16" if cuda_bf16 else "GPU without native bf16"
    if not cpu_bf16:
        return False, False, "CPU without native bf16 instructions"
    if cpu_speedup is None or cpu_speedup >= MIN_BF16_SPEEDUP:
        measured = "" if cpu_speedup is None else f", measured {cpu_speedup:.2f}x fp32's speed here"
        return True, False, f"CPU with native bf16 ({cpu_bf16}){measured}"
    return False, False, f"CPU has {cpu_bf16}, but bf16 measured {cpu_speedup:.2f}x fp32's speed here"
