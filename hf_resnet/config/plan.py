"""A run's plan: what it will do, decided once and read by everything that shows, sets up or records it.

`config.checks.validate` resolves what the flags and the machine decide, before any image is read: the
model's family, the frozen parts, each part's learning rate after scaling, precision and threads, the data
overlap, when it evaluates and saves, the output folder's state, the push target and the resume
fingerprint. What only the data and the model can say (the task, the classes and their counts, the
geometry, the image cache, the parameter counts, the license) is added once they are loaded, by
`Plan.with_data`, which returns a new plan. The start-up summary, `--dry_run`, the Trainer's set-up,
run_args.json, recipe.json and (through recipe.json) the model card read the plan; nothing downstream
derives these again, so what a run shows before it starts is what it does and what it records.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..families import BACKBONE_PARTS, HEAD

if TYPE_CHECKING:
    from ..data.transforms import Geometry
    from ..families import Family
    from ..tasks import Task

#: Backbone learning rate for a loaded checkpoint: pretrained features need nudging, not rewriting.
PRETRAINED_BACKBONE_LR = 1e-5


def part_learning_rates(head_lr: float, backbone_lr: float, lr_decay: float = 1.0) -> dict[str, float]:
    """Learning rate of each part: stage4 gets `backbone_lr`, each part closer to the input `lr_decay` times less.

    >>> part_learning_rates(1e-3, 1e-4, 0.5)["stage3"]
    5e-05
    """
    rates = {HEAD: head_lr}
    for depth, part in enumerate(reversed(BACKBONE_PARTS)):
        rates[part] = backbone_lr * lr_decay**depth
    return rates


def scaled_learning_rates(head_lr: float, backbone_lr: float, args) -> tuple[float, float, str]:
    """Apply `--lr_scaling` for the effective batch; also return the sentence printed at start."""
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    ratio = effective / args.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[args.lr_scaling]  # checked in checks.py
    rule = (
        f"LR scaling: {args.lr_scaling} (effective batch {effective}, reference {args.lr_reference_batch}: "
        f"x{factor:.4g})"
        if args.lr_scaling != "none"
        else f"LR scaling: none (rates used as given at effective batch {effective}; "
        f"--lr_scaling linear would multiply them by {ratio:.4g})"
    )
    return head_lr * factor, backbone_lr * factor, rule


@dataclass(frozen=True)
class Rates:
    """The head's and the backbone's learning rates after `--lr_scaling`, and the sentence that says how."""

    head: float
    backbone: float
    #: `--backbone_lr_decay`: each backbone part closer to the input trains this many times slower.
    decay: float
    rule: str

    @classmethod
    def of(cls, args, pretrained: bool) -> Rates:
        """The rates `args` ask for; a loaded checkpoint's backbone defaults to `PRETRAINED_BACKBONE_LR`."""
        head = args.head_learning_rate or args.learning_rate
        backbone = args.backbone_learning_rate
        if backbone is None:
            backbone = PRETRAINED_BACKBONE_LR if pretrained else head
        head, backbone, rule = scaled_learning_rates(head, backbone, args)
        return cls(head, backbone, args.backbone_lr_decay, rule)

    def by_part(self) -> dict[str, float]:
        return part_learning_rates(self.head, self.backbone, self.decay)


def _every(strategy, steps) -> str:
    strategy = getattr(strategy, "value", strategy)
    return f"every {steps} steps" if strategy == "steps" else "never" if strategy == "no" else f"every {strategy}"


@dataclass(frozen=True)
class Cadence:
    """When the run evaluates, saves and logs, and by which metric it keeps its best checkpoint (if it does)."""

    evaluate: str
    save: str
    log: str
    best_metric: str | None

    @classmethod
    def of(cls, args) -> Cadence:
        """From the Trainer's arguments, once the task has named the metric that picks the best model."""
        best = None
        if args.load_best_model_at_end:
            metric = (args.metric_for_best_model or "loss").removeprefix("eval_")
            greater = args.greater_is_better
            greater = not metric.endswith("loss") if greater is None else greater
            best = f"{metric} ({'higher' if greater else 'lower'} is better)"
        return cls(
            _every(args.eval_strategy, args.eval_steps),
            _every(args.save_strategy, args.save_steps),
            _every(args.logging_strategy, args.logging_steps),
            best,
        )


