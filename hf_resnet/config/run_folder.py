"""What an output folder holds: a previous run, its recipe fingerprint, and which of its checkpoints can be resumed.

A run writes `run_args.json` (the arguments that change its result) into its output folder
when it starts, before the first checkpoint, so a later `--resume_from_checkpoint` can be
compared with the run the checkpoint came from. `recipe.json`, written at the end, is for the
model card and a rerun, and says whether the run finished (`status`); a run killed before it could
write one has none, so a folder with `run_args.json` and no recipe.json is unfinished too.

While a run writes the folder its main process holds the folder's lock (`FolderLock`), so a second run
into it is refused instead of mixing its files with the first's. Files the package did not write there
are never replaced: `foreign_files` names them before any work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import zipfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here, so folders are not locked there
    fcntl = None

from ..data.examples import EXAMPLES_DIR, written_examples
from ..families import config_labels, family_of
from ..families.loading import safetensors_problem
from ..flags import fingerprint_names

logger = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
RECIPE_FILE = "recipe.json"
STATE_FILE = "trainer_state.json"
#: Files that show a folder holds a finished (or finishing) run: its model, results or state.
RUN_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "eval_per_class.json",
    STATE_FILE,
    RECIPE_FILE,
)
#: What a run's start leaves behind besides checkpoints: files that describe the final weights of an earlier run
#: in this folder (its results, card plots, kept examples) or were made from them by other commands (`hf-resnet
#: evaluate` with its default --output_dir, `hf-resnet export`'s default onnx/ folder). The weights are about to
#: change, so keeping them would publish figures and files of another model.
DERIVED_FILES = (
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "eval_per_class.json",
    RECIPE_FILE,
    "confusion_matrix.png",
    "average_precision.png",
    "training_curves.png",
    "test_results.json",
    "test_per_class.json",
    "test_confusion_matrix.png",
    "test_average_precision.png",
    "test_mistakes.png",
    "deployment.json",
)
#: `hf-resnet export`'s default folders (one per format), each removed whole only when it holds the report that
#: shows export wrote it.
EXPORT_DIRS, EXPORT_REPORT = ("onnx", "openvino"), "export_report.json"
#: Where a checkpoint is written before it is renamed into place (training/checkpoints.py): a checkpoint-N
#: folder in the output folder is always whole.
STAGING_DIR = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

#: Held (an exclusive `flock`) by the main process of the run writing the folder. A dot file: never pushed.
LOCK_FILE = ".hf_resnet.lock"
#: Files a run writes beside its results that a user's folder may already hold (a hand-written card, a config).
#: In a folder no run of this package wrote (no run_args.json), any of them is someone else's.
WRITTEN_BESIDE = ("README.md", "config.json", "preprocessor_config.json", "training_args.bin")
#: The first line of every model card this package writes (hub/card.py): a README.md without it is the user's own,
#: which is never replaced. Deleting the line from a written card makes it the user's.
CARD_MARKER = (
    "<!-- Written by hf_resnet from this folder's files, and written again when the run or a push renders it. "
    "Delete this line to keep your edits: hf_resnet then never replaces this file. -->"
)

#: Machine settings that change the numbers a run computes and are not flags: the process count.
MACHINE_VALUES = ("world_size",)


def _plain(value):
    value = getattr(value, "value", value)  # transformers' str enums
    return value if isinstance(value, (int, float, str, bool, type(None), list)) else str(value)


def fingerprint(model_args, data_args, training_args, dataset=None, config=None, family=None) -> dict:
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
        if family is None:
            family = family_of(config)
        keys = family.layout_keys
        values["layout"] = {key: _plain(getattr(config, key, None)) for key in keys}
    return values


def differences(recorded: dict, current: dict, defaults: dict | None = None) -> list[str]:
    """`key: recorded there, current here` for each argument that differs; compared as JSON (tuples become lists).

    A key the record lacks was not a flag when that run started: it differs only where this run moves it
    off its default (`defaults`), so a run stopped before an upgrade still resumes.

    >>> differences({"seed": 1}, {"seed": 1, "drop_rate": 0.0}, {"drop_rate": 0.0})
    []
    """
    same = json.loads(json.dumps(current))
    defaults = json.loads(json.dumps(defaults or {}))
    return [
        f"{key} {recorded.get(key)!r} there, {same.get(key)!r} here"
        for key in sorted(set(recorded) | set(same))
        if recorded.get(key) != same.get(key)
        and not (key not in recorded and key in defaults and same.get(key) == defaults[key])
    ]


def field_defaults(*classes: type) -> dict:
    """Each field's declared default, as the fingerprint records values (for `differences`)."""
    return {
        item.name: _plain(item.default)
        for cls in classes
        for item in dataclasses.fields(cls)
        if item.default is not dataclasses.MISSING
    }


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
    state = checkpoint / STATE_FILE
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
        return json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_labels(checkpoint: Path) -> list[str] | None:
    """The class names a checkpoint was trained on, from its config.json."""
    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config_labels(config) or None


