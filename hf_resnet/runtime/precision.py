"""Which precision a run trains in when its flags chose none: bf16/fp16 autocast or fp32, and why.

A precision given to `accelerate launch` (command line, config file or environment) wins; otherwise
the device decides: GPUs by their native types, CPUs by a fixed rule on their bf16 instructions
(`cpu_bf16_rule`), so the same command on the same machine always trains the same model.
"""

from __future__ import annotations

import os
from dataclasses import replace

from . import hardware
from .launcher import LAUNCHER_PRECISIONS, LauncherChoices, launcher_choices


def cpu_bf16_rule(flags: set[str] | None = None, vendor: str | None = None) -> tuple[bool, str]:
    """(bf16 autocast?, why) for training and inference on this CPU, from its instruction set alone.

    A rule, not a timing: a short probe's answer swung either side of fp32 with the machine's load,
    so the load at a first run chose the model. The rule follows whole training steps measured per
    feature set (docs/benchmarks.md): AMX runs bf16 matrix work in hardware; AMD's AVX512-BF16 trained
    faster than fp32, while an Intel Xeon with AVX512-BF16 and no AMX trained slower, its casts costing
    more than the bf16 math saves.
    """
    flags = hardware.cpu_flags() if flags is None else flags
    vendor = hardware.cpu_vendor() if vendor is None else vendor
    native = hardware.native_bf16_cpu(flags)
    if native == "amx_bf16":
        return True, "CPU with AMX-BF16: bf16 autocast by rule"
    if native == "avx512_bf16" and vendor == "AuthenticAMD":
        return True, "AMD CPU with AVX512-BF16: bf16 autocast by rule (whole steps measured faster)"
    if native == "avx512_bf16":
        return False, "CPU has AVX512-BF16 but no AMX: fp32 by rule (bf16 steps measured slower there)"
    return False, "CPU without native bf16 instructions"


def default_mixed_precision() -> tuple[bool, bool, str]:
    """(bf16, fp16, why) for a run whose flags chose neither; see `default_precision`."""
    import torch

    choices = launcher_choices()
    own = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if not choices.launched and own in LAUNCHER_PRECISIONS:  # set by the user for this very process
        choices = replace(choices, mixed_precision=own, mixed_precision_source="ACCELERATE_MIXED_PRECISION")
    cuda = torch.cuda.is_available()
    cuda_bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    return default_precision(cuda, cuda_bf16, None if cuda else cpu_bf16_rule(), choices)


def default_precision(cuda: bool, cuda_bf16: bool, cpu_rule: tuple[bool, str] | None, choices: LauncherChoices):
    """(bf16, fp16, why) for a run whose flags chose neither.

    GPUs: bf16 where native, else fp16 with loss scaling. CPUs: `cpu_rule` (`cpu_bf16_rule`'s answer).
    A precision the user gave `accelerate launch` wins.
    """
    if choices.mixed_precision in LAUNCHER_PRECISIONS:
        bf16, fp16 = LAUNCHER_PRECISIONS[choices.mixed_precision]
        return bf16, fp16, f"{choices.mixed_precision_source}={choices.mixed_precision}"
    if cuda:
        return cuda_bf16, not cuda_bf16, "GPU with native bf16" if cuda_bf16 else "GPU without native bf16"
    bf16, why = cpu_rule if cpu_rule is not None else (False, "CPU without native bf16 instructions")
    return bf16, False, why
