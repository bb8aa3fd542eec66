"""Every knob of a fine-tuning run, as dataclasses parsed by `HfArgumentParser`.

Each default is set once, here, with the reason beside it. The recipe, the Python API
(`hf_resnet.finetune`) and the tests all build these same objects.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers import TrainingArguments

from ..flags import Flag, flag
from ..model.arguments import TTA_MODES
from ..runtime.launcher import DATA_OVERLAPS, cores_per_process, decide_data_overlap
from ..runtime.precision import default_mixed_precision
from ..scoring.metrics import LOWER_IS_BETTER, METRICS, TOP_K, parse_metric_names

#: Where training augmentation is finished (see hf_resnet/data/image_datasets.py): "workers", "device" or "auto".
AUGMENT_PLACES = ("auto", "workers", "device")
#: `--lr_scaling`: how the learning rates follow the effective batch (training/optim.py).
LR_SCALINGS = ("none", "linear", "sqrt")


@dataclass
class ResNetTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the transfer-learning knobs; every Trainer flag still works.

    Learning rates: the classifier head trains at `--learning_rate` (or `--head_learning_rate`
    if given), the backbone at `--backbone_learning_rate`. Both follow the Trainer's schedule
    (`--lr_scheduler_type`, `--warmup_steps`), which scales every parameter group by the same factor.
    """

    # A fresh head needs a large step to move from random; the Trainer's 5e-5 is tuned for transformers.
    learning_rate: float = flag(
        1e-3,
        "Learning rate of the classifier head.",
        result=True,
        bounds="(0, inf)",
        section="recipe",
        aliases=["--lr"],
    )
    head_learning_rate: float | None = flag(
        None,
        "Alias of --learning_rate that says what it applies to; wins if both set.",
        result=True,
        bounds="(0, inf)",
        section="recipe",
    )
    backbone_learning_rate: float | None = flag(
        None,
        "Learning rate of the unfrozen backbone stages. Default: 1e-5 for a loaded checkpoint "
        "(pretrained features need nudging, not rewriting), the head's rate from scratch.",
        result=True,
        bounds="(0, inf)",
        section="recipe",
    )
    backbone_lr_decay: float = flag(
        1.0,
        "Layer-wise decay: stage4 gets the backbone rate, stage3 x decay, stage2 x decay^2, ...",
        result=True,
        bounds="(0, inf)",
        section="recipe",
    )
    unfreeze_at_epoch: int | None = flag(
        None,
        "Gradual unfreezing: at this epoch unfreeze the deepest frozen part, then one more each "
        "--unfreeze_every epochs (ULMFiT-style).",
        result=True,
        bounds="[0, inf)",
        section="recipe",
    )
    unfreeze_every: int = flag(
        1,
        "Epochs between two unfreezing steps.",
        result=True,
        bounds="[1, inf)",
        section="recipe",
    )
    lr_scaling: str = flag(
        "none",
        "Scale both learning rates with the effective batch: none (use them as given), linear "
        "(x batch/lr_reference_batch, Goyal et al. 2017) or sqrt. Printed at start either way.",
        result=True,
        choices=LR_SCALINGS,
        section="recipe",
    )
    lr_reference_batch: int = flag(
        256,
        "Batch size the given learning rates are for.",
        result=True,
        bounds="[1, inf)",
        section="recipe",
    )
    # Hinton et al. (2015) weigh the soft targets' term heavily; an even mix keeps the labels in charge where the
    # teacher is wrong, and `--distill_alpha 1` learns from the teacher alone.
    distill_alpha: float | None = flag(
        None,
        "With --teacher: the teacher's share of the loss, 0 (the labels alone) to 1 (the teacher alone). The loss is "
        "(1 - alpha) x label loss + alpha x T^2 x distillation loss (KL divergence of the softened outputs; "
        "multi-label: per class, on sigmoids). Default 0.5.",
        result=True,
        bounds="[0, 1]",
        section="recipe",
    )
    # Hinton et al. (2015) soften with T between 2 and 20; 4 is the common choice for image classifiers
    # (e.g. the knowledge-distillation benchmarks of Tian et al., 2020), where logits are far apart.
    distill_temperature: float | None = flag(
        None,
        "With --teacher: the temperature T that softens both models' outputs in the distillation term. Higher "
        "puts more weight on the teacher's view of the wrong classes. Default 4.",
        result=True,
        bounds="(0, inf)",
        section="recipe",
    )
    class_weights: str = flag(
        "none",
        "balanced: rare classes count as much as common ones in the loss; none: plain loss. Balanced weighs each "
        "class's loss by n / (classes x its images) (multi-label: BCE pos_weight = images without / with the class).",
        result=True,
        choices=("none", "balanced"),
        section="recipe",
    )
    sampler: str = flag(
        "random",
        "balanced: draw training images so every class is equally likely; random: the Trainer's shuffled epochs. "
        "Balanced repeats rare images, augmented anew, and is correct on any number of processes.",
        result=True,
        choices=("random", "balanced"),
        section="recipe",
    )
    ema_decay: float | None = flag(
        None,
        "Keep an exponential moving average of the weights with this decay (e.g. 0.999). It is updated each "
        "optimizer step (BatchNorm statistics included; its horizon is about 1/(1-decay) steps), evaluated beside "
        "the trained weights (eval_ema_*) and saved in checkpoints; the run keeps whichever is better on "
        "--metric_for_best_model. Off by default.",
        result=True,
        bounds="(0, 1)",
        section="recipe",
    )
    tta: str = flag(
        "none",
        f"Test-time augmentation in every evaluation: {', '.join(TTA_MODES)}. The calibration temperature "
        "or multi-label thresholds are then fitted on the averaged logits, and config.json records the mode so "
        "classify and hf-resnet evaluate use it by default. flip only where a mirrored image is the same class.",
        result=True,
        resumable=True,
        choices=TTA_MODES,
        section="evaluation",
    )
    sync_bn: bool = flag(
        False,
        "Synchronise BatchNorm statistics across processes (small per-device batches).",
        result=True,
        machine=True,
        section="speed",
    )
    early_stopping_patience: int | None = flag(
        None,
        "Stop after this many evaluations without improvement of the best metric.",
        result=True,
        resumable=True,
        bounds="[1, inf)",
        section="evaluation",
    )
    # Fine-tuning sets are small: judge every epoch, and keep the last two checkpoints only. An epoch is the default
    # cadence of evaluating, saving and logging, but `--eval_steps N`, `--save_steps N` or `--logging_steps N` alone
    # means every N steps, as transformers users expect (`step_cadences` below).
    eval_strategy: str | None = flag(
        None,
        "When to evaluate (no, steps, epoch). Default: steps if --eval_steps is given (or, keeping the best model, "
        "--save_steps), else epoch.",
        result=True,
        resumable=True,
        # transformers 5 dropped the old name; the image-classification example's READMEs still use it.
        aliases=["--evaluation_strategy"],
        section="evaluation",
    )
    eval_steps: float | None = flag(
        None,
        "Evaluate every N steps (a float < 1: that fraction of all steps); implies --eval_strategy steps.",
        section="evaluation",
    )
    save_strategy: str | None = flag(
        None,
        "When to checkpoint (no, steps, epoch, best). Default: steps if --save_steps is given (or, "
        "keeping the best model, --eval_steps), else epoch.",
        section="output",
    )
    save_steps: float | None = flag(
        None,
        "Save every N steps (a float < 1: that fraction of all steps); implies --save_strategy steps.",
        section="output",
    )
    save_total_limit: int | None = flag(
        2,
        "Checkpoints kept on disk.",
        section="output",
    )
    logging_strategy: str | None = flag(
        None,
        "When to log (no, steps, epoch). Default: steps if --logging_steps is given, else epoch.",
        section="output",
    )
    logging_steps: float | None = flag(
        None,
        "Log every N steps (a float < 1: that fraction of all steps); implies --logging_strategy steps.",
        section="output",
    )
    metrics: str = flag(
        "all",
        f"Metrics computed at each evaluation, comma-separated, or all. Known: {', '.join(METRICS)} "
        f"(top{TOP_K}_accuracy only with more than {TOP_K} classes).",
        section="evaluation",
    )
    metric_for_best_model: str | None = flag(
        "accuracy",
        "Metric of the best model: loss or one of --metrics.",
        result=True,
        resumable=True,
        section="evaluation",
    )
    # The training step needs the per-sample `sample_seed` that the model's forward() does not take; __post_init__
    # keeps it False whatever is given.
    remove_unused_columns: bool = flag(
        False,
        "As in the transformers example; no effect: images reach the model as pixel_values and labels.",
        section="example",
    )
    # The transformers example's script flags. The Trainer reads none of them; this recipe always trains, then
    # evaluates, so they only say what it does anyway (config/example_flags.py).
    do_train: bool = flag(
        False,
        "As in the transformers example; always so here.",
        section="example",
    )
    do_eval: bool = flag(
        False,
        "As in the transformers example; always so here: every run ends with an evaluation.",
        section="example",
    )
    do_predict: bool = flag(
        False,
        "As in transformers; no effect: score a test split with hf-resnet evaluate --test_dir.",
        section="example",
    )
    # Aliases: the names the transformers example's README and older TrainingArguments used.
    hub_model_id: str | None = flag(
        None,
        "The Hub repo --push_to_hub writes (default: the output folder's name in your namespace).",
        section="output",
        aliases=["--push_to_hub_model_id"],
    )
    hub_token: str | None = flag(
        None,
        "Hub token for pushing, and (as the example's --token) for reading private models and datasets. "
        "Default: HF_TOKEN or your login.",
        section="output",
        aliases=["--token"],
    )
    license: str | None = flag(
        None,
        "The model's license on its card and in recipe.json (a Hub license id: apache-2.0, mit, cc-by-4.0, ...). "
        "Default: the base model card's license; 'other' when none is known (from scratch, no card).",
        section="output",
    )
    report_to: None | str | list[str] = flag(
        "none",
        "Loggers: none, tensorboard, ...",
        section="output",
    )
    per_device_train_batch_size: int = flag(
        32,
        "Batch size per device for training.",
        result=True,
        bounds="[1, inf)",
        section="recipe",
        aliases=["--batch-size", "-b"],
    )
    per_device_eval_batch_size: int = flag(
        64,
        "Batch size per device for evaluation.",
        bounds="[1, inf)",
        section="evaluation",
    )
    num_train_epochs: float = flag(
        5.0,
        "Epochs over the training split.",
        result=True,
        resumable=True,
        section="recipe",
        aliases=["--epochs"],
    )
    weight_decay: float = flag(
        1e-4,
        "AdamW weight decay (not on BatchNorm or biases).",
        result=True,
        bounds="[0, inf)",
        section="recipe",
        aliases=["--wd"],
    )
    # A short warm-up keeps the random head's first large gradients from wrecking pretrained features.
    warmup_steps: float = flag(
        0.05,
        "Linear warm-up: steps, or a fraction (< 1) of all.",
        result=True,
        bounds="[0, inf)",
        hint="(steps, or a fraction < 1 of all)",
        section="recipe",
    )
    lr_scheduler_type: str = flag(
        "cosine",
        "Schedule shared by all parameter groups.",
        result=True,
        section="recipe",
    )
    output_dir: str | None = flag(
        None,
        "Where the model and results are written.",
        section="output",
        aliases=["--output"],
    )
    # A ResNet uses every trained parameter in every step (frozen ones are not trained), so DDP need not search
    # for unused ones; the Trainer's default (True) costs an extra autograd-graph traversal per step. Gradual
    # unfreezing turns it on (training/callbacks.py): DDP then also holds the parts that are still frozen.
    ddp_find_unused_parameters: bool | None = flag(
        False,
        "Let DDP look for parameters without gradients (not needed here).",
        section=None,  # a TrainingArguments flag with hf_resnet's default: --help-all lists it
    )
    # Pinned memory only speeds up host-to-GPU copies; on a CPU-only machine it just warns.
    dataloader_pin_memory: bool | None = flag(
        None,
        "Pin DataLoader memory; None: on with CUDA.",
        section=None,  # a TrainingArguments flag with hf_resnet's default: --help-all lists it
    )
    # Speed. Figures behind these defaults: docs/benchmarks.md, "Training throughput".
    augment_on: str = flag(
        "auto",
        "Where training images are resized, normalised and erased: workers, device or auto. workers: DataLoader "
        "processes, float tensors out; device: the GPU, in batch, from uint8 crops; auto: device on a GPU, whose "
        "workers would otherwise be the bottleneck; workers on a CPU, where they overlap the model.",
        choices=AUGMENT_PLACES,
        section="speed",
    )
    gpu_decode: bool = flag(
        False,
        "Decode JPEGs on the GPU (nvjpeg, torchvision.io.decode_jpeg) instead of in the workers. Off by "
        "default: reduced-size CPU decoding keeps up unless a GPU has only a few CPU cores to feed it.",
        section="speed",
    )
    # NHWC is the layout oneDNN (CPU) and cuDNN tensor cores (GPU) run convolutions in; NCHW costs a conversion.
    channels_last: bool = flag(
        True,
        "Keep weights and activations channels-last (NHWC).",
        section="speed",
    )
    cache_frozen_features: bool = flag(
        False,
        "With the backbone frozen through stage3 or stage4, compute its features once per image and train "
        "only the rest. Much faster epochs, but training sees one fixed view per image: no random crops, flips "
        "or mixing.",
        result=True,
        section="speed",
    )
    # One worker per core left over by the training loop (none on a two-core CPU-only machine: see the function).
    dataloader_num_workers: int | None = flag(
        None,
        "DataLoader worker processes; None: as --data_overlap decides (the cores less one with workers).",
        bounds="[0, inf)",
        section="speed",
        aliases=["--workers", "-j"],
    )
    data_overlap: str = flag(
        "auto",
        "How decoding and augmentation overlap the training step: workers, thread, none or auto. workers "
        "(DataLoader processes at lower priority), thread (the next batches made in a thread of the training "
        "process, at lower priority), none "
        "(between steps, in the training loop) or auto: workers on a GPU or with more than 2 CPU cores per "
        "process, none on a CPU-only machine with 2 cores or fewer. The start-up summary says which and why.",
        choices=DATA_OVERLAPS,
        section="speed",
    )
    # Restarting workers each epoch re-imports torch in each of them: seconds per epoch for nothing.
    dataloader_persistent_workers: bool = flag(
        True,
        "Keep DataLoader workers alive between epochs.",
        section="speed",
    )
    # Without it, every CPU step maps, zeroes and page-faults its activations afresh (see runtime/host_memory.py).
    reuse_host_memory: bool = flag(
        True,
        "While training on a CPU, keep freed memory for the next step instead of returning it to the OS. "
        "glibc's allocator; faster steps, same peak memory (docs/benchmarks.md). Returned when training ends.",
        section="speed",
    )
    # One kernel for all parameters instead of several per tensor; the Trainer picks it only on torch >= 2.8.
    optim: str = flag(
        "adamw_torch_fused",
        "Optimizer (Trainer names).",
        result=True,
        section="recipe",
    )
    label_smoothing_factor: float = flag(
        0.0,
        "Label smoothing: the target puts this much probability evenly over all classes (0.1 in timm's recipes).",
        result=True,
        bounds="[0, 1)",
        card="augmentation",
        aliases=["--smoothing", "--label-smoothing"],
        section="augmentation",
    )
    # The Trainer's NaN filter reads the loss back every step, a host-GPU sync that stalls the input pipeline.
    logging_nan_inf_filter: bool = flag(
        False,
        "Skip NaN/inf losses in the logged average (syncs with the GPU each step).",
        section=None,  # a TrainingArguments flag with hf_resnet's default: --help-all lists it
    )
    bf16: bool | None = flag(
        None,
        "bf16 autocast. Default: on where the hardware runs bf16 natively and faster (GPUs from Ampere "
        "on; CPUs with AMX-BF16, and AMD CPUs with AVX512-BF16), unless accelerate launch --mixed_precision chose.",
        result=True,
        machine=True,
        section="speed",
    )
    fp16: bool | None = flag(
        None,
        "fp16 autocast with loss scaling. Default: on for GPUs without native bf16.",
        result=True,
        machine=True,
        section="speed",
    )
    # With pinned memory, non-blocking copies let the next batch travel while the GPU still runs this one.
    accelerator_config: dict | str | None = flag(
        None,
        "Accelerator settings (dict or JSON file), as in TrainingArguments. Default: non-blocking copies on CUDA.",
        section=None,  # a TrainingArguments flag with hf_resnet's default: --help-all lists it
    )

    # TrainingArguments dropped this flag in 5.x; users know it, and a folder holding a run is refused without it.
    overwrite_output_dir: bool = flag(
        False,
        "Replace the previous run in --output_dir (its checkpoints and results are removed at start). "
        "Without it, a folder holding a run is refused: pass a new --output_dir or --resume_from_checkpoint.",
        section="output",
    )

    verbose: bool = flag(
        False,
        "Show the libraries' own logs on the terminal too: HTTP requests, transformers' loading reports, every "
        "logged dict and the full metric blocks. Without it the terminal shows the plan, the progress bar, one line "
        "per evaluation and the result; the files written are the same either way.",
        section="output",
    )

    # Seeing a run before paying for it: every check and refusal of a real run, then the plan instead of training.
    dry_run: bool = flag(
        False,
        "Check everything, read the data and build the model, then print the run's plan (data counts per split "
        "and class, model and frozen parts, per-part learning rates, image size, precision, cadence, output "
        "folder) and an estimate of the time per epoch from a few timed training steps, and exit 0. Nothing is "
        "trained or written: --output_dir is not created. A refusal is the one line a run would give.",
        section="output",
    )

    #: What hf_resnet knows about the `TrainingArguments` fields it does not redefine (see hf_resnet/flags.py).
    inherited_flags: ClassVar[dict[str, Flag]] = {
        "max_steps": Flag(
            result=True, resumable=True, bounds="[-1, inf)", hint="(-1: train --num_train_epochs)", section="recipe"
        ),
        "gradient_accumulation_steps": Flag(result=True, bounds="[1, inf)", section="recipe"),
        "max_grad_norm": Flag(result=True, section="recipe"),
        "optim_args": Flag(result=True),
        "seed": Flag(result=True, section="recipe"),
        "load_best_model_at_end": Flag(section="evaluation"),
        "resume_from_checkpoint": Flag(section="output"),
        "push_to_hub": Flag(section="output"),
        "hub_private_repo": Flag(section="output"),
        "hub_strategy": Flag(section="output"),
        "hub_revision": Flag(section="output"),
    }

    def __post_init__(self):
        self.remove_unused_columns = False  # see the field
        # EarlyStoppingCallback needs the best checkpoint tracked; asking for patience implies it.
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
        # Machine-dependent defaults are resolved here, not in the fields, so `--help` reads the same everywhere.
        self.data_overlap, self.dataloader_num_workers, self.data_overlap_reason = decide_data_overlap(
            self.data_overlap, self.dataloader_num_workers, cores_per_process(), torch.cuda.is_available()
        )
        if self.dataloader_pin_memory is None:
            self.dataloader_pin_memory = torch.cuda.is_available()
        if self.accelerator_config is None:
            self.accelerator_config = {"non_blocking": torch.cuda.is_available()}
        if self.bf16 is None and self.fp16 is None:
            self.bf16, self.fp16, self.precision_reason = default_mixed_precision()
        else:
            self.precision_reason = "--bf16/--fp16 as given"
        self.bf16, self.fp16 = bool(self.bf16), bool(self.fp16)
        # transformers allows bf16 without a GPU only when told the run is on the CPU; on a machine with no
        # accelerator that is where it runs anyway.
        if self.bf16 and not torch.cuda.is_available() and not torch.backends.mps.is_available():
            self.use_cpu = True
        self.dataloader_persistent_workers = self.dataloader_persistent_workers and self.dataloader_num_workers > 0
        self.step_cadences()
        with contextlib.suppress(ValueError):  # names no metric computes are refused by config.checks.validate
            self.metrics = ",".join(parse_metric_names(self.metrics))
        best = (self.metric_for_best_model or "").removeprefix("eval_")
        if self.greater_is_better is None and best in LOWER_IS_BETTER:
            self.greater_is_better = False
        super().__post_init__()

    def step_cadences(self) -> None:
        """Resolve the strategies the user left out: `--X_steps N` alone means every N steps, else every epoch.

        Keeping the best model (`--load_best_model_at_end`, or early stopping) needs every checkpoint
        evaluated, so there the one of saving and evaluating that was not given follows the other:
        `--save_steps 50` evaluates every 50 steps too, and `--eval_steps 50` saves every 50 steps.
        Without it they stay independent: `--save_steps 50` alone still evaluates once an epoch.
        """
        for kind in ("logging", "eval", "save"):
            if getattr(self, f"{kind}_strategy") is None and getattr(self, f"{kind}_steps") is not None:
                setattr(self, f"{kind}_strategy", "steps")
        if self.load_best_model_at_end:
            for kind, other in (("eval", "save"), ("save", "eval")):
                if getattr(self, f"{kind}_strategy") is None:  # neither it nor its steps given
                    setattr(self, f"{kind}_strategy", getattr(self, f"{other}_strategy"))
                    if getattr(self, f"{kind}_steps") is None:
                        setattr(self, f"{kind}_steps", getattr(self, f"{other}_steps"))
        for kind in ("logging", "eval", "save"):
            if getattr(self, f"{kind}_strategy") is None:
                setattr(self, f"{kind}_strategy", "epoch")
        # transformers' defaults, for a strategy of steps given without its steps
        if self.logging_steps is None:
            self.logging_steps = TrainingArguments.logging_steps
        if self.save_steps is None:
            self.save_steps = TrainingArguments.save_steps
