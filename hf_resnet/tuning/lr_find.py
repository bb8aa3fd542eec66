"""The learning-rate range test (Smith 2015; fastai's `lr_find`) for the head and the backbone rates.

The test is the run itself, composed with one callback: `run()` builds the data, transforms,
freezing and per-part parameter groups exactly as `hf-resnet train` would, and `RangeTest` sets the
groups' rates at each step (growing exponentially from `start_lr` to `end_lr`), records the loss the
Trainer logs (already averaged over every process, so all ranks see the same curve and suggest the
same rates), stops once the loss diverges, and puts the weights back as they were. The run writes
into a temporary folder that is then removed: nothing trained is kept and the real `--output_dir`
is never touched.

The first sweep moves every part together, keeping the run's backbone/head ratio, and suggests
the head's rate. From a checkpoint a second holds the head at that rate and moves the backbone's
(each stage keeping its `--backbone_lr_decay` share), and suggests the backbone's. There is no
second sweep when the backbone is entirely frozen, nor from scratch unless `--backbone_learning_rate`
is given: every part is then as untrained as the head and the run trains them all at the head's rate.

Reading a curve. The loss is smoothed as fastai does (a debiased exponential moving average) for
the divergence stop, which must be causal; the suggestion and the plot use the same average run
forwards and then backwards, which has no lag. fastai's beta of 0.98 remembers about 50 steps, half
of a 100-step sweep and four decades of rate: its curve bottoms out well after the loss did, and
the sweep runs on long after it diverged. The rule depends on the schedule the rate is for:

- an annealing schedule (the default cosine, linear, ...): the flag sets the peak, reached once and
  left at once, so the suggestion is the rate where the loss stops falling (the minimum of the
  curve: Smith's upper bound for cyclical and one-cycle schedules);
- a constant one (`constant`, `constant_with_warmup`): every step runs at the flag's rate, so the
  suggestion is fastai's "valley", about halfway along the longest descent, safely below the minimum.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..config.arguments import ResNetTrainingArguments
from ..config.plan import scaled_learning_rates
from ..data.arguments import DataArguments
from ..families import HEAD
from ..model.arguments import ModelArguments
from ..runtime.console import one_line_run

logger = logging.getLogger(__name__)

#: Smoothing of the recorded loss (a debiased exponential moving average): a memory of about 10 steps,
#: under a decade of rate at the default 100 steps over 1e-7..10.
SMOOTHING = 0.9
#: The sweep stops once the smoothed loss exceeds this many times its minimum (fastai's threshold).
DIVERGENCE = 4.0
#: Schedules that hold the rate: their suggestion is the valley; every other schedule anneals from the rate given.
CONSTANT_SCHEDULES = ("constant", "constant_with_warmup", "reduce_lr_on_plateau")
#: The top backbone stage: the decay of `--backbone_lr_decay` is counted down from it.
TOP_STAGE = "stage4"
#: Flags that set the rates the test suggests; the printed command replaces them.
RATE_FLAGS = ("learning_rate", "head_learning_rate", "backbone_learning_rate")


@dataclass
class Sweep:
    """One range test: the rate of the swept part at each step, the loss (smoothed, and as logged), the suggestion."""

    rates: list[float]
    losses: list[float]
    suggestion: float
    rule: str
    raw: list[float]


@dataclass
class LrFindResult:
    """The suggested head and backbone rates, the sweeps, and where the plot is.

    `backbone_learning_rate` is None when the backbone is frozen, or from scratch, where it trains
    at the head's rate (`backbone` is then None too: it was not swept).
    """

    head_learning_rate: float
    backbone_learning_rate: float | None
    head: Sweep
    backbone: Sweep | None
    plot: Path | None
    backbone_frozen: bool = False


def smoothed(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """The debiased exponential moving average fastai smooths with: causal, so it lags the loss.

    >>> [round(x, 3) for x in smoothed([1.0, 1.0, 1.0])]
    [1.0, 1.0, 1.0]
    """
    average, out = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**step))
    return out


def without_lag(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """`smoothed` forwards, then backwards over the result: as smooth, with the minimum where the loss's is.

    >>> curve = without_lag([3, 3, 3, 2, 1, 0.5, 1, 2, 3, 3], beta=0.5)
    >>> curve.index(min(curve)), smoothed([3, 3, 3, 2, 1, 0.5, 1, 2, 3, 3], beta=0.5).index(min(smoothed(
    ...     [3, 3, 3, 2, 1, 0.5, 1, 2, 3, 3], beta=0.5)))
    (5, 6)
    """
    return smoothed(smoothed(losses, beta)[::-1], beta)[::-1]


def valley(rates: list[float], losses: list[float]) -> float:
    """fastai's valley: the rate about halfway along the longest stretch of decreasing loss.

    Steeper than the minimum (which is already near divergence) and steadier than the steepest
    point alone, which a single noisy step can move.

    >>> valley([1, 2, 3, 4, 5, 6, 7, 8], [5, 4.5, 4, 3, 2, 1, 3, 9])
    2
    """
    lengths = [1] * len(losses)
    start, end = 0, 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
        if lengths[end] < lengths[i]:
            end, start = i, i - lengths[i] + 1
    third = (end - start) / 3
    return rates[min(len(rates) - 1, start + int(third) + int(third / 2))]


def minimum(rates: list[float], losses: list[float]) -> float:
    """The rate where the loss stops falling: its lowest point.

    >>> minimum([1, 2, 3, 4], [3.0, 1.0, 0.5, 2.0])
    3
    """
    return rates[min(range(len(losses)), key=losses.__getitem__)]


RULES = {"valley": valley, "minimum": minimum}
RULE_TEXT = {
    "minimum": "where the smoothed loss stops falling (the rate is the peak of an annealing schedule)",
    "valley": "fastai's valley, halfway along the longest descent (the schedule holds the rate)",
}


def rule_for(lr_scheduler_type) -> str:
    """`minimum` for a rate that is the peak of an annealing schedule, `valley` for one that is held."""
    name = getattr(lr_scheduler_type, "value", lr_scheduler_type)
    return "valley" if name in CONSTANT_SCHEDULES else "minimum"


def suggest(rates: list[float], losses: list[float], rule: str) -> float:
    """The `rule` of a sweep, leaving out its first tenth and last few steps as fastai does."""
    low, high = len(rates) // 10, len(rates) - min(5, len(rates) // 10)
    if high - low < 3:
        low, high = 0, len(rates)
    return RULES[rule](rates[low:high], losses[low:high])


class RangeTest(TrainerCallback):
    """Sets every parameter group's rate at each step and records the loss the Trainer logs.

    `head_rate=None` sweeps all parts together (the head at the swept rate, the rest in the run's
    ratio to it); a number holds the head there and sweeps the backbone (each stage in the run's
    ratio to stage4). The weights are put back when training ends, so what the run saves and
    evaluates is the model before the test.
    """

    def __init__(
        self, start_lr: float, end_lr: float, num_steps: int, head_rate: float | None = None, rule: str = "minimum"
    ):
        self.start_lr, self.end_lr, self.num_steps, self.head_rate = start_lr, end_lr, num_steps, head_rate
        self.rule = rule
        self.rates: list[float] = []
        self.raw: list[float] = []
        self.base: dict[str, float] = {}
        self.backbone_trains = False
        self._initial = None

    def rate(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / max(1, self.num_steps - 1))

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._initial = {name: value.detach().clone() for name, value in model.state_dict().items()}
        for group in optimizer.param_groups:
            part = group["name"].split("/")[0]
            self.base[part] = group.get("initial_lr", group["lr"])
            if part != HEAD and any(p.requires_grad for p in group["params"]):
                self.backbone_trains = True

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        swept = self.rate(state.global_step)
        for group in optimizer.param_groups:
            part = group["name"].split("/")[0]
            if self.head_rate is None:
                group["lr"] = swept * self.base[part] / self.base[HEAD]
            else:
                group["lr"] = self.head_rate if part == HEAD else swept * self.base[part] / self.base[TOP_STAGE]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" not in (logs or {}):
            return
        self.rates.append(self.rate(state.global_step - 1))
        self.raw.append(logs["loss"])
        curve = smoothed(self.raw)
        if not math.isfinite(curve[-1]) or curve[-1] > DIVERGENCE * min(curve) or len(curve) >= self.num_steps:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._initial is not None:
            model.load_state_dict(self._initial)

    def sweep(self) -> Sweep:
        if len(self.rates) < 2:
            raise ValueError("--num_steps: the range test needs at least 2 steps")
        # A step that overflowed has no place on the curve; the sweep stopped right after it.
        count = next((i for i, loss in enumerate(self.raw) if not math.isfinite(loss)), len(self.raw))
        rates, raw = self.rates[: max(count, 2)], self.raw[: max(count, 2)]
        losses = without_lag(raw)
        return Sweep(rates, losses, suggest(rates, losses, self.rule), self.rule, raw)


def _sweep(model_args, data_args, training_args, test: RangeTest, dataset=None, config=None) -> RangeTest:
    """One range test: the run, for `num_steps` optimizer steps, in a temporary folder that is then removed."""
    _sweep_run(model_args, data_args, training_args, test.num_steps, [test], dataset, config)
    return test


def plan_sweep(model_args, data_args, training_args, num_steps: int, dataset=None, config=None):
    """`--dry_run`: the first sweep's run planned, checked and timed, and nothing swept; its `FinetuneResult`."""
    args = dataclasses.replace(training_args, dry_run=True)
    return _sweep_run(model_args, data_args, args, num_steps, [], dataset, config)


