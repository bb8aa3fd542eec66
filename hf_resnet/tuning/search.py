"""Hyperparameter search with Optuna over the recipe's own knobs.

Why Optuna directly, around the run, and not `Trainer.hyperparameter_search`: the Trainer's search
sets each sampled value on its `TrainingArguments` and rebuilds only the model (`model_init`). Half
of this recipe's space is not there: the freeze depth is a model argument applied when the
checkpoint is loaded, and augmentation strength is built into the training transforms before any
Trainer exists. So each trial is a whole run (`run()`, the body of `hf-resnet train`) with the
trial's flags, and the Trainer-side part of the search is a callback that reports each evaluation
to the trial and stops the run when Optuna prunes it.

The default space (`default_space`) is conditioned on the run (`space_for`), so that no trial is spent
on a setting the run cannot apply. For a run from a checkpoint:

- `learning_rate` (the head's): log-uniform within a decade either side of the run's own (1e-4..1e-2
  around the default 1e-3): the range lr-find's suggestions are checked against
- `backbone_ratio`: the backbone's rate as a share of the head's, log-uniform from a tenth of the
  run's share to ten times it, never above 1 (the head never trains slower than the backbone, as
  lr-find suggests); best.yaml holds the `backbone_learning_rate` it gives
- `freeze_depth`: 0-4 parts frozen from the input (`none`, `embedder`, ... `embedder,stage1,stage2,stage3`)
- `unfreeze_at_epoch`: off, 1 or 2, only those before the last epoch (epochs count from 0, so a
  2-epoch run can unfreeze at 1 only and a 1-epoch run not at all), and only when something is frozen;
  not searched when the run's length is set in steps (`--max_steps`)
- `augmentation`: strength s in [0, 1]: up to 0.5 crops get smaller (`--crop_scale_min` 1 - 1.84 s,
  so s = 0.5 is the single-label default, torchvision's 0.08), beyond it `--random_erasing` grows to
  0.25 and `--auto_augment trivial` joins from s = 0.75
- `label_smoothing_factor`: uniform in [0, 0.2]

From scratch (`--arch`) nothing is pretrained, so only the head rate (which is then every part's),
augmentation and label smoothing are searched. The objective is the final validation value of
`--metric_for_best_model`.

The first trial is the run as given (its flags and defaults, searched ones included), enqueued
with `study.enqueue_trial` at its place in the space: the best trial is then never worse on the
objective than the recipe the search started from, and the sampler learns from it like any trial.
The study lives in `OUTPUT_DIR/study.db` (SQLite), so a search that was stopped resumes where it
was by running the same command again. Each trial trains in `OUTPUT_DIR/trials/trial-N`, removed when
the trial ends. Ctrl-C or SIGTERM stops the search at once: the running trial is marked failed and its
folder removed. A search killed outright (SIGKILL, a power cut) leaves its trial `running`; the next
start marks it failed and removes its folder, once the process that ran it (recorded in the trial) is gone.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import TrainerCallback

from ..data.arguments import SINGLE_LABEL_DEFAULTS
from ..families import BACKBONE_PARTS
from ..runtime.console import one_line_run
from ..runtime.signals import StopRequested, install_stop_at_once, stop_at_once

logger = logging.getLogger(__name__)

INSTALL = 'pip install "hf_resnet[search]"'
STUDY_FILE = "study.db"
BEST_CONFIG = "best.yaml"
TRIALS_TABLE = "trials.csv"
TRIALS_PLOT = "trials.png"
#: Ranges of the default space (see the module docstring): rates a decade either side of the run's.
RATE_SPAN = 10.0
UNFREEZE_EPOCHS = (1, 2)
LABEL_SMOOTHING = (0.0, 0.2)
#: The user attribute that marks the trial of the run as given.
STARTING_RECIPE = "starting_recipe"
#: Where the trials train, inside the search folder; each trial's folder is recorded in its `FOLDER` attribute.
TRIALS_DIR = "trials"
FOLDER = "folder"
#: The user attribute naming the process running a trial (host, pid, start time): a later start tells a trial
#: whose process was killed from one another process is running.
RUNNER = "runner"
#: Flags the search sets itself; a value given for one of them is the starting recipe, not a fixed setting.
SEARCHED = (
    "learning_rate",
    "head_learning_rate",
    "backbone_learning_rate",
    "freeze",
    "unfreeze_at_epoch",
    "crop_scale_min",
    "random_erasing",
    "auto_augment",
    "label_smoothing_factor",
)


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(f"hyperparameter search needs Optuna: {INSTALL}") from None
    return optuna


#: `--crop_scale_min` at augmentation strength 0.5 and above (torchvision's default).
SMALLEST_CROP = 0.08


def augmentation_flags(strength: float) -> dict:
    """One knob for augmentation: crops get smaller, then erasing grows and TrivialAugment joins.

    The single-label default (crops down to 8%, no erasing, no auto-augment) is s = 0.5 and the
    multi-label one (no crop) s = 0, so the space holds the recipes users start from.

    >>> augmentation_flags(0.5)
    {'crop_scale_min': 0.08, 'random_erasing': 0.0, 'auto_augment': 'none'}
    >>> augmentation_flags(1.0)
    {'crop_scale_min': 0.08, 'random_erasing': 0.25, 'auto_augment': 'trivial'}
    """
    return {
        "crop_scale_min": round(1 - (1 - SMALLEST_CROP) * min(1.0, 2 * strength), 4),
        "random_erasing": round(0.25 * max(0.0, 2 * strength - 1), 4),
        "auto_augment": "trivial" if strength >= 0.75 else "none",
    }


def augmentation_strength(crop_scale_min: float, random_erasing: float) -> float:
    """The knob's value for a run's own crop and erasing (the inverse of `augmentation_flags`).

    >>> augmentation_flags(augmentation_strength(0.5, 0.0))["crop_scale_min"], augmentation_strength(0.08, 0.25)
    (0.5, 1.0)
    """
    if crop_scale_min > SMALLEST_CROP:
        return (1 - crop_scale_min) / (2 * (1 - SMALLEST_CROP))
    return min(1.0, 0.5 + 2 * random_erasing)


@dataclass(frozen=True)
class Space:
    """What the search may vary for this run (see the module docstring): every value in it can take effect."""

    pretrained: bool
    head_rates: tuple[float, float]
    backbone_ratios: tuple[float, float] | None = None
    #: Epochs (from 0) at which gradual unfreezing may start: before the last one; empty when none can.
    unfreeze_epochs: tuple[int, ...] = ()


def space_for(model_args, training_args) -> Space:
    """The default space conditioned on the run: its rates, its number of epochs, from a checkpoint or not.

    >>> from types import SimpleNamespace as Args
    >>> run = Args(head_learning_rate=None, learning_rate=1e-3, backbone_learning_rate=None, max_steps=-1)
    >>> space_for(Args(model_name_or_path="ckpt"), Args(**vars(run), num_train_epochs=2))
    Space(pretrained=True, head_rates=(0.0001, 0.01), backbone_ratios=(0.001, 0.1), unfreeze_epochs=(1,))
    >>> space_for(Args(model_name_or_path=None), Args(**vars(run), num_train_epochs=10)).unfreeze_epochs
    ()
    """
    from ..config.plan import PRETRAINED_BACKBONE_LR

    head = training_args.head_learning_rate or training_args.learning_rate
    head_rates = (head / RATE_SPAN, head * RATE_SPAN)
    if not model_args.model_name_or_path:
        return Space(False, head_rates)
    ratio = min(1.0, (training_args.backbone_learning_rate or PRETRAINED_BACKBONE_LR) / head)
    ratios = (ratio / RATE_SPAN, min(1.0, ratio * RATE_SPAN))
    # Epochs run from 0 to ceil(epochs) - 1; unfreezing at the last or later would thaw nothing that trains.
    epochs = math.ceil(training_args.num_train_epochs) if training_args.max_steps <= 0 else 0
    return Space(True, head_rates, ratios, tuple(epoch for epoch in UNFREEZE_EPOCHS if epoch < epochs))


def starting_point(model_args, data_args, training_args, space: Space) -> dict:
    """The run as given, as a point of `space` (the parameters `default_space` samples).

    Where the run lies off the space (a freeze that is not a prefix of the parts, an unfreeze epoch
    the space leaves out, auto-augment without erasing), this is the nearest point; the trial itself
    runs the given recipe unchanged, so only the sampler's picture of it is approximate.
    """
    from ..config.plan import PRETRAINED_BACKBONE_LR

    head = training_args.head_learning_rate or training_args.learning_rate
    crop = data_args.crop_scale_min
    crop = SINGLE_LABEL_DEFAULTS["crop_scale_min"] if crop is None else crop
    point = {
        "learning_rate": head,
        "augmentation": augmentation_strength(crop, data_args.random_erasing),
        "label_smoothing_factor": min(training_args.label_smoothing_factor, LABEL_SMOOTHING[1]),
    }
    if space.pretrained:
        ratio = (training_args.backbone_learning_rate or PRETRAINED_BACKBONE_LR) / head
        frozen = model_args.frozen_parts()
        depth = min(sum(part in frozen for part in BACKBONE_PARTS), len(BACKBONE_PARTS) - 1)
        point |= {"backbone_ratio": min(max(ratio, space.backbone_ratios[0]), 1.0), "freeze_depth": depth}
        if depth and space.unfreeze_epochs:
            unfreeze = training_args.unfreeze_at_epoch
            point["unfreeze_at_epoch"] = unfreeze if unfreeze in space.unfreeze_epochs else None
    return point


def default_space(trial, space: Space) -> dict:
    """Sample one recipe from `space` (see the module docstring) as `{flag: value}`, each value one that applies."""
    head = trial.suggest_float("learning_rate", *space.head_rates, log=True)
    flags = {"learning_rate": head}
    if space.pretrained:
        flags["backbone_learning_rate"] = head * trial.suggest_float(
            "backbone_ratio", *space.backbone_ratios, log=True
        )
        depth = trial.suggest_int("freeze_depth", 0, len(BACKBONE_PARTS) - 1)
        flags["freeze"] = ",".join(BACKBONE_PARTS[:depth]) or "none"
        # Nothing frozen, or no epoch left to thaw in: unfreezing could not take effect, so it is not sampled.
        if depth and space.unfreeze_epochs:
            flags["unfreeze_at_epoch"] = trial.suggest_categorical("unfreeze_at_epoch", [None, *space.unfreeze_epochs])
    flags |= augmentation_flags(trial.suggest_float("augmentation", 0.0, 1.0))
    flags["label_smoothing_factor"] = trial.suggest_float("label_smoothing_factor", *LABEL_SMOOTHING)
    return flags


class ReportToTrial(TrainerCallback):
    """Report each evaluation's metric to the Optuna trial; stop the run when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial, self.key, self.pruned = trial, f"eval_{metric}", False

    def on_train_begin(self, args, state, control, **kwargs):
        # After the run's GracefulStop: a stopped trial is failed, not resumed, so there is no checkpoint to save.
        install_stop_at_once()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.key not in (metrics or {}):
            return
        self.trial.report(metrics[self.key], step=state.global_step)
        if self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True


