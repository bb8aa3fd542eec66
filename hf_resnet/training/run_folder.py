"""What an output folder holds: a previous run, its recipe fingerprint, and which of its checkpoints can be resumed.

A run writes `run_args.json` (the arguments that change its result) into its output folder
when it starts, before the first checkpoint, so a later `--resume_from_checkpoint` can be
compared with the run the checkpoint came from. `recipe.json`, written at the end, is for the
model card and a rerun; a run that was interrupted never writes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

from ..families import config_labels, family_of
from ..flags import fingerprint_names
from ..model.loading import safetensors_problem

logger = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
#: Files that show a folder holds a finished (or finishing) run: its model, results or state.
RUN_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "eval_per_class.json",
    "trainer_state.json",
    "recipe.json",
)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

#: Machine settings that change the numbers a run computes and are not flags: the process count.
MACHINE_VALUES = ("world_size",)


def _plain(value):
    value = getattr(value, "value", value)  # transformers' str enums
    return value if isinstance(value, (int, float, str, bool, type(None), list)) else str(value)


def fingerprint(model_args, data_args, training_args, dataset=None, config=None) -> dict:
    """The arguments a checkpoint's run and a resuming run must share, as JSON-ready values.

    Which they are is declared with each flag (hf_resnet/flags.py): those that change what the run
    computes, less what a resume may change (how long it runs, how it is judged and stopped).
    """
    values = {key: _plain(getattr(model_args, key)) for key in fingerprint_names(type(model_args))}
    values |= {key: _plain(getattr(data_args, key)) for key in fingerprint_names(type(data_args))}
    for key in ("train_dir", "validation_dir"):
        if values[key]:
            values[key] = str(Path(values[key]).expanduser().resolve())
    training = (*fingerprint_names(type(training_args)), *MACHINE_VALUES)
    values |= {key: _plain(getattr(training_args, key)) for key in training}
    if dataset is not None:
        values["dataset"] = f"a {type(dataset).__name__} passed to finetune()"
    if config is not None:  # a layout passed to `finetune(config=...)`: its family names the fields that shape it
        values["layout"] = {key: _plain(getattr(config, key, None)) for key in family_of(config).layout_keys}
    return values


def differences(recorded: dict, current: dict) -> list[str]:
    """`key: recorded there, current here` for each argument that differs; compared as JSON (tuples become lists)."""
    same = json.loads(json.dumps(current))
    return [
        f"{key} {recorded.get(key)!r} there, {same.get(key)!r} here"
        for key in sorted(set(recorded) | set(same))
        if recorded.get(key) != same.get(key)
    ]


def read_fingerprint(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RUN_ARGS_FILE).read_text())
    except (OSError, ValueError):
        return None


def previous_run(folder: Path) -> list[str]:
    """The files and checkpoints of an earlier run in `folder` (empty when there is none)."""
    if not folder.is_dir():
        return []
    found = [name for name in RUN_FILES if (folder / name).is_file()]
    return found + [path.name for path in checkpoints(folder)]


def checkpoints(folder: Path) -> list[Path]:
    """`checkpoint-N` folders, newest (highest step) first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir() if (m := _CHECKPOINT.match(path.name))]
    return [path for _, path in sorted(found, reverse=True) if path.is_dir()]


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (missing or unreadable state, weights, optimizer), or None.

    Reads only file headers: a safetensors header states the file's length, and a `torch.save`
    file is a zip whose directory sits at its end, so a cut-off copy of either is caught cheaply.
    """
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text())
    except ValueError:
        return "trainer_state.json is truncated or corrupt"
    if (checkpoint / "model.safetensors").is_file():
        if problem := safetensors_problem(checkpoint / "model.safetensors"):
            return problem
    elif not (checkpoint / "pytorch_model.bin").is_file():
        return "no model.safetensors"
    for name in ("optimizer.pt", "scheduler.pt", "pytorch_model.bin"):
        path = checkpoint / name
        if path.is_file() and not zipfile.is_zipfile(path):
            return f"{name} is truncated or corrupt"
    return None


def last_intact_checkpoint(folder: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that can be resumed, and (checkpoint, problem) for each newer one skipped."""
    skipped = []
    for checkpoint in checkpoints(folder):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint, skipped
        skipped.append((checkpoint, problem))
    return None, skipped


def read_state(checkpoint: Path) -> dict:
    """A checkpoint's trainer_state.json (global_step, epoch, ...); empty when unreadable."""
    try:
        return json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_labels(checkpoint: Path) -> list[str] | None:
    """The class names a checkpoint was trained on, from its config.json."""
    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config_labels(config) or None


def start(output_dir: Path, values: dict, replace: bool) -> None:
    """Record the run's fingerprint; with `replace`, first remove the previous run's checkpoints and results.

    Its config, processor and card are left to be overwritten at the end, so nothing but what
    this package writes is ever deleted.
    """
    from .checkpoints import STAGING_DIR  # imports the Trainer: only when a run starts

    output_dir.mkdir(parents=True, exist_ok=True)
    if replace:
        for path in [*checkpoints(output_dir), output_dir / STAGING_DIR]:
            if path.is_dir():
                shutil.rmtree(path)
        for name in (*RUN_FILES, RUN_ARGS_FILE):
            if (output_dir / name).is_file():
                os.remove(output_dir / name)
        logger.warning("--overwrite_output_dir: removed the previous run's checkpoints and results in %s", output_dir)
    temporary = output_dir / f".{RUN_ARGS_FILE}.tmp"
    temporary.write_text(json.dumps(values, indent=2))
    os.replace(temporary, output_dir / RUN_ARGS_FILE)
