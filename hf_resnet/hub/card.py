"""The model card: a pure function of a finished output folder (and, once known, the Hub repo id).

Reading everything from the folder (not from live training objects) means the card written
at the end of training and the one re-made by `hf-resnet push` after a crash are the same.
The card's plots are drawn with matplotlib's object API (no pyplot state, no display needed)
and saved without a timestamp, so re-rendering them gives identical bytes and a retried push
does not upload them again.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants

from ..config.run_folder import CARD_MARKER, written_by_package
from ..data.examples import find_examples
from ..families import config_labels, known_family
from ..families.loading import HUB_ID
from ..scoring.deployment_table import deployment_section
from ..scoring.metrics import METRICS, MULTI_LABEL_METRICS, RESULT_TITLES
from ..scoring.plots import plot_training_curves
from ..tasks import Task, task_for
from ..tasks import markdown_cell as _cell

logger = logging.getLogger(__name__)

#: A single-label model's per-class plot (each task names its own: `Task.per_class_plot`).
CONFUSION_MATRIX_PNG = task_for(None).per_class_plot
TRAINING_CURVES_PNG = "training_curves.png"
#: Metrics shown first and named for people (declared with each metric in scoring/metrics.py); other
#: `eval_*` numbers follow under their own names.
HEADLINE_METRICS = ("accuracy", "map")
METRIC_NAMES = (
    dict(
        sorted(
            ((name, metric.title) for name, metric in {**MULTI_LABEL_METRICS, **METRICS}.items()),
            key=lambda item: item[0] not in HEADLINE_METRICS,
        )
    )
    | RESULT_TITLES
)
#: Keys of the model-index (Hub leaderboards) for each metric we report there.
MODEL_INDEX_METRICS = {
    name: metric.hub_type for name, metric in {**METRICS, **MULTI_LABEL_METRICS}.items() if metric.hub_type
}
#: Recipe entries listed by name in the card, in this order; the rest follow under their own keys.
RECIPE_NAMES = {
    "epochs": "Epochs",
    "batch_size": "Batch size (effective)",
    "optimizer": "Optimizer",
    "lr_scheduler": "Schedule",
    "weight_decay": "Weight decay",
    "seed": "Seed",
}
#: Per-run bookkeeping the Trainer adds to results files; not a property of the model.
RUN_STATISTICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "samples")
#: Above this many classes, the matrix's cells are too small to print counts in (colour still shows).
#: Marks a per-class result (`recall/<label>`): the per-class table shows those, not the metric table.
PER_CLASS_KEY = "/"
ENUM_TEXT = re.compile(r"^[A-Z][A-Za-z]+\.([A-Z][A-Z0-9_]*)$")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _redact_secrets(value: Any) -> Any:
    # A recipe holds argument dicts; any `*token` among them must never reach a public card.
    if isinstance(value, dict):
        return {k: "<redacted>" if str(k).lower().endswith("token") else _redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_secrets(v) for v in value]
    return value


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and HUB_ID.match(name) is not None and not Path(name).is_absolute() and not Path(name).exists()


def _number(value: Any) -> str:
    if isinstance(value, str) and ENUM_TEXT.match(value):
        return ENUM_TEXT.match(value).group(1).lower()  # "OptimizerNames.ADAMW_TORCH" was str(enum)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _cell(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


# ----------------------------------------------------------------------------- what the folder says


def _eval_metrics(output_dir: Path) -> dict[str, float]:
    """`eval_*` numbers without their prefix, from eval_results.json (or all_results.json)."""
    results = _read_json(output_dir / "eval_results.json") or _read_json(output_dir / "all_results.json")
    return {key[len("eval_") :]: value for key, value in results.items() if key.startswith("eval_")}


def _dataset(recipe: dict) -> tuple[str | None, str]:
    """(Hub dataset id or None, a name for people); local paths shrink to their last two parts."""
    data = recipe.get("data", {})
    hub_id = data.get("dataset_name") if _is_hub_id(data.get("dataset_name")) else None
    if hub_id:
        config = data.get("dataset_config")
        return hub_id, f"{hub_id} ({config})" if config else hub_id
    name = str(recipe.get("dataset") or data.get("train_dir") or "an image dataset")
    return None, _local_name(name) if data.get("train_dir") else name


def _local_name(name: str) -> str:
    if "/" in name or "\\" in name:
        return "local image folder " + "/".join(Path(name).parts[-2:])
    return name


def _validation_dataset(recipe: dict) -> str:
    """What the validation results were measured on: a validation folder, a split of the data, or a share of train.

    recipe.json says which (`validation`); a recipe written before it did is read from its data flags.
    """
    dataset_id, name = _dataset(recipe)
    held_out = recipe.get("validation") or _older_held_out(recipe.get("data", {}), dataset_id)
    if "folder" in held_out:
        return _local_name(str(held_out["folder"]))
    if "fraction" in held_out:
        return f"{name} ({held_out['fraction']:.0%} held out for validation)"
    return name if dataset_id else f"{name}, split {held_out['split']!r}"


def _older_held_out(data: dict, dataset_id: str | None) -> dict:
    """Where validation came from, by an older recipe's data flags (before recipe.json recorded it)."""
    if data.get("validation_dir"):
        return {"folder": data["validation_dir"]}
    if dataset_id or not data.get("validation_split"):
        return {"split": "validation"}
    return {"fraction": data["validation_split"]}


