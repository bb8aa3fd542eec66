"""Trainer callbacks of a fine-tuning run: gradual unfreezing, epochs for the data, step times for the results,
and the console's one line per evaluation."""

from __future__ import annotations

import logging
import math
import statistics
import time

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..families import Family
from ..model.freezing import freeze, unfreeze

logger = logging.getLogger(__name__)


class GradualUnfreezing(TrainerCallback):
    """Unfreeze the deepest frozen part at `start`, then one more every `every` epochs, on any number of processes.

    The frozen set is recomputed from the epoch number at each epoch start, so a run resumed
    from a checkpoint lands in the same state as one that never stopped.

    With several processes, DistributedDataParallel reduces the gradients of exactly the
    parameters that required one when it wrapped the model, so a part thawed later would train
    on each rank's own gradient and the replicas would drift apart. Hence every part is left
    trainable until the Trainer has wrapped the model (`on_init_end` thaws them, `on_train_begin`
    freezes again), and DDP runs with `find_unused_parameters` (`ddp_arguments`): frozen
    parameters take no part in the backward pass, DDP marks them unused and leaves their
    gradient empty, so AdamW skips them exactly as in one process. The alternatives, measured in
    docs/benchmarks.md ("Gradual unfreezing on several processes"): learning rates held at zero
    is the slowest (a full backward pass and gradient reduction through the frozen parts, and
    AdamW moments and weight decay see parts that one process never touches, so the schedule
    would differ), and re-preparing the model at each thaw needs the Trainer's private loop
    (it keeps its own reference to the wrapped model) for a step that is no faster.
    """

    def __init__(self, model, frozen: list[str], start: int, every: int, family: Family | None = None):
        self.model, self.frozen, self.start, self.every = model, list(frozen), start, max(1, every)
        self.family = family

    @staticmethod
    def ddp_arguments(world_size: int) -> dict:
        """`TrainingArguments` changes that gradual unfreezing needs with `world_size` processes."""
        return {"ddp_find_unused_parameters": True} if world_size > 1 else {}

    def frozen_at(self, epoch: int) -> list[str]:
        thawed = 0 if epoch < self.start else 1 + (epoch - self.start) // self.every
        return self.frozen[: max(0, len(self.frozen) - thawed)]

    def _apply(self, epoch: int) -> list[str]:
        still_frozen = self.frozen_at(epoch)
        thawed = [part for part in self.frozen if part not in still_frozen]
        unfreeze(self.model, thawed, self.family)
        freeze(self.model, still_frozen, self.family)
        return thawed

    def on_init_end(self, args, state, control, **kwargs):
        if args.world_size > 1:  # DDP must see every part as trainable when it wraps the model
            unfreeze(self.model, self.frozen, self.family)

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(math.floor(state.epoch or 0))  # the model is wrapped by now

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor(state.epoch or 0)
        thawed = self._apply(epoch)
        if thawed and args.should_log:
            logger.info("Epoch %d: unfrozen %s; still frozen %s", epoch, thawed, self.frozen_at(epoch))


class EpochSetter(TrainerCallback):
    """Tell each epoch-aware object (`set_epoch`) which epoch starts, before the DataLoader iterator exists.

    Augmentation seeds and stream shuffles are functions of the epoch, and the iterator (and its
    workers) is created right after this callback runs. `floor(state.epoch)` is the epoch being
    run, also on a resume mid-epoch (state.epoch = e + k/n).
    """

    def __init__(self, *targets):
        self.targets = targets

    def on_epoch_begin(self, args, state, control, **kwargs):
        for target in self.targets:
            target.set_epoch(math.floor(state.epoch or 0))


class StepTimes(TrainerCallback):
    """When each optimizer step ends, so the first step (kernel building, worker start-up) is reported apart.

    The Trainer's `train_samples_per_second` divides every sample by the whole `train_runtime`, first
    step included: on a short run, bf16's kernel building or a worker's start-up decides it, and two
    settings compared on it are compared on their start-up. The steady figure is one optimizer
    step's samples over the median time between two step ends after the first, so an evaluation or a
    checkpoint between two steps does not count either.
    """

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.start, self.ends = 0.0, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.ends = time.perf_counter(), []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def figures(self) -> dict[str, float]:
        """`train_first_step_seconds` and, from three steps on, `train_steady_samples_per_second`."""
        if not self.ends:
            return {}
        figures = {"train_first_step_seconds": round(self.ends[0] - self.start, 4)}
        between = [later - earlier for earlier, later in zip(self.ends, self.ends[1:])]  # steps 2, 3, ...
        if len(between) >= 2:
            figures["train_steady_samples_per_second"] = round(self.samples_per_step / statistics.median(between), 3)
        return figures


#: Per-evaluation figures that say how fast, not how good: in trainer_state.json, not on the console.
TIMINGS = ("_runtime", "_samples_per_second", "_steps_per_second")


def evaluation_line(logs: dict, step: int) -> str | None:
    """An evaluation's headline metrics in one line, or None for a log that is no evaluation.

    Per-class figures (`eval_recall/<label>`, one per class) and timings stay in the files.

    >>> evaluation_line({"eval_loss": 0.51234, "eval_accuracy": 0.875, "eval_recall/cat": 1.0, "epoch": 2.0}, 40)
    'Evaluation at epoch 2 (step 40): loss 0.5123, accuracy 0.875'
    """
    shown = {
        key.removeprefix("eval_"): value
        for key, value in logs.items()
        if key.startswith("eval_") and "/" not in key and not key.endswith(TIMINGS)
    }
    if not shown:
        return None
    figures = ", ".join(
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in shown.items()
    )
    epoch = f"epoch {logs['epoch']:.3g} " if "epoch" in logs else ""
    return f"Evaluation at {epoch}(step {step}): {figures}"


class EvaluationBar(ProgressCallback):
    """The Trainer's progress bars, writing one line per evaluation (or, without `lines`, none) for every log."""

    def __init__(self, lines: bool = True):
        super().__init__()
        self.lines = lines

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = evaluation_line(logs or {}, state.global_step)
        if self.lines and line and state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.write(line)


class EvaluationPrinter(PrinterCallback):
    """`PrinterCallback` (the Trainer's console without progress bars), printing one line per evaluation."""

    def __init__(self, lines: bool = True):
        super().__init__()
        self.lines = lines

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = evaluation_line(logs or {}, state.global_step)
        if self.lines and line and state.is_world_process_zero:
            print(line)


def one_line_per_evaluation(trainer, lines: bool = True) -> None:
    """Swap the Trainer's console callbacks, which print every logged dict, for the ones above.

    Without `lines` the evaluations print nothing (a throw-away run whose caller reports it); the bar stays.
    """
    for printer, quiet in ((ProgressCallback, EvaluationBar), (PrinterCallback, EvaluationPrinter)):
        if trainer.pop_callback(printer) is not None:
            trainer.add_callback(quiet(lines))
