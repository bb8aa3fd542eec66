"""The fine-tuning run: data, model, `Trainer`, results folder, in the order of the transformers examples.

`ResNetTrainer` changes only what transfer learning needs: optimizer parameter groups (head
vs backbone learning rates) and batch-level mixing (mixup/cutmix) before each step. Frozen
BatchNorm layers are held in eval mode by hooks set in `model.freeze`, so the Trainer's own
`model.train()` calls need no override.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
import transformers
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints

from . import card
from .calibration import expected_calibration_error, fit_temperature
from .config import DataArguments, ModelArguments, ResNetTrainingArguments
from .data import load_image_data
from .features import cache_frozen_features
from .host_memory import reused_host_memory
from .layout import use_channels_last
from .loading import EpochSetter, EvalImages, TrainImages, collate, train_stage
from .metrics import compute_metrics, per_class_report
from .model import build_model, freeze, unfreeze
from .optim import parameter_groups, part_learning_rates
from .streaming import StreamEpochSetter, StreamTransform, load_stream
from .transforms import build_batch_mix, build_eval_transform, build_train_transform

logger = logging.getLogger(__name__)

#: Backbone learning rate for a loaded checkpoint: pretrained features need nudging, not rewriting.
PRETRAINED_BACKBONE_LR = 1e-5


def soft_cross_entropy(outputs, labels: torch.Tensor, num_items_in_batch=None, label_smoothing: float = 0.0):
    """Cross-entropy for hard (class index) or soft (mixup/cutmix) targets, summed then divided by the item count.

    Dividing by `num_items_in_batch` (the Trainer's count over all accumulated micro-batches)
    keeps the loss identical with and without gradient accumulation.
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    losses = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="none")
    if num_items_in_batch is None:
        return losses.mean()
    return losses.sum() / torch.as_tensor(num_items_in_batch, device=losses.device)


#: Checkpoints are written under OUTPUT_DIR/.staging/ and renamed into place once complete, so a
#: `checkpoint-N` folder always holds a whole checkpoint and a kill mid-save is never resumed from.
STAGING_DIR = ".staging"


class ResNetTrainer(Trainer):
    """A `Trainer` with head/backbone learning-rate groups, batch mixing and atomic checkpoints."""

    def __init__(self, *args, head_lr: float, backbone_lr: float, lr_decay: float = 1.0, batch_mix=None, **kwargs):
        self.head_lr, self.backbone_lr, self.lr_decay = head_lr, backbone_lr, lr_decay
        self.batch_mix = batch_mix
        self._staging = False
        super().__init__(*args, **kwargs)
        # Speed (issue 6): channels-last weights where safe (layout.py); training_step puts inputs in the same layout.
        wanted = getattr(self.args, "channels_last", False)
        safe = wanted and use_channels_last(self.model, self.args.device)
        self.layout = torch.channels_last if safe else torch.contiguous_format

    def evaluation_loop(self, *args, **kwargs):
        """Evaluate with rank 0's BatchNorm statistics on every rank: the ones that get saved.

        Each DDP rank updates its running statistics from its own batches after the buffers are
        broadcast, so without this every rank but 0 would evaluate a slightly different model.
        """
        if self.args.world_size > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        return super().evaluation_loop(*args, **kwargs)

    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        """Let the Trainer write the checkpoint into the staging folder, then publish it with one rename."""
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name)
        if self.args.should_save and os.path.isdir(staged):
            shutil.rmtree(staged)  # left by a run killed mid-save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # every rank has written its shard / RNG state
        if self.args.should_save:
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(staged, final)
            best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
            if self.state.best_global_step and os.path.isdir(best):
                self.state.best_model_checkpoint = best  # the Trainer recorded the staging path
                self.state.save_to_json(os.path.join(final, TRAINER_STATE_NAME))
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            groups = parameter_groups(model, self.head_lr, self.backbone_lr, self.lr_decay, self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        inputs.pop("sample_seed", None)
        mix_seed = inputs.pop("mix_seed", None)  # a Python int: seeding never reads a value back from the GPU
        if "crops" in inputs:  # uint8 crops from the workers (--augment_on device): finish them here, in batch
            inputs["pixel_values"] = inputs.pop("crops").finish()
        inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=self.layout)
        if self.batch_mix is not None:
            # Seeded by the batch's own samples, so a resumed run mixes exactly as an uninterrupted one.
            with torch.random.fork_rng(devices=[]):
                if mix_seed is not None:
                    torch.manual_seed(mix_seed)
                inputs["pixel_values"], inputs["labels"] = self.batch_mix(inputs["pixel_values"], inputs["labels"])
        return super().training_step(model, inputs, num_items_in_batch)


