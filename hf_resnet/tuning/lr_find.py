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

Reading a curve, as fastai does. The loss is smoothed by a debiased exponential moving average
(beta 0.98), forward only: each point depends on the steps before it, never after, so the
explosion at the end cannot leak back into the flat start. The curve is cut at the divergence
point (the first step whose smoothed loss exceeds 4 times its lowest so far, or is not finite), its
first tenth is left out (the loss has not moved yet), and a rule reads what is left:

- `valley` (fastai's default): about halfway along the longest descent of the curve;
- `minimum`: a tenth of the rate at the curve's lowest point (the lowest point is already near
  divergence; a tenth of it is fastai's advice for one-cycle);
- `steep`: the rate where the curve falls fastest against the log of the rate.

`--suggest auto` (the default) picks by what the rate is for. A schedule that holds the rate
(`constant`, `constant_with_warmup`) runs every step at it: `valley`. An annealing one (the default
cosine, linear, ...) reaches it once, as its peak: `minimum`. The forward average lags, so on a
long gentle drift the longest descent starts near the sweep's start and the valley lands far below
a good peak (docs/benchmarks.md measures both).

A suggestion needs a descent to read. The noise of the loss is measured on the flat start (the
first tenth of the steps, at least 5: the spread of successive logged losses, so a trend there does
not count as noise); unless the curve's lowest point sits more than `NOISE_MULTIPLE` times that
noise below the flat start's mean, there is no clear valley and the sweep suggests nothing: the
run's own rate is kept and printed as such. The head's rate is never suggested below the backbone's:
a backbone sweep that finds a higher rate than the head's is capped at the head's and says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..config.arguments import ResNetTrainingArguments
from ..config.plan import PRETRAINED_BACKBONE_LR, scaled_learning_rates
from ..data.arguments import DataArguments
from ..families import HEAD
from ..model.arguments import ModelArguments
from ..runtime.console import one_line_run

logger = logging.getLogger(__name__)

#: fastai's smoothing of the recorded loss (a debiased exponential moving average): a memory of about 50 steps.
SMOOTHING = 0.98
#: The curve is cut, and the sweep stops, once the smoothed loss exceeds this many times its minimum (fastai's).
DIVERGENCE = 4.0
#: A valley is clear when the curve's lowest point is this many noise deviations below the flat start: a
#: batch's loss lands that far below its mean by chance about once in forty steps.
NOISE_MULTIPLE = 2.0
#: The flat start, where the noise is measured: the first tenth of the steps (fastai skips it), at least this many.
FLAT_START = 5
#: Schedules that hold the rate: `--suggest auto` reads them with `valley`; every other anneals from its rate.
CONSTANT_SCHEDULES = ("constant", "constant_with_warmup", "reduce_lr_on_plateau")
#: The top backbone stage: the decay of `--backbone_lr_decay` is counted down from it.
TOP_STAGE = "stage4"
#: Flags that set the rates the test suggests; the printed command replaces them.
RATE_FLAGS = ("learning_rate", "head_learning_rate", "backbone_learning_rate")
NO_VALLEY = "no clear valley: keep the defaults"


@dataclass
class Sweep:
    """One range test: the rates, the loss (smoothed, and as logged), where it diverged, and what it suggests.

    `suggestion` is None when the curve has no clear valley (`drop` is not above `NOISE_MULTIPLE`
    times `noise`); `suggestions` holds every rule's reading all the same, for the plot and the record.
    """

    rates: list[float]
    losses: list[float]
    suggestion: float | None
    rule: str
    raw: list[float]
    cut: int = 0
    noise: float = 0.0
    drop: float = 0.0
    suggestions: dict = dataclasses.field(default_factory=dict)

    @property
    def clear(self) -> bool:
        return self.suggestion is not None


@dataclass
class LrFindResult:
    """The head and backbone rates to train with (suggested, or the run's own where a sweep had no clear valley).

    `backbone_learning_rate` is None when the backbone is frozen, or from scratch, where it trains
    at the head's rate (`backbone` is then None too: it was not swept). `notes` says, in words, where
    a rate is not a suggestion (no clear valley, capped at the head's).
    """

    head_learning_rate: float
    backbone_learning_rate: float | None
    head: Sweep
    backbone: Sweep | None
    plot: Path | None
    backbone_frozen: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)
    #: For each swept part: "suggested", "kept" (no clear valley: the run's rate) or "capped" (at the head's).
    sources: dict = dataclasses.field(default_factory=dict)