@dataclass(frozen=True)
class DataPlan:
    """What the data is, once it is listed: its task, its classes and their images in each split."""

    description: str
    task: Task
    labels: tuple[str, ...]
    #: Images in each split (`train`, `validation`); None for a streamed split (no length to count).
    sizes: Mapping[str, int | None]
    #: Images of each class in each split (a multi-label image counts for each of its classes); None when streamed.
    counts: Mapping[str, Mapping[str, int] | None]
    #: Where validation came from, as recipe.json records it (a folder, a split, a share of train).
    held_out: Mapping[str, Any]
    #: `--image_cache` for this run and why: {"mode", "why"}.
    image_cache: Mapping[str, str]

    def total(self, split: str) -> int | None:
        return self.sizes.get(split)


@dataclass(frozen=True)
class Distillation:
    """A distilled run's teacher and how its outputs enter the loss (training/distill.py)."""

    #: `--teacher` as given: a run folder or a Hub id.
    teacher: str
    #: The teacher for people and records: a Hub id, or a local run by its folder's name (no machine's paths).
    name: str
    #: The teacher's family (its config.json).
    family: str
    alpha: float
    temperature: float
    #: How the teacher's own weights started (its recipe.json), once loaded; None where it does not say.
    base_model: str | None = None
    #: How the teacher's inputs are made from the student's batch (size, normalisation), once loaded.
    inputs: str = ""

    def completed(self, base_model: str | None, inputs: str) -> Distillation:
        return dataclasses.replace(self, base_model=base_model, inputs=inputs)

    def line(self) -> str:
        """The plan's line: who teaches, with which weight and temperature, on what input."""
        inputs = f"; it sees {self.inputs}" if self.inputs else ""
        return (
            f"teacher: {self.name} ({self.family}), loss (1 - {self.alpha:g}) x labels + {self.alpha:g} x "
            f"T^2 x soft targets at T = {self.temperature:g}{inputs}"
        )

    def record(self) -> dict:
        """What recipe.json and the model card say of it."""
        return {
            "teacher": self.name,
            "teacher_base_model": self.base_model,
            "teacher_family": self.family,
            "alpha": self.alpha,
            "temperature": self.temperature,
            "teacher_inputs": self.inputs,
        }