class GradualUnfreezing(TrainerCallback):
    """Unfreeze the deepest frozen part at `start`, then one more every `every` epochs.

    The frozen set is recomputed from the epoch number at each epoch start, so a run resumed
    from a checkpoint lands in the same state as one that never stopped.
    """

    def __init__(self, model, frozen: list[str], start: int, every: int):
        self.model, self.frozen, self.start, self.every = model, list(frozen), start, max(1, every)

    def frozen_at(self, epoch: int) -> list[str]:
        thawed = 0 if epoch < self.start else 1 + (epoch - self.start) // self.every
        return self.frozen[: max(0, len(self.frozen) - thawed)]

    def on_epoch_begin(self, args, state, control, **kwargs):
        still_frozen = self.frozen_at(math.floor(state.epoch or 0))
        thawed = [part for part in self.frozen if part not in still_frozen]
        unfreeze(self.model, thawed)
        freeze(self.model, still_frozen)
        if thawed and args.should_log:
            logger.info("Epoch %d: unfrozen %s; still frozen %s", math.floor(state.epoch or 0), thawed, still_frozen)


def calibrate(model, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Fit temperature scaling on the validation logits and store it in the config for `classify`.

    The calibrated ECE is measured on the split the temperature was fitted on, so it is an
    optimistic figure; one scalar fitted on hundreds of images overfits little (Guo et al., 2017).
    """
    temperature = fit_temperature(logits, labels)
    model.config.calibration_temperature = temperature
    return {
        "eval_ece": expected_calibration_error(logits, labels),
        "eval_ece_calibrated": expected_calibration_error(logits, labels, temperature),
        "eval_temperature": temperature,
    }


class GracefulStop(TrainerCallback):
    """First Ctrl-C (SIGINT) or SIGTERM: finish the step, save a checkpoint, stop. A second Ctrl-C aborts.

    SIGTERM is what schedulers (SLURM, Kubernetes) send before killing a preempted job. With
    several processes the request is all-reduced each step, so every rank stops at the same step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "%s received: finishing this step and saving a checkpoint (again to abort).", signal.Signals(signum).name
        )

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.requested
        if args.world_size > 1:
            flag = torch.tensor(float(stop), device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            self.requested, self.stopped_at = True, state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()


def scaled_learning_rates(
    head_lr: float, backbone_lr: float, args: ResNetTrainingArguments
) -> tuple[float, float, str]:
    """Apply `--lr_scaling` for the effective batch; also return the sentence printed at start."""
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    ratio = effective / args.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}.get(args.lr_scaling)
    if factor is None:
        raise ValueError(f"--lr_scaling {args.lr_scaling!r}: choose none, linear or sqrt")
    rule = (
        f"LR scaling: {args.lr_scaling} (effective batch {effective}, reference {args.lr_reference_batch}: "
        f"x{factor:.4g})"
        if args.lr_scaling != "none"
        else f"LR scaling: none (rates used as given at effective batch {effective}; "
        f"--lr_scaling linear would multiply them by {ratio:.4g})"
    )
    return head_lr * factor, backbone_lr * factor, rule


@dataclass
class FinetuneResult:
    """What a run produced: its output folder and the final metrics (train_* and eval_*)."""

    output_dir: Path
    metrics: dict[str, float]
    labels: list[str]
    model: torch.nn.Module
    #: Set when Ctrl-C/SIGTERM stopped the run early: the global step of its last checkpoint.
    interrupted_at: int | None = None


def _setup_logging(training_args: ResNetTrainingArguments) -> None:
    level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    logging.getLogger("hf_resnet").setLevel(logging.INFO if training_args.should_log else logging.WARNING)


def _resume_checkpoint(training_args: ResNetTrainingArguments) -> str | None:
    resume = training_args.resume_from_checkpoint
    if resume in ("last", "latest", "true", "True", True):
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint {resume}: no checkpoint-* folder in {training_args.output_dir}"
            )
        return last
    return resume