def written_by_package(card: Path) -> bool:
    """Whether a README.md is a model card this package wrote (it starts its body with `CARD_MARKER`)."""
    try:
        return CARD_MARKER in card.read_text(errors="replace")
    except OSError:
        return False


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` that a run would replace although this package did not write them.

    A README.md without the card's marker is always someone's own; the other names only count in a folder
    that holds no run of this package (no run_args.json), since a run writes them beside its results.
    """
    if not folder.is_dir():
        return []
    ours = (folder / RUN_ARGS_FILE).is_file()
    found = []
    for name in WRITTEN_BESIDE:
        path = folder / name
        if path.is_file() and (not written_by_package(path) if name == "README.md" else not ours):
            found.append(name)
    return found


class FolderBusy(RuntimeError):
    """The output folder is locked by another run; `holder` says which process, as it wrote itself in the lock."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def _holder(fd: int) -> str:
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process that is starting"


#: Descriptors of the locks this process holds, closed in forked children (DataLoader workers): a child
#: inheriting one would keep the folder locked after its parent was killed.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        os.close(fd)  # the child's copy only: the parent's descriptor, and its lock, stay
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class FolderLock:
    """The output folder, taken by one run: an exclusive `flock` on `LOCK_FILE` while the run writes the folder.

    The kernel drops it when the process ends however it ends (SIGKILL, out of memory), so a killed run never
    leaves its folder locked and resuming it needs nothing removed. Only the main process takes it: the other
    ranks write nothing of their own there. Creates the folder.
    """

    def __init__(self, folder: Path):
        self._fd = None
        if fcntl is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderBusy(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        _HELD.add(fd)

    def release(self) -> None:
        if self._fd is not None:
            _HELD.discard(self._fd)
            os.close(self._fd)  # closing the only descriptor drops the lock; the file stays for the next run
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def lock_holder(folder: Path) -> str | None:
    """Which process holds `folder`'s lock ("process PID on HOST"), or None when no run writes it now."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two runs asking at once do not block each other
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)
    return None


def _remove_derived(output_dir: Path) -> list[str]:
    removed = [name for name in DERIVED_FILES if (output_dir / name).is_file()]
    for name in removed:
        os.remove(output_dir / name)
    examples = written_examples(output_dir)  # the images keep_examples wrote and would replace, and only those
    for path in examples:
        path.unlink()
    removed += [f"{EXAMPLES_DIR}/"] if examples else []
    for folder in EXPORT_DIRS:
        if (output_dir / folder / EXPORT_REPORT).is_file():
            shutil.rmtree(output_dir / folder)
            removed.append(f"{folder}/")
    return removed


@contextlib.contextmanager
def withdrawn_if_stopped_early(output_dir: Path):
    """A run stopped before training began takes back the record it wrote: the folder is left as it was found.

    Only what this run made goes: its run_args.json and lock file where the folder held none, and the folder
    where there was none. A resumed or replaced run keeps its new record, which the same command resumes.
    Entered before the folder's lock is taken, so the lock is released first.
    """
    from ..runtime.signals import StopRequested

    existed, recorded, locked = (
        path.exists() for path in (output_dir, output_dir / RUN_ARGS_FILE, output_dir / LOCK_FILE)
    )
    try:
        yield
    except StopRequested as stop:
        if not stop.after_training and not recorded:
            (output_dir / RUN_ARGS_FILE).unlink(missing_ok=True)
            if not locked:
                (output_dir / LOCK_FILE).unlink(missing_ok=True)
            if not existed:
                with contextlib.suppress(OSError):  # anything else in it stays, and the folder with it
                    output_dir.rmdir()
        raise


def start(output_dir: Path, values: dict, replace: bool) -> None:
    """Record the run's fingerprint and mark the folder unfinished until the run writes its recipe.json.

    What described or was made from the folder's previous weights goes first (`DERIVED_FILES`, kept
    examples, an export in `EXPORT_DIRS`), on a resume too, since the weights change either way; with
    `replace`, the previous run's checkpoints too. Its config, processor and card are left to be
    overwritten at the end, so nothing but what this package writes is ever deleted. A staging folder
    left by a run killed mid-save is removed whatever the mode: the caller holds the folder's lock, so
    no other run is writing there.
    """

    output_dir.mkdir(parents=True, exist_ok=True)
    if (output_dir / STAGING_DIR).is_dir():
        shutil.rmtree(output_dir / STAGING_DIR)
    removed = _remove_derived(output_dir)
    replaced = []  # said only when there was a previous run: a new or empty folder held nothing to remove
    if replace:
        for path in checkpoints(output_dir):
            if path.is_dir():
                shutil.rmtree(path)
                replaced.append(path.name)
        for name in (*RUN_FILES, RUN_ARGS_FILE):
            if (output_dir / name).is_file():
                os.remove(output_dir / name)
                replaced.append(name)
    if replaced:
        logger.warning("--overwrite_output_dir: removed the previous run's checkpoints and results in %s", output_dir)
    elif removed:
        logger.warning("The weights in %s change: removed what was made from them: %s", output_dir, ", ".join(removed))
    temporary = output_dir / f".{RUN_ARGS_FILE}.tmp"
    temporary.write_text(json.dumps(values, indent=2))
    os.replace(temporary, output_dir / RUN_ARGS_FILE)


def unfinished(run_dir: Path) -> str | None:
    """Why `run_dir` holds a run that did not finish (its recipe.json `status`), or None for a finished run.

    A folder without run_args.json is no hf_resnet run (a plain transformers checkpoint) and counts as
    finished; with one and no recipe.json, training started and never reached its end.
    """
    try:
        recipe = json.loads((run_dir / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        recipe = None
    if isinstance(recipe, dict):
        status = recipe.get("status", "finished")  # recipes written before the status was recorded: at the end
        return None if status == "finished" else str(status)
    if (run_dir / RUN_ARGS_FILE).is_file():
        return "unfinished: training started here and never finished (stopped, crashed or still running)"
    return None


def portable_checkpoint_path(value: str) -> str:
    """A checkpoint path the Trainer recorded, relative to its run folder wherever that folder was or is now.

    >>> portable_checkpoint_path("/home/alice/runs/beans/checkpoint-40")
    'checkpoint-40'
    """
    parts = Path(value).parts
    found = [index for index, part in enumerate(parts) if _CHECKPOINT.match(part)]
    return Path(*parts[found[-1] :]).as_posix() if found else Path(value).name


def portable_state(state: dict) -> dict:
    """trainer_state.json's content with its checkpoint path (`best_model_checkpoint`) relative to the run folder."""
    best = state.get("best_model_checkpoint")
    return {**state, "best_model_checkpoint": portable_checkpoint_path(best)} if best else state