def _sweep_run(model_args, data_args, training_args, num_steps: int, callbacks, dataset=None, config=None):
    from ..training.run import run

    verbose = training_args.verbose
    with tempfile.TemporaryDirectory(prefix="hf_resnet_lr_find_") as folder, one_line_run(verbose) as log_level:
        args = dataclasses.replace(
            training_args,
            log_level=log_level,
            output_dir=folder,
            overwrite_output_dir=False,
            resume_from_checkpoint=None,
            max_steps=num_steps,
            # Every step logs its loss (gathered over the processes); nothing is evaluated, saved or pushed mid-way.
            logging_strategy="steps",
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            early_stopping_patience=None,
            warmup_steps=0,
            lr_scheduler_type="constant",
            ema_decay=None,
            push_to_hub=False,
            tta="none",
        )
        # The run's closing evaluation is of the restored weights; one batch is all it needs.
        data = dataclasses.replace(data_args, keep_examples=False, max_eval_samples=args.per_device_eval_batch_size)
        return run(model_args, data, args, dataset=dataset, config=config, callbacks=callbacks)


def _sweep_line(name: str, sweep: Sweep) -> str:
    return f"Sweep of the {name}: {len(sweep.rates)} steps, {sweep.rule} at {sweep.suggestion:.2g}"