@dataclass
class SearchResult:
    """The best trial's value and recipe flags, the config file that reruns it, and the search's files."""

    best_value: float
    best_flags: dict
    config: Path
    table: Path
    plot: Path
    trials: int


def typed(flags: dict, *parsed) -> dict:
    """`flags` with each value as the run parsed it where that is a number or a boolean (the command line gives text).

    >>> from types import SimpleNamespace as Args
    >>> typed({"num_train_epochs": "1", "freeze": "none"}, Args(num_train_epochs=1.0, freeze="none"))
    {'num_train_epochs': 1.0, 'freeze': 'none'}
    """
    out = {}
    for key, value in flags.items():
        read = next((getattr(args, key) for args in parsed if hasattr(args, key)), value)
        out[key] = read if type(read) in (bool, int, float) else value
    return out


def _flags_of(argv: list[str]) -> dict:
    """`--flag value` / `--flag=value` / a bare `--flag` (True) pairs as a mapping, in order."""
    flags, index = {}, 0
    while index < len(argv):
        name = argv[index].lstrip("-")
        if "=" in name:
            key, value = name.split("=", 1)
            flags[key], index = value, index + 1
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            flags[name], index = argv[index + 1], index + 2
        else:
            flags[name], index = True, index + 1
    return flags


def search(n_trials: int = 20, timeout: float | None = None, pruner=None, dataset=None, **kwargs) -> SearchResult:
    """Search the default space around a run given as `finetune`'s keyword arguments; `output_dir` holds the search.

    `hf_resnet.search(model_name_or_path="microsoft/resnet-50", train_dir="photos", n_trials=30,
    output_dir="search/photos").config` is `search/photos/best.yaml`, which `hf-resnet train --config` reruns.
    """
    return run_search(kwargs, n_trials, timeout, pruner, dataset)