@dataclass(frozen=True)
class Plan:
    """Everything a run decided, resolved once (see the module docstring); `with_data` adds what the data says."""

    #: The model the run starts from, for people: a checkpoint, or a layout from scratch.
    source: str
    family: Family
    pretrained: bool
    frozen: tuple[str, ...]
    rates: Rates
    per_device_batch: int
    accumulation: int
    processes: int
    #: The training precision and why: "bf16 autocast (...)".
    precision: str
    #: (CPU threads per process, why); None on an accelerator.
    threads: tuple[int, str] | None
    #: `--data_overlap` on this machine and why: {"mode", "why"}.
    data_overlap: Mapping[str, str]
    streaming: bool
    output_dir: str
    #: What the output folder holds and what the run does with it: a new run, a replaced one, a resumed one.
    output_state: str
    resume_from: str | None
    #: The Hub repo `--push_to_hub` sends the run to, or None.
    push_to: str | None
    #: The arguments a resume must share with this run (run_args.json).
    fingerprint: Mapping[str, Any]
    #: The teacher of a distilled run (`--teacher`), or None.
    distillation: Distillation | None = None
    # Known once the data and the model are loaded (`with_data`).
    data: DataPlan | None = None
    #: What the processor produces: image size, framing (`fit`), normalisation.
    geometry: Geometry | None = None
    cadence: Cadence | None = None
    #: (all, trainable) parameters of the model as built and frozen.
    parameters: tuple[int, int] | None = None
    #: (license, where it came from).
    license: tuple[str, str] | None = None
    #: Why the image size is what it is, where the run chose it (from scratch: from the data); "" otherwise.
    size_why: str = ""

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch * self.accumulation * self.processes

    def with_data(
        self, data: DataPlan, geometry: Geometry, cadence: Cadence, parameters, license, size_why: str = ""
    ) -> Plan:
        """This plan completed by what the data and the model said; a new plan, this one is unchanged."""
        return dataclasses.replace(
            self,
            data=data,
            geometry=geometry,
            cadence=cadence,
            parameters=tuple(parameters),
            license=tuple(license),
            size_why=size_why,
        )

    def with_distillation(self, distillation: Distillation) -> Plan:
        """This plan with the teacher as loaded (its base model, how it sees the student's batch)."""
        return dataclasses.replace(self, distillation=distillation)

    def with_image_cache(self, choice: Mapping[str, str]) -> Plan:
        """This plan with the image cache the run ended up with (a disk cache that could not be written: none)."""
        return dataclasses.replace(self, data=dataclasses.replace(self.data, image_cache=dict(choice)))

    def data_path(self) -> dict:
        """What the machine chose for the data path, and why, as recipe.json records it."""
        cache = self.data.image_cache if self.data else {"mode": "off", "why": ""}
        return {"data_overlap": dict(self.data_overlap), "image_cache": dict(cache)}

    def threads_text(self) -> str:
        """How recipe.json and the summary name the threads: "2 (why)", or "" on an accelerator."""
        return f"{self.threads[0]} ({self.threads[1]})" if self.threads else ""

    def image_size(self) -> str:
        return f"{self.geometry.height}x{self.geometry.width} ({self.geometry.fit})" if self.geometry else "unknown"

    def summary(self, brief: bool = False) -> str:
        """The plan for people: all that `--dry_run` prints; `brief`, the start-up summary of a run.

        The brief form leaves out what the run's own lines say later (the cadence, as it evaluates; the output
        folder, in its last line) and the per-class counts, so a run's terminal stays short.
        """
        total, trainable = self.parameters or (0, 0)
        rates = self.rates.by_part()
        lines = [f"model: {self.source} ({self.family.name}), {total:,} parameters, {trainable:,} trainable"]
        if self.data:
            lines += [
                f"data: {self.data.description}: {_count(self.data.total('train'))} train / "
                f"{_count(self.data.total('validation'))} validation images, {len(self.data.labels)} classes "
                f"({self.data.task.name})",
            ]
            if not brief:
                lines += [f"  {split}: {_per_class(counts)}" for split, counts in self.data.counts.items()]
        lines += [
            f"frozen: {', '.join(self.frozen) or 'nothing'}; learning rates: "
            + ", ".join(f"{part} {rate:g}" for part, rate in rates.items() if part not in self.frozen),
            f"batch: {self.per_device_batch} per device x {self.accumulation} accumulation x {self.processes} "
            f"processes = {self.effective_batch} per optimizer step",
            f"precision: {self.precision}",
        ]
        if brief:  # the rule that scaled the rates, on the batch's line
            lines[-2] += f"; {self.rates.rule}"
        else:
            lines.insert(-1, self.rates.rule)
        if self.geometry and (self.size_why or not brief or not self.data):
            lines.append(f"images: {self.image_size()}" + (f", {self.size_why}" if self.size_why else ""))
        elif self.geometry:  # a size the run did not choose: said on the data's line, to keep a run's start short
            lines[1] += f", seen at {self.image_size()}"
        if self.distillation:
            lines.append(self.distillation.line())
        if self.threads:
            lines.append(f"threads: {self.threads_text()}")
        lines += [f"{name.replace('_', ' ')}: {c['mode']} ({c['why']})" for name, c in self.data_path().items()]
        if brief:
            return "\n".join(lines)
        if self.cadence:
            best = f"; best kept by {self.cadence.best_metric}" if self.cadence.best_metric else ""
            lines.append(f"evaluate {self.cadence.evaluate}, save {self.cadence.save}, log {self.cadence.log}{best}")
        if self.data:
            lines.append(f"after training: fits {self.data.task.fitted}")
        lines.append(f"output: {self.output_dir} ({self.output_state})")
        if self.push_to:
            lines.append(f"push to: {self.push_to}")
        return "\n".join(lines)


def _count(total: int | None) -> str:
    return "streamed" if total is None else str(total)


def _per_class(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return "streamed (not counted)"
    return ", ".join(f"{label} {count}" for label, count in counts.items())