def inherited_license(source: str | None, revision: str | None = None, token: str | None = None) -> tuple[str, str]:
    """(license, where it came from): the base model's license, which a fine-tune inherits.

    Its card's `license` first: a local checkpoint's card is its README.md; a Hub model's card data comes
    from the Hub (one request, no retries), or from its README.md in the cache when the Hub cannot be asked
    (offline). Where the card names none (or there is no card), timm's `pretrained_cfg.license` in the
    checkpoint's config.json, which timm writes for every checkpoint it publishes. A model trained from
    scratch, or a base that names none, gives "other", which tells the Hub (and the reader) that the
    license must be set (`--license`) before sharing it more widely.
    """
    if not source:
        return "other", "no base model (trained from scratch): set one with --license"
    local = Path(source)
    name = f"local checkpoint {local.resolve().name}" if local.exists() else source
    if not local.exists() and not _is_hub_id(source):  # a local folder that is gone (a recipe read on another machine)
        return "other", "the base model is a folder not found here: set one with --license"
    license, missing = _card_license(source, name, revision, token)
    if license:
        return str(license), f"inherited from the card of {name}"
    if license := _config_license(source, revision):
        return str(license), f"inherited from the pretrained_cfg in config.json of {name}"
    return "other", missing


def _card_license(source: str, name: str, revision: str | None, token: str | None) -> tuple[str | None, str]:
    """(the card's license or None, why there is none, as the end of the line that says so)."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    local = Path(source)
    if local.exists():
        readme = local / "README.md"
        if not readme.is_file():
            return None, f"{name} has no model card (README.md): set one with --license"
        license = ModelCard.load(readme, ignore_metadata_errors=True).data.license
    else:
        try:
            card_data = HfApi(token=token).model_info(source, revision=revision, expand=["cardData"]).card_data
            license = card_data.license if card_data else None
        except Exception as error:  # offline, no such repo, no access: the cached card, else say why
            cached = try_to_load_from_cache(source, "README.md", revision=revision)
            if not isinstance(cached, str):
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                return None, f"the card of {source} could not be read ({reason}): set one with --license"
            license = ModelCard.load(cached, ignore_metadata_errors=True).data.license
    return license, f"the card of {name} names no license: set one with --license"


def _config_license(source: str, revision: str | None) -> str | None:
    """`pretrained_cfg.license` of the checkpoint's config.json (already read to know its family: no request)."""
    from huggingface_hub import try_to_load_from_cache

    local = Path(source)
    cached = None if local.exists() else try_to_load_from_cache(source, "config.json", revision=revision)
    path = local / "config.json" if local.exists() else cached
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config, dict) else None
    return pretrained_cfg.get("license") if isinstance(pretrained_cfg, dict) else None