def smoothed(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """fastai's debiased exponential moving average, forward only: a point never sees the steps after it.

    >>> [round(x, 3) for x in smoothed([1.0, 1.0, 1.0])]
    [1.0, 1.0, 1.0]
    >>> [round(x, 2) for x in smoothed([1.0, 1.0, 1.0, 9.0], beta=0.5)]
    [1.0, 1.0, 1.0, 5.27]
    """
    average, out = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**step))
    return out


def divergence_point(curve: list[float]) -> int:
    """The index of the first point above `DIVERGENCE` times the lowest before it (or not finite); else the length.

    >>> divergence_point([2.0, 1.0, 1.5, 3.9, 4.1, 9.0])
    4
    """
    lowest = math.inf
    for index, value in enumerate(curve):
        if not math.isfinite(value) or value > DIVERGENCE * lowest:
            return index
        lowest = min(lowest, value)
    return len(curve)


def valley(rates: list[float], losses: list[float]) -> float:
    """fastai's `valley`: the rate about halfway along the longest descent (longest decreasing run of points).

    Lower than the minimum, which is already near divergence, and steadier than the steepest
    point, which one noisy step can move.

    >>> valley([1, 2, 3, 4, 5, 6, 7, 8], [5, 4.5, 4, 3, 2, 1, 3, 9])
    3
    """
    lengths = [1] * len(losses)
    start, end = 0, 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
            if lengths[end] < lengths[i]:
                end, start = i, i - lengths[i]
    third = (end - start) / 3
    return rates[min(len(rates) - 1, start + int(third) + int(third / 2))]


def minimum(rates: list[float], losses: list[float]) -> float:
    """fastai's `minimum`: a tenth of the rate at the lowest point.

    >>> minimum([1, 2, 3, 4], [3.0, 1.0, 0.5, 2.0])
    0.3
    """
    return rates[min(range(len(losses)), key=losses.__getitem__)] / 10


def steep(rates: list[float], losses: list[float]) -> float:
    """fastai's `steep`: the rate where the loss falls fastest against the log of the rate.

    >>> steep([1, 10, 100, 1000], [3.0, 2.9, 1.0, 0.9])
    10
    """
    slopes = [
        (losses[i + 1] - losses[i]) / (math.log(rates[i + 1]) - math.log(rates[i])) for i in range(len(rates) - 1)
    ]
    return rates[min(range(len(slopes)), key=slopes.__getitem__)]


RULES = {"valley": valley, "minimum": minimum, "steep": steep}
RULE_TEXT = {
    "valley": "fastai's valley, halfway along the longest descent of the smoothed loss",
    "minimum": "fastai's minimum, a tenth of the rate where the smoothed loss is lowest",
    "steep": "fastai's steep, where the smoothed loss falls fastest",
}


def rule_for(lr_scheduler_type) -> str:
    """`--suggest auto`'s rule: `valley` for a rate the schedule holds, `minimum` for a peak it anneals from.

    >>> rule_for("cosine"), rule_for("constant")
    ('minimum', 'valley')
    """
    name = getattr(lr_scheduler_type, "value", lr_scheduler_type)
    return "valley" if name in CONSTANT_SCHEDULES else "minimum"


