"""The fine-tuning run: data, model, `Trainer`, results folder, in the order of the transformers examples."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PredictionOutput

from ..config import run_folder
from ..config.arguments import ResNetTrainingArguments
from ..config.checks import check_labels, lock_output_dir, validate
from ..config.plan import Cadence, DataPlan, Plan
from ..config.recipe_file import RECIPE_FILE, base_model_name, portable_arguments, portable_description
from ..data import image_cache
from ..data.arguments import DataArguments
from ..data.examples import keep_examples
from ..data.image_datasets import EvalImages, TrainImages, collate, train_stage
from ..data.sources import image_sizes, load_image_data, warn_if_cropped
from ..data.streaming import StreamTransform, load_stream
from ..data.transforms import build_eval_transform, build_train_transform, processor_geometry, size_from_data
from ..flags import named
from ..hub import card
from ..model.arguments import ModelArguments
from ..model.build import build_model
from ..model.freezing import freeze
from ..runtime.console import quiet_libraries
from ..runtime.host_memory import reused_host_memory
from ..runtime.launcher import local_processes
from ..runtime.signals import GracefulStop, stop_at_once, stop_with_launcher
from ..tasks import task_for
from .callbacks import EpochSetter, GradualUnfreezing, StepTimes, one_line_per_evaluation
from .distill import load_teacher
from .ema import AverageChoice, WeightAverage, choose
from .frozen_features import cache_frozen_features
from .trainer import ResNetTrainer

logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    """What a run produced: its output folder and the final metrics (train_* and eval_*)."""

    output_dir: Path
    metrics: dict[str, float]
    labels: list[str]
    model: torch.nn.Module
    #: Set when Ctrl-C/SIGTERM stopped the run early: the global step of its last checkpoint.
    interrupted_at: int | None = None
    #: What the run decided (config/plan.py), complete: the data, the model, the rates, the geometry.
    plan: Plan | None = None


def _setup_logging(training_args: ResNetTrainingArguments) -> None:
    level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    logging.getLogger("hf_resnet").setLevel(own_log_level(training_args))
    quiet_libraries(verbose=training_args.verbose)


def own_log_level(training_args: ResNetTrainingArguments) -> int:
    """hf_resnet's level: DEBUG with --verbose; WARNING off the main process, or told so by --log_level
    (lr-find's sweeps and search's trials, whose caller says their result in one line); else INFO."""
    if not training_args.should_log:
        return logging.WARNING
    if training_args.verbose:
        return logging.DEBUG
    return logging.WARNING if training_args.log_level in ("warning", "error", "critical") else logging.INFO


def _image_size(model_args: ModelArguments, data_args: DataArguments, data, streaming: bool):
    """From scratch, the input size follows the data unless given (data/transforms.py `size_from_data`).

    A checkpoint keeps its own preprocessing, as does a processor or size the user named; a stream is not
    scanned. Returns the model arguments with the size set (recipe.json then reruns at it) and why, for the plan.
    """
    if model_args.model_name_or_path or model_args.image_size or model_args.image_processor_name:
        return model_args, ""
    if streaming:
        return model_args, "the default processor's: a stream is not scanned (--image_size sets it)"
    size, why = size_from_data(image_sizes(data.train), data_args.resize or "crop")
    return dataclasses.replace(model_args, image_size=size), f"from the data: {why} (--image_size sets it)"


def _held_out(held_out: dict, data_args: DataArguments) -> dict:
    """Where validation came from, with a folder named as recipe.json names data (relative, under the root's name)."""
    if "folder" in held_out:
        return {"folder": portable_description(str(Path(held_out["folder"]).absolute()), data_args)}
    return dict(held_out)


def _recipe(
    plan: Plan, model_args, data_args, args, status: str, average=None, evaluated=None, calibration=None
) -> dict:
    """What `recipe.json` records: the flags that rerun it anywhere (recipe_file.py), and the plan for the card.

    `status` is "finished" only for a run that trained to its end and evaluated; `evaluated` is the precision of
    the final metrics.
    """
    return {
        "status": status,
        **portable_arguments(model_args, data_args, args),
        "base_model": base_model_name(model_args),
        "license": plan.license[0],
        "license_from": plan.license[1],
        "dataset": portable_description(plan.data.description, data_args),
        "validation": _held_out(plan.data.held_out, data_args),
        # Per split; None where streamed. A multi-label image counts once per class it holds.
        "images": dict(plan.data.sizes),
        "images_per_class": {split: None if n is None else dict(n) for split, n in plan.data.counts.items()},
        "recipe": {
            "frozen": list(plan.frozen),
            "learning_rates": {
                "head": plan.rates.head,
                "backbone": plan.rates.backbone,
                "backbone_lr_decay": plan.rates.decay,
            },
            "unfreeze_at_epoch": args.unfreeze_at_epoch,
            # The flags declared for the card's augmentation table (hf_resnet/flags.py), from every dataclass.
            "augmentation": {
                key: getattr(arguments, key)
                for arguments in (model_args, data_args, args)
                for key in named(type(arguments), card="augmentation")
            },
            "image_size": [plan.geometry.height, plan.geometry.width],
            "epochs": args.num_train_epochs,
            "batch_size": plan.effective_batch,
            "optimizer": getattr(args.optim, "value", args.optim),
            "lr_scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "precision": plan.precision,
            "final_metrics_precision": evaluated,
            "threads": plan.threads_text() or None,
            "data_path": plan.data_path(),
            "ema": dataclasses.asdict(average) if average else None,
            "tta": args.tta,
            "calibration": calibration,
            "distillation": plan.distillation.record() if plan.distillation else None,
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


#: Optimizer steps a dry run trains: the first builds kernels and starts the data workers, the two after it are timed.
TIMED_STEPS = 3


def _timing_arguments(trainer_args, folder: str):
    """The Trainer arguments of a dry run: `TIMED_STEPS` steps into a temporary `folder`, nothing evaluated or saved.

    The Trainer creates its output folder, so a dry run gives it one of its own, removed when the run
    returns; the run's folder is never created.
    """
    return dataclasses.replace(
        trainer_args,
        output_dir=folder,
        max_steps=TIMED_STEPS,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=None,
        report_to="none",
        disable_tqdm=True,
    )


def _time_steps(trainer: ResNetTrainer, plan: Plan, times: StepTimes) -> dict[str, float]:
    """Train the dry run's few real steps on the model in memory; the seconds an epoch would take by them.

    Evaluation, saving and a first epoch's image cache are not in the estimate.
    """
    for printer in (PrinterCallback, ProgressCallback):  # the estimate is the dry run's only figure
        trainer.remove_callback(printer)
    trainer.train()
    figures = times.figures()
    rate = figures.get("train_steady_samples_per_second")
    if not rate:
        return figures
    figures["train_step_seconds"] = round(plan.effective_batch / rate, 4)
    images = plan.data.total("train")
    if images is not None:
        figures["train_epoch_seconds_estimate"] = float(f"{images / rate:.3g}")  # 3 figures: small epochs too
    return figures


def dry_run_report(result: FinetuneResult) -> str:
    """What `--dry_run` prints: the plan, and how long an epoch would take by the steps it timed."""
    figures, plan = result.metrics, result.plan
    if "train_step_seconds" not in figures:
        timed = "time per epoch: not estimated (--cache_frozen_features computes the features first; no step timed)"
    else:
        steps = f"{TIMED_STEPS} timed steps of {plan.effective_batch} images"
        each = (
            f"{figures['train_step_seconds']:.3g} s each after the first's {figures['train_first_step_seconds']:.3g} s"
        )
        epoch = figures.get("train_epoch_seconds_estimate")
        timed = (
            f"time per epoch: about {_duration(epoch)}" if epoch is not None else "time per epoch: unknown (streamed)"
        ) + f" ({steps}: {each}; evaluation and saving not included)"
    return f"Dry run: nothing was trained or written.\n{plan.summary()}\n{timed}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 7200 else f"{seconds / 3600:.3g} h"


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
    plan: Plan | None = None,
) -> FinetuneResult:
    """Fine-tune, evaluate and save; the body of `recipes/finetune.py` and of `hf_resnet.finetune`.

    `plan`: what `config.checks.validate` resolved for these arguments, when the caller already ran it.
    With `--dry_run` the run stops once its plan is complete and a few steps are timed: nothing is written, and
    the result holds the plan and the estimate (`metrics["train_epoch_seconds_estimate"]`, where one is made).
    Raises `hub.push.PushError` when `--push_to_hub`'s push fails after training; the folder is complete then.
    """
    with contextlib.ExitStack() as folder:  # the output folder's lock, released however the run ends
        folder.enter_context(stop_at_once())  # Ctrl-C/SIGTERM before training: one line, nothing left behind
        return _run(model_args, data_args, training_args, dataset, config, callbacks, plan, folder)


def _class_counts(split, labels: list[str]) -> dict[str, int] | None:
    """Images of each class in a split (a multi-label image counts for each of its classes); None when streamed."""
    if not hasattr(split, "__len__"):
        return None
    rows = np.asarray(split["label"])
    counts = rows.sum(axis=0) if rows.ndim == 2 else np.bincount(rows, minlength=len(labels))
    return {label: int(count) for label, count in zip(labels, counts)}


def _data_plan(data, task, image_cache_choice: dict) -> DataPlan:
    """What the listed data is, for the plan: its task, classes, and images per split and per class."""
    splits = {"train": data.train, "validation": data.validation}
    sizes = {split: len(images) if hasattr(images, "__len__") else None for split, images in splits.items()}
    counts = {split: _class_counts(images, data.labels) for split, images in splits.items()}
    return DataPlan(data.description, task, tuple(data.labels), sizes, counts, data.held_out, image_cache_choice)


def _parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _license(model_args, training_args) -> tuple[str, str]:
    """`--license`, else the base model's (read now, while its repo is known to answer: a stopped run needs it too)."""
    if training_args.license:
        return training_args.license, "--license"
    return card.inherited_license(model_args.model_name_or_path, model_args.revision, training_args.hub_token)


def _run(model_args, data_args, training_args, dataset, config, callbacks, plan: Plan | None, folder):
    _setup_logging(training_args)
    stop_with_launcher()  # no training left running under PID 1 when accelerate launch/torchrun dies
    transformers.set_seed(training_args.seed)
    # Before the data scan, the model and the output folder: a bad argument fails in a second, leaving nothing behind.
    if plan is None:
        plan = validate(model_args, data_args, training_args, dataset, config)
    if plan.threads:
        torch.set_num_threads(plan.threads[0])
    streaming = plan.streaming
    if streaming:
        data = load_stream(data_args, training_args.seed, dataset)
    else:
        data = load_image_data(data_args, seed=training_args.seed, dataset=dataset)
    check_labels(plan.resume_from, data.labels)
    task = task_for(data.problem_type)
    data_args = task.with_data_defaults(data_args)  # framing and augmentation defaults differ by task
    model_args, size_why = _image_size(model_args, data_args, data, streaming)
    model, processor, _ = build_model(
        model_args, data.labels, config=config, resize=data_args.resize, family=plan.family, frozen=plan.frozen
    )
    geometry = processor_geometry(processor)
    teacher = None
    if plan.distillation is not None:  # checked against the data's classes before anything is written
        teacher, distillation = load_teacher(
            plan.distillation,
            data.labels,
            data.problem_type,
            geometry,
            training_args.device,
            torch.channels_last if training_args.channels_last else torch.contiguous_format,
            cache_dir=model_args.cache_dir,
        )
        plan = plan.with_distillation(distillation)
    data_args = dataclasses.replace(data_args, resize=geometry.fit)  # recipe.json and the card name the frame used
    if not streaming:
        warn_if_cropped(data.train, geometry)
    task.configure(model.config)
    if training_args.tta != "none":  # saved in config.json: classify and evaluate then score as calibrated
        model.config.tta = training_args.tta
    if training_args.sync_bn and training_args.world_size > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # The converted BatchNorm layers need the frozen-statistics hooks again.
        freeze(model, list(plan.frozen), plan.family)
    if streaming:
        image_cache_choice = {"mode": "off", "why": "streamed data is read once per epoch"}
    else:
        image_cache_choice = _image_cache_choice(data_args, training_args, data.train, geometry)
    # hub.py does all pushing (with a model card and retry advice), so the Trainer's own push must not run,
    # and the token stays out of the Trainer's copy: training_args.bin in checkpoints never holds it.
    trainer_args = task.best_model_args(dataclasses.replace(training_args, push_to_hub=False, hub_token=None))
    described = _data_plan(data, task, image_cache_choice)
    plan = plan.with_data(
        described,
        geometry,
        Cadence.of(trainer_args),
        _parameters(model),
        _license(model_args, training_args),
        size_why=size_why,
    )
    if not training_args.dry_run:
        logger.info("hf_resnet run: %s", plan.summary(brief=True))

    train_transform = build_train_transform(processor, data_args)
    if streaming:
        stream_transform = StreamTransform(train_transform, training_args.seed)
        train_images = data.train.map(stream_transform)
        epoch_setter = EpochSetter(train_images, stream_transform)
        # Each rank reads its own shards instead of rank 0 reading everything and dispatching batches.
        training_args.accelerator_config.dispatch_batches = False
    else:
        stage = train_stage(training_args.augment_on, training_args.gpu_decode, training_args.device)
        cache, mode = None, image_cache_choice["mode"]
        if not training_args.dry_run:  # a dry run writes and keeps nothing
            with training_args.main_process_first(local=True, desc="image cache") if mode == "disk" else nullcontext():
                # On disk: decoded by one process, read by all. A disk cache that cannot be written falls back to none.
                cache, used = image_cache.prepare(
                    data.train, geometry, image_cache_choice, asked=data_args.image_cache == "disk"
                )
            if used != image_cache_choice:
                plan = plan.with_image_cache(used)
        train_images = TrainImages(data.train, train_transform, seed=training_args.seed, stage=stage, cache=cache)
        epoch_setter = EpochSetter(train_images)
    eval_images = EvalImages(data.validation, build_eval_transform(processor))
    skip_frozen = None
    if training_args.cache_frozen_features and not training_args.dry_run:  # see training/frozen_features.py
        eval_transform = build_eval_transform(processor)
        train_images, skip_frozen = cache_frozen_features(
            model, list(plan.frozen), data.train, eval_transform, training_args, plan.family
        )
        logger.warning("Training on cached features: random crops, flips, auto-augment, erasing and mixing are off")

    stop = GracefulStop()
    step_times = StepTimes(plan.effective_batch)
    callbacks = [epoch_setter, stop, step_times, *(callbacks or [])]
    if training_args.unfreeze_at_epoch is not None and plan.frozen:
        unfreezing = GradualUnfreezing(
            model, list(plan.frozen), training_args.unfreeze_at_epoch, training_args.unfreeze_every, plan.family
        )
        callbacks.append(unfreezing)
        trainer_args = dataclasses.replace(trainer_args, **unfreezing.ddp_arguments(training_args.world_size))
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    average = WeightAverage(model, training_args.ema_decay) if training_args.ema_decay is not None else None
    if average is not None:
        callbacks.append(average)
    if training_args.push_to_hub and not training_args.dry_run:
        from ..hub import push as hub

        callbacks += hub.trainer_callbacks(training_args)
    weights, sampler = (None, None) if streaming else task.balance(data.train["label"], data.labels, training_args)

    if training_args.dry_run:  # a few real steps, timed, into a folder of its own that the run removes
        trainer_args = _timing_arguments(trainer_args, folder.enter_context(tempfile.TemporaryDirectory()))
        callbacks = [epoch_setter, stop, step_times]
    # The output folder is touched only now, once data and model are known to load: a failure before leaves no trace.
    elif training_args.should_save:
        folder.enter_context(run_folder.withdrawn_if_stopped_early(Path(training_args.output_dir)))
        folder.enter_context(lock_output_dir(training_args))  # a second run into the folder is refused here
        run_folder.start(Path(training_args.output_dir), plan.fingerprint, replace=training_args.overwrite_output_dir)
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
        head_lr=plan.rates.head,
        backbone_lr=plan.rates.backbone,
        lr_decay=plan.rates.decay,
        sampler=sampler,
        weight_average=average,
        tta=training_args.tta,
        batch_mix=None if skip_frozen else task.batch_mix(len(data.labels), data_args),
        family=plan.family,
        teacher=teacher,
    )
    if training_args.dry_run:
        estimate = {} if training_args.cache_frozen_features else _time_steps(trainer, plan, step_times)
        stop.release()
        stopped = stop.stopped_at if stop.requested else None
        output_dir = Path(training_args.output_dir)
        return FinetuneResult(output_dir, estimate, data.labels, model.eval(), interrupted_at=stopped, plan=plan)
    if not training_args.verbose:
        one_line_per_evaluation(trainer, lines=own_log_level(training_args) <= logging.INFO)

    on_cpu = training_args.reuse_host_memory and training_args.device.type == "cpu"
    with reused_host_memory(enabled=on_cpu):
        train_result = trainer.train(resume_from_checkpoint=plan.resume_from)
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
    if training_args.verbose:  # else the evaluations' lines and the result say it (all in train_results.json)
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
            recipe = _recipe(plan, model_args, data_args, training_args, status)
            (output_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, default=str))
        logger.warning(
            "Stopped at step %d; checkpoint saved. Resume with the same command plus --resume_from_checkpoint last",
            stop.stopped_at,
        )
        return FinetuneResult(
            output_dir, train_metrics, data.labels, model.eval(), interrupted_at=stop.stopped_at, plan=plan
        )

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
    calibration = fitted.pop("calibration", None)  # the fit kept or refused, and why: recipe.json and the card
    report = task.per_class_report(logits.numpy(), labels.numpy(), data.labels)
    # As `hf-resnet evaluate` measures the saved model (its loss is the plain one, without training's smoothing).
    computed = [name for name in task.metrics if f"eval_{name}" in prediction.metrics]
    measured = task.measure(logits, labels, computed, report, model.config)
    # The fit's own figures last: its calibrated ECE is the held-out one, measure's is on the images it was fitted on.
    eval_metrics = {**prediction.metrics, **{f"eval_{key}": value for key, value in measured.items()}, **fitted}
    eval_metrics |= compared
    if training_args.verbose:
        trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        model.config.save_pretrained(output_dir)  # now holding calibration_temperature or thresholds
        (output_dir / "eval_per_class.json").write_text(json.dumps(report, indent=2))
        recipe = _recipe(plan, model_args, data_args, training_args, "finished", choice, evaluated, calibration)
        (output_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, default=str))
        if data_args.keep_examples:
            keep_examples(data.validation, data.labels, output_dir)
        card.write_model_card(output_dir)
    if training_args.push_to_hub:
        from ..hub import push as hub

        hub.push_after_training(output_dir, training_args)
    metrics = {key: float(value) for key, value in {**train_metrics, **eval_metrics}.items()}
    return FinetuneResult(output_dir, metrics, data.labels, model.eval(), plan=plan)
