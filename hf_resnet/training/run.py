"""The fine-tuning run: data, model, `Trainer`, results folder, in the order of the transformers examples."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import PredictionOutput

from ..config import run_folder
from ..config.arguments import ResNetTrainingArguments
from ..config.checks import Validated, check_labels, lock_output_dir, validate
from ..config.recipe_file import RECIPE_FILE, base_model_name, portable_arguments, portable_description
from ..data import image_cache
from ..data.arguments import DataArguments
from ..data.examples import keep_examples
from ..data.image_datasets import EvalImages, TrainImages, collate, train_stage
from ..data.sources import load_image_data, warn_if_cropped
from ..data.streaming import StreamTransform, load_stream
from ..data.transforms import build_eval_transform, build_train_transform, processor_geometry
from ..flags import named
from ..hub import card
from ..model.arguments import ModelArguments
from ..model.build import build_model
from ..model.freezing import freeze
from ..runtime.host_memory import reused_host_memory
from ..runtime.launcher import local_processes, use_cpu_threads
from ..runtime.signals import GracefulStop, stop_with_launcher
from ..tasks import task_for
from .callbacks import EpochSetter, GradualUnfreezing, StepTimes
from .ema import AverageChoice, WeightAverage, choose
from .frozen_features import cache_frozen_features
from .optim import part_learning_rates, scaled_learning_rates
from .trainer import ResNetTrainer

logger = logging.getLogger(__name__)


#: Backbone learning rate for a loaded checkpoint: pretrained features need nudging, not rewriting.
PRETRAINED_BACKBONE_LR = 1e-5


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


def _count(split) -> str:
    return str(len(split)) if hasattr(split, "__len__") else "streamed"


def _precision(args: ResNetTrainingArguments) -> str:
    name = "bf16 autocast" if args.bf16 else "fp16 autocast with loss scaling" if args.fp16 else "fp32"
    return f"{name} ({getattr(args, 'precision_reason', 'as given')})"


def _summary(model, data, model_args, args, frozen, rates, lr_rule, threads, data_path) -> str:
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
        f"x {args.world_size} processes = {effective} per optimizer step\n{lr_rule}\n"
        f"precision: {_precision(args)}"
        + (f"\nthreads: {threads}" if threads else "")
        + f"\n{_data_path_lines(data_path)}"
    )


def _data_path_lines(data_path: dict) -> str:
    return "\n".join(
        f"{name.replace('_', ' ')}: {choice['mode']} ({choice['why']})" for name, choice in data_path.items()
    )


@dataclass
class Records:
    """What recipe.json says about a run beyond its flags, known before training starts."""

    frozen: list[str]
    head_lr: float
    backbone_lr: float
    threads: str
    license: tuple[str, str]
    #: What the machine chose for the data path (image cache, overlap), and why.
    data_path: dict


def _held_out(data, data_args: DataArguments) -> dict:
    """Where validation came from, with a folder named as recipe.json names data (relative, under the root's name)."""
    if "folder" in data.held_out:
        return {"folder": portable_description(str(Path(data.held_out["folder"]).absolute()), data_args)}
    return data.held_out


def _recipe(model_args, data_args, args, data, records: Records, status: str, average=None, evaluated=None) -> dict:
    """What `recipe.json` records: the flags that rerun it anywhere (recipe_file.py), and a summary for the card.

    `status` is "finished" only for a run that trained to its end and evaluated; `evaluated` is the precision of
    the final metrics.
    """
    frozen, head_lr, backbone_lr, threads = records.frozen, records.head_lr, records.backbone_lr, records.threads
    return {
        "status": status,
        **portable_arguments(model_args, data_args, args),
        "base_model": base_model_name(model_args),
        "license": records.license[0],
        "license_from": records.license[1],
        "dataset": portable_description(data.description, data_args),
        "validation": _held_out(data, data_args),
        "recipe": {
            "frozen": frozen,
            "learning_rates": {"head": head_lr, "backbone": backbone_lr, "backbone_lr_decay": args.backbone_lr_decay},
            "unfreeze_at_epoch": args.unfreeze_at_epoch,
            # The flags declared for the card's augmentation table (hf_resnet/flags.py), from every dataclass.
            "augmentation": {
                key: getattr(arguments, key)
                for arguments in (model_args, data_args, args)
                for key in named(type(arguments), card="augmentation")
            },
            "epochs": args.num_train_epochs,
            "batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
            "optimizer": getattr(args.optim, "value", args.optim),
            "lr_scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "precision": _precision(args),
            "final_metrics_precision": evaluated,
            "threads": threads or None,
            "data_path": records.data_path,
            "ema": dataclasses.asdict(average) if average else None,
            "tta": args.tta,
        },
    }


def _image_cache_choice(data_args: DataArguments, args: ResNetTrainingArguments, train, geometry) -> dict:
    """`--image_cache` for this run, and why: as given, or what the decoded copy fits (data/image_cache.py).

    Decided by the main process for all: ranks reading the free memory a moment apart could choose
    differently, and only those choosing `disk` would wait at the build's barrier.
    """
    if args.cache_frozen_features:
        return {"mode": "off", "why": "--cache_frozen_features trains on features, not images"}
    if data_args.image_cache is None and args.gpu_decode:
        return {"mode": "off", "why": "--gpu_decode decodes on the GPU"}
    choice = [None]
    if PartialState().is_main_process:
        mode, why = image_cache.decide_mode(data_args.image_cache, train, geometry, local_processes())
        choice = [{"mode": mode, "why": why}]
    return broadcast_object_list(choice)[0] if args.world_size > 1 else choice[0]


def _keep_better_weights(
    trainer: ResNetTrainer, average: WeightAverage, eval_images
) -> tuple[AverageChoice, dict, PredictionOutput | None]:
    """Evaluate the trained and the averaged weights on the validation split and keep the better in the model.

    Returns the choice, the figures of both for eval_results.json (`eval_trained_*`, `eval_ema_*`) and,
    when the trained weights stay, their validation prediction, which the run then need not repeat;
    after this, the run calibrates and saves the model it keeps, alone.
    """
    compared = trainer.predict(eval_images, metric_key_prefix="eval")
    metric = trainer.args.metric_for_best_model or "loss"
    greater = trainer.args.greater_is_better
    greater = not metric.endswith("loss") if greater is None else greater
    choice = choose(compared.metrics, metric, greater, average.decay)
    trainer.weight_average = None
    logger.info(
        "Weight average: validation %s %.4g averaged vs %.4g trained; keeping the %s weights",
        choice.metric,
        choice.averaged,
        choice.trained,
        "averaged" if choice.kept == "ema" else "trained",
    )
    figures = {f"eval_trained_{choice.metric}": choice.trained, f"eval_ema_{choice.metric}": choice.averaged}
    if choice.kept == "trained":
        trained = {key: value for key, value in compared.metrics.items() if not key.startswith("eval_ema_")}
        return choice, figures, compared._replace(metrics=trained)
    average.copy_to(trainer.model)
    trainer.save_model()
    return choice, figures, None


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ResNetTrainingArguments,
    dataset=None,
    config=None,
    callbacks: list[TrainerCallback] | None = None,
    validated: Validated | None = None,
) -> FinetuneResult:
    """Fine-tune, evaluate and save; the body of `recipes/finetune.py` and of `hf_resnet.finetune`.

    `validated`: what `config.checks.validate` found for these arguments, when the caller already ran it.
    Raises `hub.push.PushError` when `--push_to_hub`'s push fails after training; the folder is complete then.
    """
    with contextlib.ExitStack() as folder:  # the output folder's lock, released however the run ends
        return _run(model_args, data_args, training_args, dataset, config, callbacks, validated, folder)