def flat_start(count: int) -> int:
    """Steps of the flat start: the first tenth, at least `FLAT_START` (never more than half the sweep)."""
    return max(1, min(count // 2, max(FLAT_START, count // 10)))


def read_curve(rates: list[float], raw: list[float], rule: str) -> Sweep:
    """Smooth the logged losses, cut them at divergence, measure the noise on the flat start, apply `rule`.

    >>> rates = [10 ** (e / 4) for e in range(-28, 4)]
    >>> flat_then_explode = [0.7 + 0.05 * (-1) ** i for i in range(26)] + [1, 2, 4, 8, 16, 32]
    >>> read_curve(rates, flat_then_explode, "valley").suggestion is None
    True
    """
    curve = smoothed(raw)
    cut = divergence_point(curve)
    start = flat_start(cut)
    steps = [raw[i + 1] - raw[i] for i in range(start - 1)]
    # Successive differences: a slope in the flat start does not count as noise; /sqrt(2) for one loss's spread.
    noise = statistics.pstdev(steps) / math.sqrt(2) if len(steps) > 1 else math.inf
    level = statistics.fmean(raw[:start])
    low = max(start, cut // 10)
    readable = cut - low >= 3
    drop = level - min(curve[low:cut]) if readable else 0.0
    suggestions = {name: RULES[name](rates[low:cut], curve[low:cut]) for name in RULES} if readable else {}
    # A noiseless curve still needs a drop worth the name: a thousandth of the loss.
    clear = readable and drop > max(NOISE_MULTIPLE * noise, 1e-3 * abs(level))
    return Sweep(rates, curve, suggestions[rule] if clear else None, rule, raw, cut, noise, drop, suggestions)


class RangeTest(TrainerCallback):
    """Sets every parameter group's rate at each step and records the loss the Trainer logs.

    `head_rate=None` sweeps all parts together (the head at the swept rate, the rest in the run's
    ratio to it); a number holds the head there and sweeps the backbone (each stage in the run's
    ratio to stage4). The weights are put back when training ends, so what the run saves and
    evaluates is the model before the test.
    """

    def __init__(
        self, start_lr: float, end_lr: float, num_steps: int, head_rate: float | None = None, rule: str = "valley"
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
        if divergence_point(smoothed(self.raw)) < len(self.raw) or len(self.raw) >= self.num_steps:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._initial is not None:
            model.load_state_dict(self._initial)

    def sweep(self) -> Sweep:
        if len(self.rates) < 2:
            raise ValueError("--num_steps: the range test needs at least 2 steps")
        return read_curve(self.rates, self.raw, self.rule)


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
    found = f"{sweep.rule} at {sweep.suggestion:.2g}" if sweep.clear else "no clear valley"
    return f"Sweep of the {name}: {len(sweep.rates)} steps, {found}"


def run_rates(model_args: ModelArguments, training_args: ResNetTrainingArguments) -> tuple[float, float | None]:
    """The run's head and backbone rates as flags (given or default): what a sweep without a valley keeps."""
    head = training_args.head_learning_rate or training_args.learning_rate
    backbone = training_args.backbone_learning_rate
    if backbone is None and model_args.model_name_or_path:
        backbone = PRETRAINED_BACKBONE_LR
    return head, backbone


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
    suggest: str = "auto",
) -> LrFindResult:
    """Run the range tests and return the rates to train with (as the flags take them), writing the plot on rank 0.

    A dry run sweeps nothing: `plan_sweep` plans and times the first sweep's run instead.
    """
    if training_args.dry_run:
        raise ValueError("--dry_run sweeps nothing: plan_sweep() returns the first sweep's plan and timed steps")
    suggest = rule_for(training_args.lr_scheduler_type) if suggest == "auto" else suggest
    if suggest not in RULES:
        raise ValueError(f"--suggest {suggest}: choose auto or one of {', '.join(RULES)}")
    # The run multiplies the flags' rates by --lr_scaling's factor; the sweeps set them after it.
    factor = scaled_learning_rates(1.0, 1.0, training_args)[0]
    run_head, run_backbone = run_rates(model_args, training_args)
    first = RangeTest(start_lr, end_lr, num_steps, rule=suggest)
    head_test = _sweep(model_args, data_args, training_args, first, dataset, config)
    head = head_test.sweep()
    logger.info(_sweep_line("head (every part in the run's ratio)", head))
    head_rate, head_source, notes = chosen_rate(head, run_head, factor, "head", "--learning_rate")
    sources = {"head": head_source}
    backbone, backbone_rate = None, None
    # From scratch the backbone is as untrained as the head, and trains at its rate unless told otherwise.
    own_backbone_rate = bool(model_args.model_name_or_path) or training_args.backbone_learning_rate is not None
    if head_test.backbone_trains and own_backbone_rate:
        test = RangeTest(start_lr, end_lr, num_steps, head_rate=head_rate * factor, rule=suggest)
        backbone = _sweep(model_args, data_args, training_args, test, dataset, config).sweep()
        logger.info(_sweep_line("backbone (head held)", backbone))
        backbone_rate, sources["backbone"], said = chosen_rate(
            backbone, run_backbone, factor, "backbone", "--backbone_learning_rate", head_rate
        )
        notes += said
    result = LrFindResult(
        head_rate, backbone_rate, head, backbone, None, not head_test.backbone_trains, notes, sources
    )
    if training_args.should_save and plot is not None:
        result.plot = draw(result, Path(plot))
        Path(plot).with_suffix(".json").write_text(json.dumps(dataclasses.asdict(result), indent=2, default=str))
    return result


def chosen_rate(
    sweep: Sweep, kept: float, factor: float, part: str, flag: str, ceiling: float = math.inf
) -> tuple[float, str, list[str]]:
    """The rate to train `part` at, as its flag takes it, where it comes from, and what to say if not suggested.

    The sweep's suggestion (divided by --lr_scaling's `factor`, which the sweep ran under), or the
    run's own `kept` rate when the curve has no clear valley; never above `ceiling` (the head's rate,
    for the backbone: a backbone trained faster than the head it feeds is never what a sweep means).

    >>> flat = read_curve([10.0**e for e in range(-7, 3)], [1.0] * 10, "valley")
    >>> chosen_rate(flat, 1e-5, 1.0, "backbone", "--backbone_learning_rate", 1e-3)[2][0][:48]
    'backbone: no clear valley: keep the defaults (--'
    """
    notes, source = [], "suggested" if sweep.clear else "kept"
    rate = sweep.suggestion / factor if sweep.clear else kept
    if not sweep.clear:
        notes.append(f"{part}: {NO_VALLEY} ({flag} {kept:g}){_why(sweep)}")
    if rate > ceiling:
        notes.append(f"{part}: {rate:.2g} capped at the head's rate ({ceiling:.2g}): the head never trains slower")
        rate, source = ceiling, "capped"
    return rate, source, notes


def _why(sweep: Sweep) -> str:
    """Why a sweep has no valley, in numbers: the drop it found against the noise of the flat start."""
    if not sweep.suggestions:
        return f"; only {sweep.cut} steps before the loss diverged"
    return f"; the loss fell {sweep.drop:.3g} below the flat start, noise {sweep.noise:.3g}"


def draw(result: LrFindResult, path: Path) -> Path:
    """Loss against rate (log scale) for each sweep, up to where it diverged, with the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    sweeps = [("head (all parts in the run's ratio)", result.head), ("backbone (head held)", result.backbone)]
    for (name, sweep), part, colour in zip(sweeps, ("head", "backbone"), ("tab:blue", "tab:orange")):
        if sweep is None:
            continue
        axes.plot(sweep.rates, sweep.raw, color=colour, alpha=0.25, linewidth=1)
        axes.plot(sweep.rates[: sweep.cut], sweep.losses[: sweep.cut], color=colour)
        if sweep.clear:
            at = min(range(sweep.cut), key=lambda i: abs(math.log(sweep.rates[i] / sweep.suggestion)))
            label = f"{name}: {sweep.rule} {sweep.suggestion:.2g}"
            if result.sources.get(part) == "capped":
                label += f", capped at the head's {result.head_learning_rate:.2g}"
            axes.axvline(sweep.suggestion, color=colour, linestyle="--", linewidth=1)
            axes.plot([sweep.suggestion], [sweep.losses[at]], "o", color=colour, label=label)
        else:
            axes.plot([], [], color=colour, label=f"{name}: {NO_VALLEY}")
        if sweep.cut < len(sweep.rates):
            axes.axvline(sweep.rates[sweep.cut], color=colour, linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (dotted: where the loss diverged)")
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


def report(result: LrFindResult, argv: list[str]) -> str:
    """What the user reads: each rate and whether it was suggested or kept, the rule, the plot, the command."""
    backbone = result.backbone_learning_rate
    if backbone is not None:
        backbone_text = f"backbone {backbone:.2g} ({result.sources['backbone']})"
    elif result.backbone_frozen:
        backbone_text = "backbone frozen (not swept)"
    else:
        backbone_text = "backbone at the head's rate (from scratch)"
    head_text = f"head {result.head_learning_rate:.2g} ({result.sources['head']})"
    lines = [f"Rates: {head_text}, {backbone_text}", *(f"  {note}" for note in result.notes)]
    lines += [f"Rule: {result.head.rule}, {RULE_TEXT[result.head.rule]}", f"Plot: {result.plot}"]
    lines.append(f"Train with them:\n  {train_command(argv, result)}")
    return "\n".join(lines)


def lr_find(
    dataset=None,
    config=None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    plot: str | Path | None = "lr_find.png",
    suggest: str = "auto",
    **kwargs,
) -> LrFindResult:
    """The range test for a run given as `finetune`'s keyword arguments; nothing trained is kept.

    `hf_resnet.lr_find(model_name_or_path="microsoft/resnet-50", train_dir="photos")` returns the head and
    backbone rates (`head_learning_rate`, `backbone_learning_rate`) and both sweeps; `suggest` names the
    rule (`auto`, `valley`, `minimum` or `steep`, see the module docstring).
    """
    from ..training.recipe import arguments_from

    model_args, data_args, training_args = arguments_from(kwargs, dataset, config)
    return find_rates(
        model_args, data_args, training_args, start_lr, end_lr, num_steps, plot, dataset, config, suggest
    )


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
                model_args,
                data_args,
                training_args,
                own.start_lr,
                own.end_lr,
                own.num_steps,
                own.plot,
                suggest=own.suggest,
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
        print("\n" + report(result, argv))
    return _leave()


def _leave() -> int:
    """Leave the process group (if any) before exiting, as `hf-resnet train` does; exit code 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()
    return 0
