"""Fitting a run to the machine and the launcher: how many CPU threads and DataLoader workers it uses.

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

from .hardware import physical_cores

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
    """Set torch's thread count for CPU training as `decide_threads` says; return it and why, for the records."""
    import torch

    threads, why = decide_threads(launcher_choices(), dict(os.environ), physical_cores(), local_processes())
    torch.set_num_threads(threads)
    return f"{threads} ({why})"


#: DataLoader workers beyond this many per training process only add memory: with reduced-size JPEG decoding, 16
#: workers feed more images per second than a ResNet-50 trains on one GPU.
MAX_WORKERS_PER_PROCESS = 16


def default_num_workers() -> int:
    """DataLoader workers per training process: the CPU cores it may use, less one for the training loop itself.

    None on a CPU-only machine with two cores or fewer: the model's threads already keep every
    core busy, so a worker process adds contention and copies but no parallelism (measured in
    docs/benchmarks.md); the main process decodes between steps instead.

    >>> default_num_workers() >= 0
    True
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if per_process <= 2 and not torch.cuda.is_available():
        return 0
    return max(1, min(per_process - 1, MAX_WORKERS_PER_PROCESS))
