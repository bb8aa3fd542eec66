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


def cpu_threads() -> tuple[int, str]:
    """(threads, why) for CPU training on this machine, as `decide_threads` says; the run sets them (torch)."""
    return decide_threads(launcher_choices(), dict(os.environ), physical_cores(), local_processes())


#: DataLoader workers beyond this many per training process only add memory: with reduced-size JPEG decoding, 16
#: workers feed more images per second than a ResNet-50 trains on one GPU.
MAX_WORKERS_PER_PROCESS = 16


#: `--data_overlap`: how data work overlaps the training step (hf_resnet/data/prefetch.py, DataLoader workers).
DATA_OVERLAPS = ("auto", "workers", "thread", "none")


def cores_per_process() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def decide_data_overlap(requested: str, workers: int | None, cores: int, gpu: bool) -> tuple[str, int, str]:
    """`(overlap, DataLoader workers, why)` for `--data_overlap` and `--dataloader_num_workers` on this machine.

    What the user set wins. Otherwise a GPU, or a CPU with more than two cores per process, gets a
    worker per core the training loop leaves over (`workers_for`). A CPU-only process with two cores
    or fewer makes its batches between steps: its model threads keep both cores busy, so a worker has
    no idle core to use (it measured no faster there, for a process more), and a prefetch thread,
    though its work overlaps the model's, holds Python's lock in turns with the training loop and
    measured slower than the few milliseconds a batch costs between steps once images are cached
    (docs/benchmarks.md).

    >>> decide_data_overlap("auto", None, 2, gpu=False)[:2], decide_data_overlap("auto", None, 8, gpu=False)[:2]
    (('none', 0), ('workers', 7))
    """
    if requested == "auto" and workers is not None:
        overlap = "workers" if workers > 0 else "none"
        return overlap, workers, f"--dataloader_num_workers {workers}"
    if requested != "auto":
        count = workers if workers is not None else 0 if requested != "workers" else workers_for(cores)
        return requested, count, f"--data_overlap {requested}"
    if gpu or cores > 2:
        count = workers_for(cores)
        where = "a GPU" if gpu else f"{cores} cores per process"
        return "workers", count, f"{where}: a worker per core the training loop leaves over"
    return (
        "none",
        0,
        (
            f"{cores} core{'s' if cores > 1 else ''} per process, no GPU: the model's threads need the cores, so "
            "batches are made between steps, not in a worker process or a prefetch thread"
        ),
    )


def workers_for(cores: int) -> int:
    """DataLoader workers for a training process with `cores` cores: one per core the training loop leaves over."""
    return max(1, min(cores - 1, MAX_WORKERS_PER_PROCESS))