def run_search(
    flags: dict, n_trials: int = 20, timeout: float | None = None, pruner=None, dataset=None
) -> SearchResult:
    """Search the default space around a run given as `{flag: value}` (its `output_dir` is the search's folder).

    Each trial trains in `OUTPUT_DIR/trials/trial-N`, removed when it ends; the study, the table, the
    plot and the best recipe's config stay in the search folder. Ctrl-C or SIGTERM raises
    `runtime.signals.StopRequested` once the running trial is marked failed. With `--dry_run` nothing is
    searched and the search folder is not created: the first trial (the run as given) is planned and timed,
    and its `FinetuneResult` is returned instead.
    """
    optuna = require_optuna()
    from ..config.parsing import mapping_flags, parse_args

    if not flags.get("output_dir"):
        raise ValueError("--output_dir is required: the folder that holds the search's study, trials and results")
    folder = Path(flags["output_dir"])
    given = {key: value for key, value in flags.items() if key != "output_dir"}
    base = {key: value for key, value in given.items() if key not in SEARCHED}
    model_args, data_args, training_args = parse_args(mapping_flags(given | {"output_dir": str(folder)}, "search"))
    metric = (training_args.metric_for_best_model or "loss").removeprefix("eval_")
    greater = training_args.greater_is_better
    greater = not metric.endswith("loss") if greater is None else greater
    space = space_for(model_args, training_args)
    if training_args.dry_run:
        return _plan_first_trial(given, folder, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    verbose = training_args.verbose
    if not verbose:  # one line per trial, ours (`trial_line`), instead of Optuna's own
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial, trial_dir: Path) -> float:
        from ..training.run import run

        sampled = default_space(trial, space)
        if trial.user_attrs.get(STARTING_RECIPE):
            sampled = {key: value for key, value in given.items() if key in SEARCHED}
        with one_line_run(verbose) as log_level:  # the trial's line is the study's (`trial_line`)
            quiet = {"output_dir": str(trial_dir), "log_level": log_level}
            args = parse_args(mapping_flags(base | sampled | quiet, f"trial {trial.number}"))
            reporter = ReportToTrial(trial, metric)
            result = run(*args, dataset=dataset, callbacks=[reporter])
        trial.set_user_attr("flags", sampled)
        if reporter.pruned:
            raise optuna.TrialPruned()
        value = result.metrics[f"eval_{metric}"]
        if not math.isfinite(value):
            raise optuna.TrialPruned()  # a diverged run is a bad trial, not a failed search
        return value

    with stop_at_once(), _study_errors(folder / STUDY_FILE):  # Ctrl-C between trials stops in one line too
        study = open_study(folder, greater, pruner)
        if not any(trial.user_attrs.get(STARTING_RECIPE) for trial in _live_trials(study)):
            study.enqueue_trial(starting_point(model_args, data_args, training_args, space), {STARTING_RECIPE: True})
        # A resumed study draws on from where it was: with the first seed again it would repeat the first trials.
        study.sampler = optuna.samplers.TPESampler(seed=training_args.seed + len(study.trials))
        run_trials(study, objective, folder, n_trials, timeout, trial_line(metric, n_trials))
    if not any(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials):
        raise ValueError(f"--n_trials {n_trials}: no trial finished (all pruned or failed); run more trials")
    best = study.best_trial
    best_flags = best.user_attrs["flags"]
    config = folder / BEST_CONFIG
    rerun = typed(base, model_args, data_args, training_args) | best_flags | {"output_dir": str(folder / "best")}
    header = (
        f"# Best of {len(study.trials)} trials: eval_{metric} {best.value:.6g}. "
        f"Rerun: hf-resnet train --config {config}\n"
    )
    config.write_text(header + yaml.safe_dump(rerun, sort_keys=False))
    table, plot = write_table(study, metric, folder / TRIALS_TABLE), draw(study, metric, folder / TRIALS_PLOT)
    return SearchResult(best.value, best_flags, config, table, plot, len(study.trials))