def _count(split) -> str:
    return str(len(split)) if hasattr(split, "__len__") else "streamed"


def _summary(model, data, model_args, args, frozen, rates, lr_rule) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    source = model_args.model_name_or_path or f"{model_args.arch or 'custom layout'} (from scratch)"
    return (
        f"model: {source}, {total:,} parameters, {trainable:,} trainable\n"
        f"data: {data.description}: {_count(data.train)} train / {_count(data.validation)} validation images, "
        f"{len(data.labels)} classes\n"
        f"frozen: {', '.join(frozen) or 'nothing'}; learning rates: "
        + ", ".join(f"{part} {rate:g}" for part, rate in rates.items() if part not in frozen)
        + f"\nbatch: {args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} accumulation "
        f"x {args.world_size} processes = {effective} per optimizer step\n{lr_rule}"
    )


def _recipe(model_args, data_args, args, data, frozen, head_lr, backbone_lr) -> dict:
    """What `recipe.json` records: enough to rerun the experiment and to write the model card."""
    augmentation = ("crop_scale_min", "hflip", "auto_augment", "random_erasing", "mixup_alpha", "cutmix_alpha")
    return {
        "model": dataclasses.asdict(model_args),
        "data": dataclasses.asdict(data_args),
        "dataset": data.description,
        "recipe": {
            "frozen": frozen,
            "learning_rates": {"head": head_lr, "backbone": backbone_lr, "backbone_lr_decay": args.backbone_lr_decay},
            "unfreeze_at_epoch": args.unfreeze_at_epoch,
            "augmentation": {key: getattr(data_args, key) for key in augmentation}
            | {"label_smoothing": args.label_smoothing_factor},
            "epochs": args.num_train_epochs,
            "batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
            "optimizer": getattr(args.optim, "value", args.optim),
            "lr_scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
            "weight_decay": args.weight_decay,
            "seed": args.seed,
        },
    }


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ResNetTrainingArguments,
    dataset=None,
    config=None,
    callbacks: list[TrainerCallback] | None = None,
) -> FinetuneResult:
    """Fine-tune, evaluate and save; the body of `recipes/finetune.py` and of `hf_resnet.finetune`."""
    _setup_logging(training_args)
    transformers.set_seed(training_args.seed)
    resume_from = _resume_checkpoint(training_args)  # before the data scan: a bad flag should fail in a second

    streaming = data_args.streaming or isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict))
    if streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming: a stream has no length, so pass --max_steps (the number of optimizer steps)")
    if streaming:
        data = load_stream(data_args, training_args.seed, dataset)
    else:
        data = load_image_data(data_args, seed=training_args.seed, dataset=dataset)
    model, processor, frozen = build_model(model_args, data.labels, config=config)
    if training_args.sync_bn and training_args.world_size > 1:
        if training_args.device.type != "cuda":
            raise ValueError("--sync_bn needs CUDA devices: torch's SyncBatchNorm runs on GPUs only")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        freeze(model, frozen)  # the converted BatchNorm layers need the frozen-statistics hooks again
    train_transform = build_train_transform(processor, data_args)
    if streaming:
        stream_transform = StreamTransform(train_transform, training_args.seed)
        train_images = data.train.map(stream_transform)
        epoch_setter = StreamEpochSetter(train_images, stream_transform)
        # Each rank reads its own shards instead of rank 0 reading everything and dispatching batches.
        training_args.accelerator_config.dispatch_batches = False
    else:
        stage = train_stage(training_args.augment_on, training_args.gpu_decode, training_args.device)
        train_images = TrainImages(data.train, train_transform, seed=training_args.seed, stage=stage)
        epoch_setter = EpochSetter(train_images)
    eval_images = EvalImages(data.validation, build_eval_transform(processor))
    skip_frozen = None
    if training_args.cache_frozen_features:  # speed (issue 6): see hf_resnet/features.py for the trade-off
        if streaming:
            raise ValueError("--cache_frozen_features needs a dataset of known length, not a stream")
        eval_transform = build_eval_transform(processor)
        train_images, skip_frozen = cache_frozen_features(model, frozen, data.train, eval_transform, training_args)
        logger.warning("Training on cached features: random crops, flips, auto-augment, erasing and mixing are off")

    head_lr = training_args.head_learning_rate or training_args.learning_rate
    backbone_lr = training_args.backbone_learning_rate
    if backbone_lr is None:
        backbone_lr = PRETRAINED_BACKBONE_LR if model_args.model_name_or_path else head_lr
    head_lr, backbone_lr, lr_rule = scaled_learning_rates(head_lr, backbone_lr, training_args)
    rates = part_learning_rates(head_lr, backbone_lr, training_args.backbone_lr_decay)
    logger.info("hf_resnet run\n%s", _summary(model, data, model_args, training_args, frozen, rates, lr_rule))

    stop = GracefulStop()
    callbacks = [epoch_setter, stop, *(callbacks or [])]
    if training_args.unfreeze_at_epoch is not None and frozen:
        if training_args.world_size > 1:
            raise ValueError(
                "--unfreeze_at_epoch is single-process only for now: DistributedDataParallel fixes the set of "
                "trained parameters when it wraps the model. Use --freeze with fewer parts instead."
            )
        unfreezing = GradualUnfreezing(model, frozen, training_args.unfreeze_at_epoch, training_args.unfreeze_every)
        callbacks.append(unfreezing)
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    if training_args.push_to_hub:
        from . import hub

        callbacks += hub.trainer_callbacks(training_args)
    # hub.py does all pushing (with a model card and retry advice), so the Trainer's own push must not run,
    # and the token stays out of the Trainer's copy: training_args.bin in checkpoints never holds it.
    trainer_args = dataclasses.replace(training_args, push_to_hub=False, hub_token=None)

    trainer = ResNetTrainer(
        model=model,
        args=trainer_args,
        train_dataset=train_images,
        eval_dataset=eval_images,
        data_collator=collate,
        processing_class=processor,
        compute_metrics=compute_metrics,
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: soft_cross_entropy(
            outputs, labels, num_items_in_batch, training_args.label_smoothing_factor
        ),
        callbacks=callbacks,
        head_lr=head_lr,
        backbone_lr=backbone_lr,
        lr_decay=training_args.backbone_lr_decay,
        batch_mix=None if skip_frozen else build_batch_mix(len(data.labels), data_args),
    )

    on_cpu = training_args.reuse_host_memory and training_args.device.type == "cpu"
    with reused_host_memory(enabled=on_cpu):
        train_result = trainer.train(resume_from_checkpoint=resume_from)
    if skip_frozen is not None:
        skip_frozen.remove()
    output_dir = Path(training_args.output_dir)
    trainer.save_model()
    train_samples = train_result.global_step * training_args.train_batch_size * training_args.world_size
    train_metrics = {**train_result.metrics, "train_samples": train_samples if streaming else len(data.train)}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()
    if stop.requested:
        logger.warning(
            "Stopped at step %d; checkpoint saved. Resume with the same command plus --resume_from_checkpoint last",
            stop.stopped_at,
        )
        return FinetuneResult(output_dir, train_metrics, data.labels, model.eval(), interrupted_at=stop.stopped_at)

    # predict() gathers with gather_for_metrics, so each validation image counts once across processes.
    with reused_host_memory(enabled=on_cpu):
        prediction = trainer.predict(eval_images, metric_key_prefix="eval")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    logits, labels = torch.as_tensor(logits), torch.as_tensor(prediction.label_ids)
    eval_metrics = {
        **prediction.metrics,
        # The Trainer averages per-batch losses, which counts the padding of the last distributed batch;
        # recomputed from the gathered logits, each image counts once, as in the other metrics.
        "eval_loss": soft_cross_entropy(
            (logits,), labels, label_smoothing=training_args.label_smoothing_factor
        ).item(),
        **calibrate(model, logits, labels),
        "eval_samples": len(labels),
    }
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        model.config.save_pretrained(output_dir)  # now holding calibration_temperature
        report = per_class_report(logits.numpy(), labels.numpy(), data.labels)
        (output_dir / "eval_per_class.json").write_text(json.dumps(report, indent=2))
        recipe = _recipe(model_args, data_args, training_args, data, frozen, head_lr, backbone_lr)
        (output_dir / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str))
        card.write_model_card(output_dir)
    if training_args.push_to_hub:
        from . import hub

        hub.push_after_training(output_dir, training_args)
    metrics = {key: float(value) for key, value in {**train_metrics, **eval_metrics}.items()}
    return FinetuneResult(output_dir, metrics, data.labels, model.eval())
