"""`hf-resnet evaluate` and `hf_resnet.evaluate`: score any image-classification checkpoint on a labelled set.

The model is whatever `AutoModelForImageClassification` loads (an hf_resnet output folder, any
transformers checkpoint folder, a Hub id) and the images go through its own image processor,
exactly as in training's evaluation, so a run's validation folder gives back its
`eval_results.json`. A multi-label model (config `problem_type`) is scored on label sets at the
thresholds saved in its config, as its training scored it. Several processes (`accelerate launch`)
each score a share of the images; `gather_for_metrics` drops the padding of the last batch, so
every image counts once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from ..config.checks import folder_write_problem
from ..data.arguments import DataArguments
from ..data.image_datasets import EvalImages, collate
from ..data.sources import load_labelled_split
from ..data.transforms import build_eval_transform
from ..families.loading import HUB_ID
from ..inference.classifier import checked_task
from ..inference.prediction import model_forward, predict, prepare_model
from ..model.tta import resolve_mode
from ..scoring.plots import plot_mistakes
from ..tasks import Task

logger = logging.getLogger(__name__)

#: Key prefix and file stem of everything written: test_results.json holds test_accuracy, ...
PREFIX = "test"
#: Most confident mistakes shown in the grid; a 4 x 4 grid stays readable at thumbnail size.
MISTAKES_SHOWN = 16


class EvaluationError(ValueError):
    """A problem with `evaluate`'s arguments, phrased so the user knows which one to fix."""


@dataclass
class EvaluationResult:
    """What `evaluate` measured (`test_*` keys, as written to test_results.json) and where the files are."""

    output_dir: Path
    metrics: dict[str, float]
    report: dict
    files: list[Path] = field(default_factory=list)


def _check_arguments(
    model, test_dir, dataset_name, dataset, output_dir, batch_size, max_samples, update_card=False
) -> Path:
    """Every argument checked before anything is loaded or written; returns the output folder."""
    folder = _output_folder(model, test_dir, dataset_name, dataset, output_dir, batch_size, max_samples)
    if problem := folder_write_problem(folder):
        if output_dir:
            raise EvaluationError(f"--output_dir {folder}: {problem}")
        raise EvaluationError(f"--model {folder}: {problem} as --output_dir (without it, results go beside the model)")
    card = folder / "README.md"
    if update_card and (card.is_dir() or (card.exists() and not os.access(card, os.W_OK))):
        raise EvaluationError(
            f"--update_card: {card} cannot be written ({'a folder' if card.is_dir() else 'read-only'}); "
            "make it a writable file, or leave out --update_card"
        )
    return folder


def _output_folder(model, test_dir, dataset_name, dataset, output_dir, batch_size, max_samples) -> Path:
    sources = [name for name, given in (("--test_dir", test_dir), ("--dataset_name", dataset_name)) if given]
    sources += ["dataset="] if dataset is not None else []
    if len(sources) != 1:
        raise EvaluationError(
            f"give exactly one test set: --test_dir DIR (class sub-folders) or --dataset_name NAME [--split S]; "
            f"got {' and '.join(sources) or 'none'}"
        )
    if batch_size < 1:
        raise EvaluationError(f"--batch_size {batch_size}: must be at least 1")
    if max_samples is not None and max_samples < 1:
        raise EvaluationError(f"--max_samples {max_samples}: must be at least 1 (leave it out to score every image)")
    location = Path(os.fspath(model)).expanduser()
    if location.is_dir():
        if not (location / "config.json").is_file():
            raise EvaluationError(f"--model {model}: the folder has no config.json; is it a saved model?")
        return Path(output_dir) if output_dir else location
    if not HUB_ID.match(str(model)) or location.is_absolute() or location.exists():
        raise EvaluationError(f"--model {model}: no such model folder, and not a Hub model id")
    if not output_dir:
        raise EvaluationError(f"--model {model} is a Hub id: pass --output_dir for the results")
    return Path(output_dir)


def _load_labels(model) -> tuple[AutoConfig, list[str]]:
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"--model {model}: cannot load its config: {error}") from None
    return config, [config.id2label[index] for index in range(config.num_labels)]


def _predict(model, images: Dataset, processor, accelerator: Accelerator, batch_size: int, workers: int, tta="none"):
    """Logits and labels of every image, gathered from all processes, each image once (averaged over `tta` views)."""
    loader = torch.utils.data.DataLoader(
        EvalImages(images, build_eval_transform(processor)),
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=workers,
    )
    loader = accelerator.prepare(loader)
    # fp32 whatever the machine: the figures a model card reports should not depend on the CPU that measured them.
    forward = model_forward(prepare_model(model, accelerator.device), accelerator.device, "fp32")
    logits, labels = [], []
    progress = tqdm(loader, desc="Evaluating", disable=not accelerator.is_local_main_process)
    for batch, output in predict(forward, progress, tta):
        # Gathered on the device: NCCL moves only device tensors.
        gathered_logits, gathered_labels = accelerator.gather_for_metrics(
            (output.to(accelerator.device), batch["labels"])
        )
        logits.append(gathered_logits.cpu())
        labels.append(gathered_labels.cpu())
    return torch.cat(logits), torch.cat(labels)