def _plan_first_trial(given: dict, folder: Path, dataset=None):
    """`--dry_run`: the first trial (the run as given) planned, checked and timed; no study, no search folder.

    Returns the trial's `FinetuneResult`, whose plan names the trial's folder.
    """
    from ..config.parsing import mapping_flags, parse_args
    from ..training.run import run

    trial_dir = Path(folder) / TRIALS_DIR / "trial-0"  # named, not created: a dry run writes nothing
    args = parse_args(mapping_flags(given | {"output_dir": str(trial_dir)}, "trial 0"))
    return run(*args, dataset=dataset)


def trial_line(metric: str, n_trials: int):
    """An Optuna callback logging one line per finished trial: its value or pruning, the best so far, its flags."""

    def say(study, trial) -> None:
        if trial.state.name == "PRUNED":
            steps = max(trial.intermediate_values, default=0)
            outcome = f"pruned at step {steps}"
        elif trial.value is not None:
            outcome = f"{metric} {trial.value:.4g}"
        else:
            outcome = trial.state.name.lower()
        finished = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = f"; best {study.best_value:.4g} (trial {study.best_trial.number})" if finished else ""
        flags = ", ".join(f"{k}={_shown(v)}" for k, v in trial.user_attrs.get("flags", trial.params).items())
        number = f"Trial {trial.number} ({trial.number + 1} of {n_trials})"  # numbered as trials.csv numbers them
        logger.info("%s: %s%s; %s", number, outcome, best, flags or "as given")

    return say


