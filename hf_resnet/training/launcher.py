"""Fitting a run to the machine and the launcher: how many CPU threads train, and in which precision.

`accelerate launch` gives each process it starts `OMP_NUM_THREADS=1` (unless `--cpu`) and
`ACCELERATE_MIXED_PRECISION=no` whether or not the user asked for them, so a training process
cannot tell a choice from a launcher default by its own environment: on a CPU that left all
but one core idle. The launcher's command line, config file and environment can tell, so they
are read here, and only what the user set explicitly is kept; everything else is decided from
what the machine has.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..hardware import MIN_BF16_SPEEDUP, physical_cores

logger = logging.getLogger(__name__)

#: Precisions `accelerate launch --mixed_precision` accepts, as (bf16, fp16).
LAUNCHER_PRECISIONS = {"no": (False, False), "bf16": (True, False), "fp16": (False, True)}


@dataclass(frozen=True)
class LauncherChoices:
    """What the user told `accelerate launch` explicitly (None: not said, or no launcher)."""

    launched: bool = False
    threads: int | None = None
    threads_source: str = ""
    mixed_precision: str | None = None
    mixed_precision_source: str = ""


def _launch_arguments(cmdline: list[str]) -> list[str] | None:
    """The `accelerate launch` options in a launcher's command line, or None if it is no accelerate launcher."""
    for index, token in enumerate(cmdline):
        name = Path(token).name
        if token == "accelerate.commands.launch" or name == "accelerate-launch":
            return cmdline[index + 1 :]
        if name == "accelerate" and index + 1 < len(cmdline) and cmdline[index + 1] == "launch":
            return cmdline[index + 2 :]
    return None


def _launcher_config(config_file: str | None) -> dict:
    """The accelerate config file the launcher read (`--config_file`, else the default one, if present)."""
    import yaml
    from accelerate.commands.config import default_config_file

    path = Path(config_file) if config_file else Path(default_config_file)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def launcher_choices(cmdline: list[str] | None = None, environ: dict | None = None) -> LauncherChoices:
    """Read the parent `accelerate launch` process's explicit choices; `LauncherChoices()` when there is none."""
    if cmdline is None or environ is None:
        try:
            import psutil

            parent = psutil.Process().parent()
            cmdline, environ = parent.cmdline(), parent.environ()
        except Exception:  # no parent, no permission, no psutil: nothing was launched by accelerate that we can see
            return LauncherChoices()
    options = _launch_arguments(cmdline)
    if options is None:
        return LauncherChoices()
    from accelerate.commands.launch import launch_command_parser

    args, _ = launch_command_parser().parse_known_args(options)
    config = _launcher_config(args.config_file)
    threads, threads_source = None, ""
    if args.num_cpu_threads_per_process is not None:
        threads, threads_source = args.num_cpu_threads_per_process, "accelerate launch --num_cpu_threads_per_process"
    elif environ.get("OMP_NUM_THREADS", "").isdigit():
        threads, threads_source = int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS set before accelerate launch"
    precision, precision_source = None, ""
    if args.mixed_precision is not None:
        precision, precision_source = args.mixed_precision, "accelerate launch --mixed_precision"
    elif config.get("mixed_precision") is not None:
        precision, precision_source = str(config["mixed_precision"]), "the accelerate config file"
    elif environ.get("ACCELERATE_MIXED_PRECISION"):
        precision, precision_source = environ["ACCELERATE_MIXED_PRECISION"], "ACCELERATE_MIXED_PRECISION"
    return LauncherChoices(True, threads, threads_source, precision, precision_source)


def local_processes() -> int:
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def decide_threads(choices: LauncherChoices, environ: dict, cores: int, processes: int) -> tuple[int, str]:
    """(intra-op threads, why) for one training process on a CPU; an explicit user setting wins."""
    if choices.threads is not None:
        return choices.threads, f"{choices.threads_source}={choices.threads}"
    if not choices.launched and environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(environ["OMP_NUM_THREADS"]), f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']}"
    threads = max(1, cores // processes)
    launcher = "; accelerate launch had set 1" if choices.launched else ""
    return threads, f"{cores} physical cores / {processes} process{'es' if processes > 1 else ''}{launcher}"


def use_cpu_threads() -> str:
    """Set torch's thread count for CPU training as `decide_threads` says; return the sentence for the summary."""
    import torch

    threads, why = decide_threads(launcher_choices(), dict(os.environ), physical_cores(), local_processes())
    torch.set_num_threads(threads)
    return f"threads: {threads} ({why})"


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