def _license(recipe: dict) -> str:
    """The license recipe.json records (`--license`, or the base model's); read from the base model for older ones."""
    if recipe.get("license"):
        return str(recipe["license"])
    return inherited_license(recipe.get("model", {}).get("model_name_or_path"))[0]


def describe_base_model(recipe: dict) -> tuple[str | None, str]:
    """(Hub model id or None, how the weights started, for people), from recipe.json's `base_model`."""
    model = recipe.get("model", {})
    source = model.get("model_name_or_path")
    if _is_hub_id(source):
        return source, f"fine-tuned from [{source}](https://huggingface.co/{source})"
    if source:  # an older recipe that kept a local path
        return None, "fine-tuned from a local checkpoint"
    base = recipe.get("base_model")
    if base and not base.startswith("from scratch"):
        return None, f"fine-tuned from {base}"
    layout = " ".join(str(part) for part in (model.get("arch") or "custom", model.get("variant")) if part)
    return None, f"trained {base or f'from scratch ({layout} layout)'}"


# ----------------------------------------------------------------------------- card sections


def _widget(output_dir: Path, repo_id: str | None, labels: list[str]) -> list[dict] | None:
    """The Hub's inference widget examples: the kept validation images, by URL (the widget needs one)."""
    examples = find_examples(output_dir)
    if not repo_id or not examples:
        return None
    widget = []
    for path in examples:
        index = int(path.name.split("_", 1)[0])
        title = labels[index] if index < len(labels) else path.stem
        relative = path.relative_to(output_dir).as_posix()
        widget.append({"src": f"{constants.ENDPOINT}/{repo_id}/resolve/main/{relative}", "example_title": title})
    return widget


def model_index_results(
    metrics: dict[str, float], dataset_type: str, dataset_name: str, dataset_config: str | None, split: str
) -> list[EvalResult]:
    """Model-index entries (what Hub leaderboards read) for the metrics the Hub has a name for."""
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=dataset_config,
            dataset_split=split,
            metric_type=metric_type,
            metric_name=METRIC_NAMES[key],
            metric_value=float(metrics[key]),
        )
        for key, metric_type in MODEL_INDEX_METRICS.items()
        if key in metrics
    ]


def _same_dataset(a: EvalResult, b: EvalResult) -> bool:
    return (a.dataset_type, a.dataset_name, a.dataset_config, a.dataset_split) == (
        b.dataset_type,
        b.dataset_name,
        b.dataset_config,
        b.dataset_split,
    )


def _other_results(path: Path, own: list[EvalResult]) -> list[EvalResult]:
    """Entries an existing card holds for other datasets or splits (`hf-resnet evaluate --update_card`)."""
    if not path.is_file():
        return []
    existing = ModelCard.load(path).data.eval_results or []
    return [result for result in existing if not any(_same_dataset(result, mine) for mine in own)]


def _metadata(
    model_name: str,
    recipe: dict,
    metrics: dict[str, float],
    previous_card: Path,
    widget: list[dict] | None,
    family_tags: tuple[str, ...] = (),
) -> ModelCardData:
    dataset_id, _ = _dataset(recipe)
    base_model, _ = describe_base_model(recipe)
    config = recipe.get("data", {}).get("dataset_config") if dataset_id else None
    validation = _validation_dataset(recipe)
    results = model_index_results(metrics, dataset_id or "imagefolder", validation, config, "validation")
    results += _other_results(previous_card, results)
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=base_model,
        license=_license(recipe),
        datasets=[dataset_id] if dataset_id else None,
        tags=["image-classification", "vision", "resnet", *family_tags, "hf_resnet"],
        metrics=sorted({result.metric_type for result in results}) or None,
        eval_results=results or None,
        widget=widget,
    )