class StudyError(ValueError):
    """study.db cannot be read: the one line names the file and what to do."""


@contextlib.contextmanager
def _study_errors(path: Path):
    """The storage's errors as one line naming study.db: unreadable when opened, or failing later (deleted, a
    full disk), a stop that met one while telling its trial failed included: the study is what needs seeing to."""
    optuna = require_optuna()
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        cause = error.__cause__ or error
        reason = " ".join(str(getattr(cause, "orig", None) or cause).split())[:200]
        raise StudyError(
            f"{path}: the study could not be read or written ({reason}); move it away to start the search over, "
            "or give another --output_dir"
        ) from None


def open_study(folder: Path, greater: bool, pruner=None):
    """The search's study in `folder`'s study.db, created or resumed; its trials left running by a killed
    search are marked failed (`fail_abandoned`). A damaged or foreign study.db raises `StudyError`."""
    optuna = require_optuna()
    from sqlalchemy.exc import SQLAlchemyError

    path = folder / STUDY_FILE
    try:
        study = optuna.create_study(
            study_name="hf_resnet",
            storage=f"sqlite:///{path.resolve()}",
            load_if_exists=True,
            direction="maximize" if greater else "minimize",
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3),
        )
        fail_abandoned(study, folder)
    except (SQLAlchemyError, ValueError) as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise StudyError(
            f"{path}: not a readable Optuna study ({reason}); move it away to start the search over, "
            "or give another --output_dir"
        ) from None
    return study


def _runner() -> str:
    import psutil

    return f"{socket.gethostname()} {os.getpid()} {psutil.Process().create_time():.2f}"


def _runner_gone(runner: str) -> bool:
    """Whether the process recorded as `runner` has ended (a process of another machine is never taken for gone)."""
    import psutil

    host, pid, started = runner.rsplit(" ", 2)
    if host != socket.gethostname():
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" != started  # the pid now names another process
    except psutil.NoSuchProcess:
        return True


def _live_trials(study) -> list:
    """The trials that ran, run or will run: a failed trial does not count (its recipe is tried again)."""
    from optuna.trial import TrialState

    return [trial for trial in study.trials if trial.state != TrialState.FAIL]


def _remove_trial_folder(folder: Path, trial) -> None:
    """Remove the folder a trial recorded as its own, and only one inside the search's trials folder."""
    recorded = trial.user_attrs.get(FOLDER)
    if recorded and Path(recorded).parent == Path(TRIALS_DIR):
        shutil.rmtree(folder / recorded, ignore_errors=True)


def fail_abandoned(study, folder: Path) -> list[int]:
    """Mark failed the trials left `running` by a search process that is gone, and remove their folders."""
    from optuna.trial import TrialState

    abandoned = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get(RUNNER) and _runner_gone(trial.user_attrs[RUNNER])
    ]
    for trial in abandoned:
        study.tell(trial.number, state=TrialState.FAIL)
        _remove_trial_folder(folder, trial)
        logger.warning(
            "Trial %d was left running by a search that was killed: marked failed, its folder removed", trial.number
        )
    return [trial.number for trial in abandoned]


