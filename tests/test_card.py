"""The model card: metadata the Hub reads, a body people read, plots committed next to it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import yaml
from conftest import save_tiny_checkpoint
from PIL import Image
from transformers import TrainingArguments

from hf_resnet.hub.card import CONFUSION_MATRIX_PNG, TRAINING_CURVES_PNG, write_model_card

LABELS = ["class_0", "class_1", "class_2"]
EVAL_RESULTS = {
    "epoch": 2.0,
    "eval_accuracy": 0.8,
    "eval_f1_macro": 0.7833,
    "eval_top5_accuracy": 1.0,
    "eval_loss": 0.61,
    "eval_samples": 30,
    "eval_runtime": 0.5,
}
PER_CLASS = {
    "labels": LABELS,
    "confusion_matrix": [[10, 0, 0], [1, 8, 1], [0, 4, 6]],
    "precision": [0.909, 0.667, 0.857],
    "recall": [1.0, 0.8, 0.6],
    "f1": [0.952, 0.727, 0.706],
    "support": [10, 10, 10],
}


def make_run_folder(path: Path, hub_token: str | None = None, checkpoint: bool = True) -> Path:
    """A finished output folder as the training core leaves it (contract of hf_resnet.training.run)."""
    save_tiny_checkpoint(path)
    recipe = {
        "model": {"model_name_or_path": "microsoft/resnet-50", "arch": None, "variant": "v1.5", "freeze": None},
        "data": {"dataset_name": "beans", "dataset_config": None, "train_dir": None, "validation_dir": None},
        "dataset": "beans",
        "recipe": {
            "frozen": ["embedder", "stage1"],
            "learning_rates": {"head": 1e-3, "backbone": 1e-5},
            "augmentation": {"hflip": 0.5, "auto_augment": "trivial", "mixup_alpha": 0.2},
            "epochs": 2,
            "batch_size": 32,
            "optimizer": "OptimizerNames.ADAMW_TORCH",
        },
    }
    history = [
        {"epoch": 1.0, "step": 4, "loss": 1.1, "learning_rate": 9e-4},
        {"epoch": 1.0, "step": 4, "eval_loss": 0.9, "eval_accuracy": 0.6, "eval_f1_macro": 0.55},
        {"epoch": 2.0, "step": 8, "loss": 0.7, "learning_rate": 1e-4},
        {"epoch": 2.0, "step": 8, "eval_loss": 0.61, "eval_accuracy": 0.8, "eval_f1_macro": 0.7833},
        {"epoch": 2.0, "step": 8, "train_loss": 0.9, "train_runtime": 3.0},
    ]
    files = {
        "recipe.json": recipe,
        "eval_results.json": EVAL_RESULTS,
        "train_results.json": {"epoch": 2.0, "train_loss": 0.9, "train_samples": 120},
        "all_results.json": {**EVAL_RESULTS, "train_loss": 0.9},
        "eval_per_class.json": PER_CLASS,
        "trainer_state.json": {"global_step": 8, "log_history": history},
    }
    for name, content in files.items():
        (path / name).write_text(json.dumps(content, indent=2))
    args = TrainingArguments(output_dir=str(path), hub_token=hub_token, report_to="none")
    torch.save(args, path / "training_args.bin")
    if checkpoint:
        save_tiny_checkpoint(path / "checkpoint-8")
        torch.save(args, path / "checkpoint-8" / "training_args.bin")
        (path / "checkpoint-8" / "optimizer.pt").write_bytes(b"\0optimizer state" * 64)
    return path


def read_card(path: Path) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", path.read_text(), re.DOTALL)
    assert match, "the card must start with a YAML block"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_card_metadata_is_valid_yaml_with_model_index(tmp_path):
    card = write_model_card(make_run_folder(tmp_path / "run"), repo_id="me/resnet-beans")
    metadata, _ = read_card(card)
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "image-classification"
    assert metadata["base_model"] == "microsoft/resnet-50"
    assert metadata["datasets"] == ["beans"]
    assert {"image-classification", "resnet", "hf_resnet"} <= set(metadata["tags"])
    (entry,) = metadata["model-index"]
    assert entry["name"] == "resnet-beans"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"name": "beans", "type": "beans", "split": "validation"}
    metrics = {m["type"]: m["value"] for m in result["metrics"]}
    assert metrics == {"accuracy": 0.8, "f1": 0.7833, "top_5_accuracy": 1.0}


def test_card_body_has_metrics_per_class_table_recipe_usage_and_limitations(tmp_path):
    run = make_run_folder(tmp_path / "run")
    _, body = read_card(write_model_card(run, repo_id="me/resnet-beans"))
    assert "**80.0% accuracy** (macro F1 0.783) on 30 validation images" in body
    assert "| Top-5 accuracy | 1 |" in body and "| Loss | 0.61 |" in body
    assert "runtime" not in body  # Trainer bookkeeping is not a property of the model
    for label, p, r, f, n in zip(LABELS, *(PER_CLASS[k] for k in ("precision", "recall", "f1", "support"))):
        assert f"| {label} | {p:.3f} | {r:.3f} | {f:.3f} | {n} |" in body
    assert f"![Confusion matrix on the validation images]({CONFUSION_MATRIX_PNG})" in body
    assert f"]({TRAINING_CURVES_PNG})" in body
    assert "fine-tuned from [microsoft/resnet-50](https://huggingface.co/microsoft/resnet-50)" in body
    assert "- Frozen (weights and BatchNorm statistics): embedder, stage1" in body
    assert "| head | 0.001 |" in body and "| backbone | 1e-05 |" in body
    assert "| auto_augment | trivial |" in body and "- Epochs: 2" in body
    assert "- Optimizer: adamw_torch" in body
    assert 'hf_resnet.classify("image.jpg", model="me/resnet-beans")' in body
    assert 'pipeline("image-classification", model="me/resnet-beans")' in body
    assert "- Weakest class: class_2 (F1 0.71)." in body
    assert "- Most frequent confusion: class_2 taken for class_1 (4 of 10 images)." in body


def test_card_plots_are_images_and_rerendering_is_byte_identical(tmp_path):
    run = make_run_folder(tmp_path / "run")
    write_model_card(run, repo_id="me/x")
    first = {name: (run / name).read_bytes() for name in ("README.md", CONFUSION_MATRIX_PNG, TRAINING_CURVES_PNG)}
    for name in (CONFUSION_MATRIX_PNG, TRAINING_CURVES_PNG):
        with Image.open(run / name) as image:
            assert image.format == "PNG" and min(image.size) >= 200
    write_model_card(run, repo_id="me/x")
    # Identical bytes: a retried push finds the card and plots already on the Hub and skips them.
    assert {name: (run / name).read_bytes() for name in first} == first


def test_card_of_a_bare_checkpoint_still_renders(tmp_path):
    run = save_tiny_checkpoint(tmp_path / "bare")
    metadata, body = read_card(write_model_card(run))
    assert metadata["pipeline_tag"] == "image-classification" and "model-index" not in metadata
    assert "No evaluation results were saved" in body
    assert not (run / CONFUSION_MATRIX_PNG).exists() and CONFUSION_MATRIX_PNG not in body
    assert f'model="{run}"' in body  # without a repo id the examples load the folder


def test_card_hides_tokens_and_local_paths(tmp_path):
    run = make_run_folder(tmp_path / "run")
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["model"]["model_name_or_path"] = str(tmp_path / "home" / "alice" / "checkpoint")
    recipe["data"] = {"dataset_name": None, "train_dir": str(tmp_path / "home" / "alice" / "photos" / "train")}
    recipe["dataset"] = recipe["data"]["train_dir"]
    recipe["recipe"]["hub_token"] = "hf_do_not_publish"
    (run / "recipe.json").write_text(json.dumps(recipe))
    metadata, body = read_card(write_model_card(run))
    text = (run / "README.md").read_text()
    assert "hf_do_not_publish" not in text and "- hub_token: <redacted>" in body
    assert str(tmp_path) not in body.split("## How to use")[0]
    assert "local image folder photos/train" in body and "fine-tuned from a local checkpoint" in body
    assert "base_model" not in metadata and "datasets" not in metadata
    assert metadata["model-index"][0]["results"][0]["dataset"]["type"] == "imagefolder"


def test_validation_results_name_the_validation_data_and_the_card_has_a_license(tmp_path):
    base = save_tiny_checkpoint(tmp_path / "base")
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A base model\n")
    run = make_run_folder(tmp_path / "run")
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["model"]["model_name_or_path"] = str(base)
    train, val = tmp_path / "photos" / "train", tmp_path / "photos" / "val"
    recipe["data"] = {"dataset_name": None, "train_dir": str(train), "validation_dir": str(val)}
    recipe["dataset"] = str(train)
    (run / "recipe.json").write_text(json.dumps(recipe))
    metadata, _ = read_card(write_model_card(run))
    assert metadata["license"] == "apache-2.0"  # inherited from the base model's card
    assert metadata["model-index"][0]["results"][0]["dataset"]["name"] == "local image folder photos/val"

    recipe["data"] = {"dataset_name": None, "train_dir": str(train), "validation_dir": None, "validation_split": 0.15}
    recipe["model"]["model_name_or_path"] = None  # from scratch: no license to inherit
    (run / "recipe.json").write_text(json.dumps(recipe))
    metadata, _ = read_card(write_model_card(run))
    assert metadata["license"] == "other"
    dataset = metadata["model-index"][0]["results"][0]["dataset"]["name"]
    assert dataset == "local image folder photos/train (15% held out for validation)"