def add_eval_results(
    output_dir: str | Path,
    metrics: dict[str, float],
    dataset_type: str,
    dataset_name: str,
    dataset_config: str | None = None,
    split: str = "test",
) -> Path:
    """Add one dataset's results to the card's model-index, replacing only an older entry for that same split.

    The card is created when the folder has none (a plain transformers checkpoint), with `CARD_MARKER`:
    this package wrote it, so a later run into the folder may re-render it. Entries for other datasets
    stay, and `write_model_card` keeps this one when it re-renders the card.
    """
    path = Path(output_dir) / "README.md"
    new = model_index_results(metrics, dataset_type, dataset_name, dataset_config, split)
    if path.is_file():
        card = ModelCard.load(path)
    else:
        card = ModelCard(f"---\n{ModelCardData(pipeline_tag='image-classification').to_yaml()}\n---\n{CARD_MARKER}\n")
    data = card.data
    data.eval_results = [r for r in data.eval_results or [] if not any(_same_dataset(r, n) for n in new)] + new
    data.model_name = data.model_name or Path(output_dir).resolve().name
    data.metrics = sorted({*(data.metrics or []), *(result.metric_type for result in new)}) or None
    card.save(path)
    return path


def _results_section(metrics: dict[str, float], report: dict, task: Task, has_curves: bool) -> str:
    if not metrics and not report:
        return "## Evaluation results\n\nNo evaluation results were saved with this model.\n"
    rows = [(METRIC_NAMES[k], metrics[k]) for k in METRIC_NAMES if k in metrics]
    rows += [
        (k, v)
        for k, v in sorted(metrics.items())
        if k not in METRIC_NAMES and k not in RUN_STATISTICS and PER_CLASS_KEY not in k
    ]
    if "samples" in metrics:
        rows.append(("Validation images", int(metrics["samples"])))
    lines = ["## Evaluation results", "", "| Metric | Value |", "| --- | --- |"]
    lines += [f"| {_cell(name)} | {_number(value)} |" for name, value in rows]
    if report:
        lines += task.card_per_class(report)
    if has_curves:
        lines += [
            "",
            "### Training curves",
            "",
            f"![Loss, validation metrics and learning rate]({TRAINING_CURVES_PNG})",
        ]
    return "\n".join(lines) + "\n"


def _rerun_command(recipe: dict, model_ref: str) -> str:
    """The command that reruns the recipe on the reader's data (what recipe.json could not record, they give)."""
    command = f"hf-resnet train --recipe {model_ref}"
    if recipe.get("paths", {}).get("relative_to"):
        command += " --data_root YOUR_DATA"
    if "model_name_or_path" in recipe.get("paths", {}).get("not_recorded", []):
        command += " --model_name_or_path YOUR_BASE_MODEL"
    if "teacher" in recipe.get("paths", {}).get("not_recorded", []):
        command += " --teacher YOUR_TEACHER"
    return command + " --output_dir YOUR_OUTPUT"