def run_trials(study, objective, folder: Path, n_trials: int, timeout: float | None, report=None) -> None:
    """Ask, run and tell trials until the study holds `n_trials` finished ones or `timeout` seconds have passed.

    `report(study, trial)` is called for each trial that ends complete or pruned. Ask-and-tell rather than
    `study.optimize`, so an interrupted trial is told failed and its folder removed
    before the stop goes on, and no trial outlives this call in the `running` state but a killed one.
    """
    import time

    from optuna.trial import TrialState

    started, done = time.monotonic(), {TrialState.COMPLETE, TrialState.PRUNED}
    if sum(trial.state in done for trial in study.trials) >= n_trials:
        logger.info("%s already holds %d finished trials: nothing left to run", folder / STUDY_FILE, n_trials)
    try:
        while sum(trial.state in done for trial in study.trials) < n_trials:
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            run_trial(study, objective, folder, report)
    finally:
        if (folder / TRIALS_DIR).is_dir() and not any((folder / TRIALS_DIR).iterdir()):
            (folder / TRIALS_DIR).rmdir()


def run_trial(study, objective, folder: Path, report=None) -> None:
    """One trial in its own folder, told complete, pruned or failed, and its folder removed however it ends."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    trial = study.ask()
    trial.set_user_attr(RUNNER, _runner())
    trial.set_user_attr(FOLDER, f"{TRIALS_DIR}/trial-{trial.number}")
    try:
        value = objective(trial, folder / TRIALS_DIR / f"trial-{trial.number}")
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except BaseException as error:  # a failed run, or Ctrl-C/SIGTERM: the trial is over either way
        error.add_note(f"trial {trial.number}")
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        study.tell(trial, value)
    finally:
        _remove_trial_folder(folder, trial)
    if report is not None:
        report(study, study.trials[trial.number])


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_table(study, metric: str, path: Path) -> Path:
    """One row per trial: number, state, value, the sampled parameters."""
    names = sorted({name for trial in study.trials for name in trial.params})
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["trial", "state", f"eval_{metric}", *names])
        for trial in study.trials:
            value = "" if trial.value is None else f"{trial.value:.6g}"
            params = [_shown(trial.params.get(name, "")) for name in names]
            writer.writerow([trial.number, trial.state.name.lower(), value, *params])
    return path


def draw(study, metric: str, path: Path) -> Path:
    """Each trial's value (pruned ones at their last report), and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maximize = study.direction.name == "MAXIMIZE"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    best, best_line = None, []
    for trial in study.trials:
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        if value is None:
            continue
        pruned = trial.state.name == "PRUNED"
        axes.scatter(trial.number, value, color="tab:grey" if pruned else "tab:blue", marker="x" if pruned else "o")
        if not pruned:
            best = value if best is None else (max if maximize else min)(best, value)
        best_line.append((trial.number, best))
    points = [(n, v) for n, v in best_line if v is not None]
    if points:
        axes.step(*zip(*points), where="post", color="tab:orange", label="best so far")
        axes.legend()
    axes.set_xlabel("trial (x: pruned, at its last evaluation)")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title("Hyperparameter search")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def print_table(path: Path) -> str:
    """The trials table as aligned text, for the terminal."""
    rows = list(csv.reader(path.open()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str], own) -> int:
    """`hf-resnet search`: `own` holds its flags (tuning/cli.py), `argv` the run's."""
    from ..config.parsing import expand_config
    from ..training.recipe import USER_ERRORS, setup_logging, usage_error

    setup_logging()
    try:
        require_optuna()
        result = run_search(_flags_of(expand_config(argv)), n_trials=own.n_trials, timeout=own.timeout)
    except StopRequested as stop:
        timeout = [] if own.timeout is None else ["--timeout", f"{own.timeout:g}"]
        command = shlex.join(["hf-resnet", "search", "--n_trials", str(own.n_trials), *timeout, *argv])
        during = next((note for note in getattr(stop, "__notes__", ()) if note.startswith("trial ")), None)
        what = f"{during} marked failed" if during else "no trial was running"
        print(
            f"hf-resnet search: stopped by {stop.signal_name}; {what}; resume the search with the same command: "
            f"{command}",
            file=sys.stderr,
            flush=True,
        )
        return 130
    except (ImportError, ValueError, OSError, *USER_ERRORS) as error:
        return usage_error(error, "hf-resnet search")
    if not isinstance(result, SearchResult):  # --dry_run: the first trial's plan
        from ..training.run import dry_run_report

        print(f"{dry_run_report(result)}\nThe search would run {own.n_trials} trials like it (the first is this run).")
        return 0
    print(
        f"\n{print_table(result.table)}\n\nBest: {result.best_value:.4g} with {result.best_flags}\n"
        f"Table: {result.table}\nPlot: {result.plot}\nRerun it: hf-resnet train --config {result.config}"
    )
    return 0