def _run(model_args, data_args, training_args, dataset, config, callbacks, validated, folder: contextlib.ExitStack):
    _setup_logging(training_args)
    stop_with_launcher()  # no training left running under PID 1 when accelerate launch/torchrun dies
    transformers.set_seed(training_args.seed)
    # Before the data scan, the model and the output folder: a bad argument fails in a second, leaving nothing behind.
    if validated is None:
        validated = validate(model_args, data_args, training_args, dataset, config)
    resume_from = validated.resume_from
    threads = use_cpu_threads() if training_args.device.type == "cpu" else ""

    streaming = data_args.streaming or isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict))
    if streaming:
        data = load_stream(data_args, training_args.seed, dataset)
    else:
        data = load_image_data(data_args, seed=training_args.seed, dataset=dataset)
    check_labels(resume_from, data.labels)
    task = task_for(data.problem_type)
    data_args = task.with_data_defaults(data_args)  # framing and augmentation defaults differ by task
    model, processor, frozen = build_model(model_args, data.labels, config=config, resize=data_args.resize)
    # Read now, while the base model's repo is known to answer: a stopped run's records need it as well.
    model_license = (training_args.license, "--license") if training_args.license else None
    base = model_args.model_name_or_path
    model_license = model_license or card.inherited_license(base, model_args.revision, training_args.hub_token)
    geometry = processor_geometry(processor)
    data_args = dataclasses.replace(data_args, resize=geometry.fit)  # recipe.json and the card name the frame used
    if not streaming:
        warn_if_cropped(data.train, geometry)
    task.configure(model.config)
    if training_args.tta != "none":  # saved in config.json: classify and evaluate then score as calibrated
        model.config.tta = training_args.tta
    if training_args.sync_bn and training_args.world_size > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        freeze(model, frozen)  # the converted BatchNorm layers need the frozen-statistics hooks again
    train_transform = build_train_transform(processor, data_args)
    if streaming:
        stream_transform = StreamTransform(train_transform, training_args.seed)
        train_images = data.train.map(stream_transform)
        epoch_setter = EpochSetter(train_images, stream_transform)
        # Each rank reads its own shards instead of rank 0 reading everything and dispatching batches.
        training_args.accelerator_config.dispatch_batches = False
    data_path = {
        "data_overlap": {"mode": training_args.data_overlap, "why": training_args.data_overlap_reason},
        "image_cache": {"mode": "off", "why": "streamed data is read once per epoch" if streaming else ""},
    }
    if not streaming:
        stage = train_stage(training_args.augment_on, training_args.gpu_decode, training_args.device)
        data_path["image_cache"] = _image_cache_choice(data_args, training_args, data.train, geometry)
        mode = data_path["image_cache"]["mode"]
        with training_args.main_process_first(local=True, desc="image cache") if mode == "disk" else nullcontext():
            cache = image_cache.build(data.train, geometry, mode)  # on disk: decoded by one process, read by all
        train_images = TrainImages(data.train, train_transform, seed=training_args.seed, stage=stage, cache=cache)
        epoch_setter = EpochSetter(train_images)
    eval_images = EvalImages(data.validation, build_eval_transform(processor))
    skip_frozen = None
    if training_args.cache_frozen_features:  # see training/frozen_features.py for the trade-off
        eval_transform = build_eval_transform(processor)
        train_images, skip_frozen = cache_frozen_features(model, frozen, data.train, eval_transform, training_args)
        logger.warning("Training on cached features: random crops, flips, auto-augment, erasing and mixing are off")

    head_lr = training_args.head_learning_rate or training_args.learning_rate
    backbone_lr = training_args.backbone_learning_rate
    if backbone_lr is None:
        backbone_lr = PRETRAINED_BACKBONE_LR if model_args.model_name_or_path else head_lr
    head_lr, backbone_lr, lr_rule = scaled_learning_rates(head_lr, backbone_lr, training_args)
    rates = part_learning_rates(head_lr, backbone_lr, training_args.backbone_lr_decay)
    records = Records(frozen, head_lr, backbone_lr, threads, model_license, data_path)
    logger.info(
        "hf_resnet run\n%s",
        _summary(model, data, model_args, training_args, frozen, rates, lr_rule, threads, data_path),
    )

    stop = GracefulStop()
    step_times = StepTimes(
        training_args.train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    )
    callbacks = [epoch_setter, stop, step_times, *(callbacks or [])]
    ddp_arguments = {}
    if training_args.unfreeze_at_epoch is not None and frozen:
        unfreezing = GradualUnfreezing(model, frozen, training_args.unfreeze_at_epoch, training_args.unfreeze_every)
        callbacks.append(unfreezing)
        ddp_arguments = unfreezing.ddp_arguments(training_args.world_size)
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    average = WeightAverage(model, training_args.ema_decay) if training_args.ema_decay is not None else None
    if average is not None:
        callbacks.append(average)
    if training_args.push_to_hub:
        from ..hub import push as hub

        callbacks += hub.trainer_callbacks(training_args)
    # hub.py does all pushing (with a model card and retry advice), so the Trainer's own push must not run,
    # and the token stays out of the Trainer's copy: training_args.bin in checkpoints never holds it.
    trainer_args = dataclasses.replace(training_args, push_to_hub=False, hub_token=None, **ddp_arguments)
    trainer_args = task.best_model_args(trainer_args)
    weights, sampler = (None, None) if streaming else task.balance(data.train["label"], data.labels, training_args)

    # The output folder is touched only now, once data and model are known to load: a failure before leaves no trace.
    if training_args.should_save:
        folder.enter_context(lock_output_dir(training_args))  # a second run into the folder is refused here
        run_folder.start(
            Path(training_args.output_dir), validated.fingerprint, replace=training_args.overwrite_output_dir
        )
    PartialState().wait_for_everyone()
    trainer = ResNetTrainer(
        model=model,
        args=trainer_args,
        train_dataset=train_images,
        eval_dataset=eval_images,
        data_collator=collate,
        processing_class=processor,
        compute_metrics=task.compute_metrics(training_args.metrics.split(","), data.labels),
        compute_loss_func=task.loss(training_args.label_smoothing_factor, weights),
        callbacks=callbacks,
        head_lr=head_lr,
        backbone_lr=backbone_lr,
        lr_decay=training_args.backbone_lr_decay,
        sampler=sampler,
        weight_average=average,
        tta=training_args.tta,
        batch_mix=None if skip_frozen else task.batch_mix(len(data.labels), data_args),
    )

    on_cpu = training_args.reuse_host_memory and training_args.device.type == "cpu"
    with reused_host_memory(enabled=on_cpu):
        train_result = trainer.train(resume_from_checkpoint=resume_from)
    if skip_frozen is not None:
        skip_frozen.remove()
    output_dir = Path(training_args.output_dir)
    trainer.save_model()
    train_samples = train_result.global_step * training_args.train_batch_size * training_args.world_size
    train_metrics = {
        **train_result.metrics,
        **step_times.figures(),
        "train_samples": train_samples if streaming else len(data.train),
    }
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    # The run folder's state names its best checkpoint relative to the folder (checkpoints keep theirs: resumes
    # read them), so a moved or pushed folder holds no local path.
    if trainer.state.best_model_checkpoint:
        trainer.state.best_model_checkpoint = run_folder.portable_checkpoint_path(trainer.state.best_model_checkpoint)
    trainer.save_state()
    if stop.requested:
        stop.release()
        if trainer.is_world_process_zero():
            steps = f"step {stop.stopped_at} of {trainer.state.max_steps}"
            status = f"unfinished: stopped at {steps} by a signal; resume it with --resume_from_checkpoint last"
            recipe = _recipe(model_args, data_args, training_args, data, records, status)
            (output_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, default=str))
        logger.warning(
            "Stopped at step %d; checkpoint saved. Resume with the same command plus --resume_from_checkpoint last",
            stop.stopped_at,
        )
        return FinetuneResult(output_dir, train_metrics, data.labels, model.eval(), interrupted_at=stop.stopped_at)

    # The final figures are the saved model's as `hf-resnet evaluate` computes them: no training autocast from here on.
    evaluated = trainer.as_served()
    choice, compared, prediction = None, {}, None
    # predict() gathers with gather_for_metrics, so each validation image counts once across processes.
    with reused_host_memory(enabled=on_cpu):
        if average is not None and average.started:
            choice, compared, prediction = _keep_better_weights(trainer, average, eval_images)
        if prediction is None:
            prediction = trainer.predict(eval_images, metric_key_prefix="eval")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    logits, labels = torch.as_tensor(logits), torch.as_tensor(prediction.label_ids)
    fitted = task.fit(model, logits, labels)  # the temperature or thresholds, now in model.config
    report = task.per_class_report(logits.numpy(), labels.numpy(), data.labels)
    # As `hf-resnet evaluate` measures the saved model (its loss is the plain one, without training's smoothing).
    computed = [name for name in task.metrics if f"eval_{name}" in prediction.metrics]
    measured = task.measure(logits, labels, computed, report, model.config)
    eval_metrics = {**prediction.metrics, **fitted, **{f"eval_{key}": value for key, value in measured.items()}}
    eval_metrics |= compared
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        model.config.save_pretrained(output_dir)  # now holding calibration_temperature or thresholds
        (output_dir / "eval_per_class.json").write_text(json.dumps(report, indent=2))
        recipe = _recipe(model_args, data_args, training_args, data, records, "finished", choice, evaluated)
        (output_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, default=str))
        if data_args.keep_examples:
            keep_examples(data.validation, data.labels, output_dir)
        card.write_model_card(output_dir)
    if training_args.push_to_hub:
        from ..hub import push as hub

        hub.push_after_training(output_dir, training_args)
    metrics = {key: float(value) for key, value in {**train_metrics, **eval_metrics}.items()}
    return FinetuneResult(output_dir, metrics, data.labels, model.eval())