def _write(output_dir: Path, metrics: dict, report: dict, images, mistakes, task: Task, where: str):
    """test_results.json (merged into all_results.json, as the Trainer does), the report and the plots.

    The per-class plot is the task's: the confusion matrix, or for a multi-label model (whose images
    have no single true class) each class's average precision.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    results = output_dir / f"{PREFIX}_results.json"
    results.write_text(json.dumps(metrics, indent=4, sort_keys=True))
    everything = output_dir / "all_results.json"
    merged = json.loads(everything.read_text()) if everything.is_file() else {}
    everything.write_text(json.dumps({**merged, **metrics}, indent=4, sort_keys=True))
    per_class = output_dir / f"{PREFIX}_per_class.json"
    per_class.write_text(json.dumps(report, indent=2))
    plot = task.plot_per_class(report, output_dir / f"{PREFIX}_{task.per_class_plot}", where)
    return [results, per_class, plot, plot_mistakes(images, mistakes, output_dir / f"{PREFIX}_mistakes.png")]


def evaluate(
    model: str | os.PathLike,
    test_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    split: str = "test",
    dataset: Dataset | None = None,
    output_dir: str | os.PathLike | None = None,
    metrics: str | list[str] | None = None,
    batch_size: int = 64,
    update_card: bool = False,
    image_column: str | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
    verify_images: bool = True,
    skip_bad_images: bool = False,
    num_workers: int = 0,
    tta: bool | str | None = None,
) -> EvaluationResult:
    """Score `model` on a labelled test set and write test_results.json, a per-class report and two plots.

    The results go to `output_dir` (default: the model folder itself). `update_card` adds them to
    the model card's model-index as their own entry (dataset, config, split), keeping the others.
    `tta` scores each image as the mean logits of a few views of it (`hf_resnet.model.tta`): "flip"
    (or True), "crops", "flip+crops"; None (the default) does what the model was calibrated with.
    A multi-label model is scored on label sets (a metadata folder, a list label column; class
    sub-folders as one-label sets) at the thresholds in its config: mAP, micro/macro F1, exact match.
    """
    output_dir = _check_arguments(
        model, test_dir, dataset_name, dataset, output_dir, batch_size, max_samples, update_card
    )
    config, labels = _load_labels(model)
    tta = resolve_mode(tta, getattr(config, "tta", None))
    task = checked_task(config, model)
    names = task.metric_names(metrics)
    accelerator = Accelerator()
    data_args = DataArguments(
        dataset_name=dataset_name,
        dataset_config=dataset_config,
        image_column=image_column,
        label_column=label_column,
        max_eval_samples=max_samples,
        verify_images=verify_images,
        skip_bad_images=skip_bad_images,
    )
    images, description = load_labelled_split(labels, data_args, test_dir, split, dataset, task.multi_hot)
    classifier = AutoModelForImageClassification.from_pretrained(model, config=config)
    processor = AutoImageProcessor.from_pretrained(model)

    start = time.perf_counter()
    logits, targets = _predict(classifier, images, processor, accelerator, batch_size, num_workers, tta)
    runtime = time.perf_counter() - start
    report = task.per_class_report(logits.numpy(), targets.numpy(), labels)
    measured = task.measure(logits, targets, names, report, config)
    measured |= {"runtime": round(runtime, 4), "samples_per_second": round(len(targets) / runtime, 3)}
    results = {f"{PREFIX}_{key}": value for key, value in measured.items()}
    files = []
    if accelerator.is_main_process:
        mistakes = task.mistakes(logits, targets, config, labels, MISTAKES_SHOWN)
        files = _write(output_dir, results, report, images, mistakes, task, f"{description}, {split}")
        if update_card:  # the card is the Hub's concern: imported only when asked for
            from ..hub.card import add_eval_results

            dataset_type = dataset_name if dataset_name else "imagefolder"
            shown = description if dataset_name else "local image folder " + "/".join(Path(description).parts[-2:])
            scores = {key: value for key, value in measured.items() if key not in ("runtime", "samples_per_second")}
            try:
                files.append(add_eval_results(output_dir, scores, dataset_type, shown, dataset_config, split))
            except OSError as error:  # taken away since the check: the results are written, the card is not
                raise EvaluationError(
                    f"--update_card: {output_dir / 'README.md'} could not be written ({error.strerror or error}); "
                    f"the results are in {output_dir}"
                ) from None
        logger.info("%s: %s", description, ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
    accelerator.wait_for_everyone()
    return EvaluationResult(output_dir, results, report, files)