def find_rates(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ResNetTrainingArguments,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    plot: str | Path | None = "lr_find.png",
    dataset=None,
    config=None,
) -> LrFindResult:
    """Run the range tests and return the suggested rates (as the flags take them), writing the plot on rank 0.

    A dry run sweeps nothing: `plan_sweep` plans and times the first sweep's run instead.
    """
    if training_args.dry_run:
        raise ValueError("--dry_run sweeps nothing: plan_sweep() returns the first sweep's plan and timed steps")
    rule = rule_for(training_args.lr_scheduler_type)
    first = RangeTest(start_lr, end_lr, num_steps, rule=rule)
    head_test = _sweep(model_args, data_args, training_args, first, dataset, config)
    head = head_test.sweep()
    logger.info(_sweep_line("head (every part in the run's ratio)", head))
    backbone = None
    # From scratch the backbone is as untrained as the head, and trains at its rate unless told otherwise.
    own_backbone_rate = bool(model_args.model_name_or_path) or training_args.backbone_learning_rate is not None
    if head_test.backbone_trains and own_backbone_rate:
        test = RangeTest(start_lr, end_lr, num_steps, head_rate=head.suggestion, rule=rule)
        backbone = _sweep(model_args, data_args, training_args, test, dataset, config).sweep()
        logger.info(_sweep_line("backbone (head held)", backbone))
    # The run multiplies the flags' rates by --lr_scaling's factor; the sweeps set them after it.
    factor = scaled_learning_rates(1.0, 1.0, training_args)[0]
    result = LrFindResult(
        head.suggestion / factor,
        backbone.suggestion / factor if backbone else None,
        head,
        backbone,
        None,
        backbone_frozen=not head_test.backbone_trains,
    )
    if training_args.should_save and plot is not None:
        result.plot = draw(result, Path(plot))
        Path(plot).with_suffix(".json").write_text(json.dumps(dataclasses.asdict(result), indent=2, default=str))
    return result


