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
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
import transformers
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from . import card
from .calibration import expected_calibration_error, fit_temperature
from .config import DataArguments, ModelArguments, ResNetTrainingArguments
from .data import load_image_data
from .metrics import compute_metrics, per_class_report
from .model import build_model, freeze, unfreeze
from .optim import parameter_groups, part_learning_rates
from .loading import EpochSetter, EvalImages, TrainImages, collate
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


class ResNetTrainer(Trainer):
    """A `Trainer` with head/backbone learning-rate groups and batch mixing; everything else is stock."""

    def __init__(self, *args, head_lr: float, backbone_lr: float, lr_decay: float = 1.0, batch_mix=None, **kwargs):
        self.head_lr, self.backbone_lr, self.lr_decay = head_lr, backbone_lr, lr_decay
        self.batch_mix = batch_mix
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            groups = parameter_groups(model, self.head_lr, self.backbone_lr, self.lr_decay, self.args.weight_decay)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        seeds = inputs.pop("sample_seed", None)
        if self.batch_mix is not None:
            # Seeded by the batch's own samples, so a resumed run mixes exactly as an uninterrupted one.
            with torch.random.fork_rng(devices=[]):
                if seeds is not None:
                    torch.manual_seed(int(seeds[0]))
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


@dataclass
class FinetuneResult:
    """What a run produced: its output folder and the final metrics (train_* and eval_*)."""

    output_dir: Path
    metrics: dict[str, float]
    labels: list[str]
    model: torch.nn.Module


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


def _summary(data, model_args, training_args, frozen, rates, from_checkpoint) -> str:
    trainable = sum(p.numel() for p in data["model"].parameters() if p.requires_grad)
    total = sum(p.numel() for p in data["model"].parameters())
    effective = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    source = model_args.model_name_or_path if from_checkpoint else f"{model_args.arch or 'custom'} (from scratch)"
    return (
        f"model: {source}, {total:,} parameters, {trainable:,} trainable\n"
        f"data: {data['description']}: {data['train']} train / {data['validation']} validation images, "
        f"{data['labels']} classes\n"
        f"frozen: {', '.join(frozen) or 'nothing'}; learning rates: "
        + ", ".join(f"{part} {rate:g}" for part, rate in rates.items())
        + f"\nbatch: {training_args.per_device_train_batch_size} per device x "
        f"{training_args.gradient_accumulation_steps} accumulation x {training_args.world_size} processes "
        f"= {effective} per step"
    )


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ResNetTrainingArguments,
    dataset=None,
    config=None,
) -> FinetuneResult:
    """Fine-tune, evaluate and save; the body of `recipes/finetune.py` and of `hf_resnet.finetune`."""
    _setup_logging(training_args)
    transformers.set_seed(training_args.seed)
    resume_from = _resume_checkpoint(training_args)  # before the data scan: a bad flag should fail in a second

    data = load_image_data(data_args, seed=training_args.seed, dataset=dataset)
    model, processor, frozen = build_model(model_args, data.labels, config=config)
    train_images = TrainImages(data.train, build_train_transform(processor, data_args), seed=training_args.seed)
    eval_images = EvalImages(data.validation, build_eval_transform(processor))

    from_checkpoint = bool(model_args.model_name_or_path)
    head_lr = training_args.head_learning_rate or training_args.learning_rate
    backbone_lr = training_args.backbone_learning_rate
    if backbone_lr is None:
        backbone_lr = PRETRAINED_BACKBONE_LR if from_checkpoint else head_lr
    rates = part_learning_rates(head_lr, backbone_lr, training_args.backbone_lr_decay)
    logger.info(
        "hf_resnet run\n%s",
        _summary(
            {
                "model": model,
                "description": data.description,
                "train": len(data.train),
                "validation": len(data.validation),
                "labels": len(data.labels),
            },
            model_args,
            training_args,
            frozen,
            {k: v for k, v in rates.items() if k not in frozen},
            from_checkpoint,
        ),
    )

    callbacks = [EpochSetter(train_images)]
    if training_args.unfreeze_at_epoch is not None and frozen:
        if training_args.world_size > 1:
            raise ValueError(
                "--unfreeze_at_epoch is single-process only for now: DistributedDataParallel fixes the set of "
                "trained parameters when it wraps the model. Use --freeze with fewer parts instead."
            )
        callbacks.append(
            GradualUnfreezing(model, frozen, training_args.unfreeze_at_epoch, training_args.unfreeze_every)
        )
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    if training_args.push_to_hub:
        from . import hub

        callbacks += hub.trainer_callbacks(training_args)
    # hub.py does all pushing (with a model card and retry advice); the Trainer's own push must not run.
    trainer_args = (
        dataclasses.replace(training_args, push_to_hub=False) if training_args.push_to_hub else training_args
    )

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
        batch_mix=build_batch_mix(len(data.labels), data_args),
    )

    train_result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()
    train_metrics = {**train_result.metrics, "train_samples": len(data.train)}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    # predict() gathers with gather_for_metrics, so each validation image counts once across processes.
    prediction = trainer.predict(eval_images, metric_key_prefix="eval")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    eval_metrics = {
        **prediction.metrics,
        **calibrate(model, torch.as_tensor(logits), torch.as_tensor(prediction.label_ids)),
        "eval_samples": len(data.validation),
    }
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        model.config.save_pretrained(output_dir)  # now holding calibration_temperature
        report = per_class_report(logits, prediction.label_ids, data.labels)
        (output_dir / "eval_per_class.json").write_text(json.dumps(report, indent=2))
        recipe = {
            "model": dataclasses.asdict(model_args),
            "data": dataclasses.asdict(data_args),
            "dataset": data.description,
            "recipe": {
                "frozen": frozen,
                "learning_rates": {
                    "head": head_lr,
                    "backbone": backbone_lr,
                    "backbone_lr_decay": training_args.backbone_lr_decay,
                },
                "unfreeze_at_epoch": training_args.unfreeze_at_epoch,
                "augmentation": {
                    key: getattr(data_args, key)
                    for key in (
                        "crop_scale_min",
                        "hflip",
                        "auto_augment",
                        "random_erasing",
                        "mixup_alpha",
                        "cutmix_alpha",
                    )
                }
                | {"label_smoothing": training_args.label_smoothing_factor},
                "epochs": training_args.num_train_epochs,
                "batch_size": training_args.per_device_train_batch_size
                * training_args.world_size
                * training_args.gradient_accumulation_steps,
                "optimizer": getattr(training_args.optim, "value", training_args.optim),
                "lr_scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
                "weight_decay": training_args.weight_decay,
                "seed": training_args.seed,
            },
        }
        (output_dir / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str))
        card.write_model_card(output_dir)
    if training_args.push_to_hub:
        from . import hub

        hub.push_after_training(output_dir, training_args)
    metrics = {**train_metrics, **eval_metrics}
    model.eval()
    return FinetuneResult(
        output_dir=output_dir, metrics={k: float(v) for k, v in metrics.items()}, labels=data.labels, model=model
    )