def _recipe_section(recipe: dict, train_results: dict, model_ref: str) -> str:
    steps = _redact_secrets(recipe.get("recipe", {}))
    _, base = describe_base_model(recipe)
    _, dataset = _dataset(recipe)
    frozen = steps.get("frozen")
    lines = ["## Training recipe", "", f"- Weights: {base}", f"- Data: {dataset}"]
    if distilled := steps.get("distillation"):
        lines.insert(4, _distillation_line(distilled))
    if "validation" in recipe:
        lines.append(f"- Validation: {_validation_dataset(recipe)}")
    if recipe.get("license"):
        lines.append(f"- License: {_cell(recipe['license'])} ({recipe.get('license_from', 'recorded')})")
    if frozen is not None:
        lines.append(
            f"- Frozen (weights and BatchNorm statistics): {', '.join(frozen)}" if frozen else "- Frozen: nothing"
        )
    if steps.get("image_size"):
        lines.append(f"- Image size: {'x'.join(str(side) for side in steps['image_size'])} px")
    for key, name in RECIPE_NAMES.items():
        if steps.get(key) is not None:
            lines.append(f"- {name}: {_number(steps[key])}")
    average = steps.get("ema")
    if average:
        kept = (
            "the averaged weights" if average["kept"] == "ema" else "the trained weights (the average was not better)"
        )
        figures = f"{_number(average['averaged'])} averaged vs {_number(average['trained'])} trained"
        lines.append(
            f"- Weight average (EMA, decay {_number(average['decay'])}): kept {kept}; "
            f"validation {_cell(average['metric'])} {figures}"
        )
    if steps.get("tta") not in (None, "none"):
        lines.append(
            f"- Test-time augmentation: {steps['tta']} (validation figures and calibration use it; "
            "`hf_resnet.classify` applies it, the plain transformers pipeline does not)"
        )
    if steps.get("calibration"):
        lines.append(f"- Calibration: {_cell(steps['calibration']['reason'])}")
    # The data path (image cache, overlap) is the training machine's choice, not part of what the model learnt.
    shown = {
        "frozen",
        "learning_rates",
        "augmentation",
        "ema",
        "tta",
        "data_path",
        "image_size",
        "calibration",
        "distillation",
        *RECIPE_NAMES,
    }
    lines += [
        f"- {_cell(key)}: {_number(value)}" for key, value in steps.items() if key not in shown and value is not None
    ]
    if "train_loss" in train_results:
        lines.append(f"- Final training loss: {train_results['train_loss']:.4g}")
    rates = steps.get("learning_rates") or {}
    if rates:
        lines += ["", "| Learning rate | Value |", "| --- | --- |"]
        lines += [f"| {_cell(group)} | {_number(rate)} |" for group, rate in rates.items()]
    augmentation = steps.get("augmentation") or {}
    if augmentation:
        lines += ["", "| Augmentation | Value |", "| --- | --- |"]
        lines += [f"| {_cell(name)} | {_number(value)} |" for name, value in augmentation.items()]
    if recipe:
        lines += ["", "Every argument of the run is in [recipe.json](recipe.json)."]
    if "training" in recipe:
        relative = (
            " (its local data paths are relative to a data root: yours)" if recipe["paths"]["relative_to"] else ""
        )
        lines += ["", f"Rerun the recipe{relative}:", "", "```bash", _rerun_command(recipe, model_ref), "```"]
    return "\n".join(lines) + "\n"


def _distillation_line(distilled: dict) -> str:
    """The card's line on a distilled run: the teacher (linked where it is on the Hub), its own base, the mix."""
    teacher = distilled["teacher"]
    named = f"[{teacher}](https://huggingface.co/{teacher})" if _is_hub_id(teacher) else _cell(teacher)
    base = distilled.get("teacher_base_model")
    itself = f", itself {'trained' if str(base).startswith('from scratch') else 'fine-tuned from'} {_cell(base)}"
    alpha, temperature = _number(distilled["alpha"]), _number(distilled["temperature"])
    return (
        f"- Distilled from the teacher {named} ({_cell(distilled.get('teacher_family', ''))}"
        f"{itself if base else ''}): loss (1 - {alpha}) x labels + {alpha} x T^2 x the teacher's softened "
        f"outputs, T = {temperature}"
    )


def _usage_section(model_ref: str) -> str:
    return f"""## How to use

With [hf_resnet](https://github.com/hf-resnet/hf_resnet):

```python
import hf_resnet

hf_resnet.classify("image.jpg", model="{model_ref}")
# [{{'label': ..., 'score': ...}}, ...]
```

With transformers alone:

```python
from transformers import pipeline

classifier = pipeline("image-classification", model="{model_ref}")
classifier("image.jpg")
```
"""


def _demo_section(space_id: str, model_ref: str) -> str:
    return (
        "## Try it\n\n"
        f"Upload a picture in the [demo Space](https://huggingface.co/spaces/{space_id}): it shows the top labels, "
        "their calibrated scores and a Grad-CAM map of where the model looked. The same page on your machine: "
        f"`hf-resnet demo --model {model_ref}`.\n"
    )