def draw(result: LrFindResult, path: Path) -> Path:
    """Loss against rate (log scale) for each sweep, with the suggested rate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    sweeps = [("head (all parts in the run's ratio)", result.head), ("backbone (head held)", result.backbone)]
    for (name, sweep), colour in zip(sweeps, ("tab:blue", "tab:orange")):
        if sweep is None:
            continue
        axes.plot(sweep.rates, sweep.raw, color=colour, alpha=0.25, linewidth=1)
        label = f"{name}: {sweep.rule} {sweep.suggestion:.2g}"
        axes.plot(sweep.rates, sweep.losses, color=colour, label=label)
        axes.axvline(sweep.suggestion, color=colour, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (faint: as logged)")
    # Up to twice the starting loss: the diverged tail would otherwise flatten the part that matters.
    start = max(sweep.losses[0] for sweep in (result.head, result.backbone) if sweep is not None)
    axes.set_ylim(0, 2 * start)
    axes.set_title("Learning-rate range test")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def train_command(argv: list[str], result: LrFindResult) -> str:
    """`hf-resnet train` with the given flags, its rate flags replaced by the suggested ones."""
    kept, skip = [], False
    for arg in argv:
        name = arg.lstrip("-").split("=")[0]
        if skip:
            skip = False
            continue
        if arg.startswith("--") and name in RATE_FLAGS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    rates = ["--learning_rate", f"{result.head_learning_rate:.2g}"]
    if result.backbone_learning_rate is not None:
        rates += ["--backbone_learning_rate", f"{result.backbone_learning_rate:.2g}"]
    return shlex.join(["hf-resnet", "train", *kept, *rates])


def lr_find(
    dataset=None,
    config=None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    plot: str | Path | None = "lr_find.png",
    **kwargs,
) -> LrFindResult:
    """The range test for a run given as `finetune`'s keyword arguments; nothing trained is kept.

    `hf_resnet.lr_find(model_name_or_path="microsoft/resnet-50", train_dir="photos")` returns the head and
    backbone rates (`head_learning_rate`, `backbone_learning_rate`) and both sweeps.
    """
    from ..training.recipe import arguments_from

    model_args, data_args, training_args = arguments_from(kwargs, dataset, config)
    return find_rates(model_args, data_args, training_args, start_lr, end_lr, num_steps, plot, dataset, config)


def main(argv: list[str], own) -> int:
    """`hf-resnet lr-find`: `own` holds its own flags (tuning/cli.py), `argv` the run's."""
    from ..config.parsing import parse_args
    from ..training.recipe import USER_ERRORS, setup_logging, usage_error

    setup_logging()
    try:  # the run's own checks come first in each sweep, against the temporary folder it writes
        model_args, data_args, training_args = parse_args(argv)
        if training_args.dry_run:
            planned = plan_sweep(model_args, data_args, training_args, own.num_steps)
        else:
            result = find_rates(
                model_args, data_args, training_args, own.start_lr, own.end_lr, own.num_steps, own.plot
            )
    except (ValueError, OSError, *USER_ERRORS) as error:
        return usage_error(error, "hf-resnet lr-find")
    if training_args.dry_run:
        from ..training.run import dry_run_report

        if training_args.should_log:
            print(
                f"{dry_run_report(planned)}\nlr-find would sweep {own.num_steps} steps from {own.start_lr:g} to "
                f"{own.end_lr:g} in a temporary folder (above) and write {own.plot}"
            )
        return _leave()
    if training_args.should_save:
        backbone = result.backbone_learning_rate
        if backbone is not None:
            backbone_text = f"backbone {backbone:.2g}"
        elif result.backbone_frozen:
            backbone_text = "backbone frozen (not swept)"
        else:
            backbone_text = "backbone at the head's rate (from scratch)"
        print(
            f"\nSuggested rates: head {result.head_learning_rate:.2g}, "
            + backbone_text
            + f"\nRule: {RULE_TEXT[result.head.rule]}"
            + f"\nPlot: {result.plot}\nTrain with them:\n  {train_command(argv, result)}"
        )
    return _leave()


def _leave() -> int:
    """Leave the process group (if any) before exiting, as `hf-resnet train` does; exit code 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()
    return 0