def _limitations_section(labels: list[str], metrics: dict[str, float], report: dict, task: Task, recipe: dict) -> str:
    lines = [
        "## Limitations",
        "",
        f"- It knows {len(labels)} classes only: every image gets one of them, even an image that shows none, "
        "so out-of-scope inputs can get confident wrong answers.",
        "- It was evaluated on held-out images from the same source as its training images; expect lower "
        "accuracy on photos from other cameras, lighting, places or populations.",
    ]
    samples = int(metrics.get("samples") or sum(report.get("support", [])) or 0)
    if 0 < samples < 500:
        lines.append(
            f"- The validation set has {samples} images, so each one moves accuracy by {100 / samples:.2g} "
            "points: treat small differences between models as noise."
        )
    lines += task.card_limitations(report)
    if describe_base_model(recipe)[1].startswith("fine-tuned"):
        lines.append("- It inherits the biases of the data its base model was pretrained on.")
    return "\n".join(lines) + "\n"


def write_model_card(output_dir: str | Path, repo_id: str | None = None, space_id: str | None = None) -> Path:
    """Write `README.md` (and its plots) in `output_dir` from the files a finished run saved there.

    A README.md this package did not write (no `CARD_MARKER`) is the user's and stays as it is: it is the card.

    Reads `config.json`, `recipe.json`, `eval_results.json`/`all_results.json`, `train_results.json`,
    `eval_per_class.json`, `trainer_state.json` and `deployment.json` (the latest `hf-resnet deploy-report`, shown
    as the Deployment section); any of them may be missing. `repo_id` (set by
    `hf_resnet.push`) names the model in the usage examples and points the Hub widget at the kept
    example images; without it they use the folder. `space_id` links the card to a demo Space.
    """
    output_dir = Path(output_dir)
    config = _read_json(output_dir / "config.json")
    recipe = _read_json(output_dir / "recipe.json")
    metrics = _eval_metrics(output_dir)
    report = _read_json(output_dir / "eval_per_class.json")
    history = _read_json(output_dir / "trainer_state.json").get("log_history", [])
    labels = config_labels(config) or list(report.get("labels", []))
    model_name = repo_id.split("/")[-1] if repo_id else output_dir.resolve().name

    task = task_for(config)
    if task.has_per_class(report):
        task.plot_per_class(report, output_dir / task.per_class_plot)
    has_curves = plot_training_curves(history, output_dir / TRAINING_CURVES_PNG) is not None

    _, base = describe_base_model(recipe)
    _, dataset = _dataset(recipe)
    shown = ", ".join(_cell(label) for label in labels[:20]) + (
        f" and {len(labels) - 20} more" if len(labels) > 20 else ""
    )
    family = known_family(config)
    summary = (
        f"A {family.describe(config) if family else 'ResNet'} image classifier {base} on {dataset} with hf_resnet."
    )
    if labels:
        summary += f" It sorts images into {len(labels)} classes: {shown}."
    if recipe.get("status", "finished") != "finished":
        summary = f"> **Unfinished run**: {recipe['status'].removeprefix('unfinished: ')}.\n\n{summary}"
    if "accuracy" in metrics:
        summary += f"\n\nIt reaches **{metrics['accuracy']:.1%} accuracy**"
        summary += f" (macro F1 {metrics['f1_macro']:.3f})" if "f1_macro" in metrics else ""
        summary += f" on {int(metrics['samples'])} validation images." if "samples" in metrics else " on validation."
    body = "\n".join(
        part
        for part in [
            f"# {model_name}",
            "",
            summary,
            "",
            _results_section(metrics, report, task, has_curves),
            _recipe_section(recipe, _read_json(output_dir / "train_results.json"), repo_id or str(output_dir)),
            _usage_section(repo_id or str(output_dir)),
            _demo_section(space_id, repo_id or str(output_dir)) if space_id else None,
            deployment_section(_read_json(output_dir / "deployment.json")),
            _limitations_section(labels, metrics, report, task, recipe),
        ]
        if part is not None
    )
    path = output_dir / "README.md"
    if path.is_file() and not written_by_package(path):
        logger.warning("%s was not written by hf_resnet (no card marker): keeping it as the model card", path)
        return path
    tags = family.card_tags if family else ()
    data = _metadata(model_name, recipe, metrics, path, _widget(output_dir, repo_id, labels), tags)
    ModelCard(f"---\n{data.to_yaml()}\n---\n{CARD_MARKER}\n\n{body}").save(path)
    return path
