"""Command lines of the transformers image-classification example run here with the example's meaning.

The invocations are those of `examples/pytorch/image-classification/README.md` (transformers 5), flag for
flag, with `recipes/finetune.py` as the script. Each adds `--model_name_or_path` with a tiny local checkpoint:
the example's default model is a ViT on the Hub, which these tests cannot reach and hf_resnet does not train.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import ROOT, make_image_folder, save_tiny_checkpoint, shape_image
from hub_server import HubServer
from test_hub import TOKEN, subprocess_env

from hf_resnet.config.parsing import parse_args
from hf_resnet.training.recipe import main

FINETUNE = ROOT / "recipes" / "finetune.py"

# "Using datasets from Hub" (the beans dataset, pushed to the Hub as vit-base-beans).
README_HUB = """
    --dataset_name beans \\
    --output_dir ./beans_outputs/ \\
    --remove_unused_columns False \\
    --label_column_name labels \\
    --do_train \\
    --do_eval \\
    --push_to_hub \\
    --push_to_hub_model_id vit-base-beans \\
    --learning_rate 2e-5 \\
    --num_train_epochs 5 \\
    --per_device_train_batch_size 8 \\
    --per_device_eval_batch_size 8 \\
    --logging_strategy steps \\
    --logging_steps 10 \\
    --eval_strategy epoch \\
    --save_strategy epoch \\
    --load_best_model_at_end True \\
    --save_total_limit 3 \\
    --seed 1337
"""
# "Using your own data: provide them as folders".
README_FOLDERS = """
    --train_dir <path-to-train-root> \\
    --output_dir ./outputs/ \\
    --remove_unused_columns False \\
    --do_train \\
    --do_eval
"""
BEANS_CLASSES = ("angular_leaf_spot", "bean_rust", "healthy")


def readme_flags(block: str, **values: str) -> list[str]:
    for placeholder, value in values.items():
        block = block.replace(f"<{placeholder}>", value)
    return shlex.split(block.replace("\\\n", " "))


def write_local_beans(folder: Path) -> None:
    """A local dataset laid out like the Hub's beans: parquet splits with `image` and a `labels` column.

    A `label` column of other classes sits beside it, so only `--label_column_name labels` picks the right one.
    """
    rng = np.random.default_rng(0)
    features = datasets.Features(
        image=datasets.Image(),
        labels=datasets.ClassLabel(names=list(BEANS_CLASSES)),
        label=datasets.ClassLabel(names=["decoy_a", "decoy_b"]),
    )
    for split, count in (("train", 24), ("validation", 9)):
        classes = [i % 3 for i in range(count)]
        rows = {"image": [shape_image(c, rng) for c in classes], "labels": classes, "label": [0] * count}
        path = folder / "data" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))


def run_finetune(flags: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(FINETUNE), *flags]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_hub_command_trains_on_the_labels_column_and_pushes_under_its_model_id(tmp_path):
    write_local_beans(tmp_path / "beans")  # `--dataset_name beans` finds the local folder first
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(hub, tmp_path / "hf_home", token=TOKEN) | {"HF_DATASETS_OFFLINE": "1"}
        done = run_finetune([*readme_flags(README_HUB), "--model_name_or_path", str(checkpoint)], tmp_path, env)
        assert done.returncode == 0, done.stderr[-3000:]
        pushed = hub.files("user/vit-base-beans")
    output = tmp_path / "beans_outputs"
    config = json.loads((output / "config.json").read_text())
    assert list(config["id2label"].values()) == list(BEANS_CLASSES)
    assert "model.safetensors" in pushed and "config.json" in pushed
    results = json.loads((output / "eval_results.json").read_text())
    assert results["eval_samples"] == 9
    state = json.loads((output / "trainer_state.json").read_text())
    assert [entry["epoch"] for entry in state["log_history"] if "eval_loss" in entry] == [1, 2, 3, 4, 5]
    assert state["logging_steps"] == 10 and state["best_model_checkpoint"] is not None
    assert len(list(output.glob("checkpoint-*"))) <= 3
    notes = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if "no effect" in line]
    assert len(notes) == 1
    for flag in ("--remove_unused_columns", "--do_train", "--do_eval"):
        assert flag in notes[0]


def test_the_readme_folder_command_carves_its_validation_split_from_train(tmp_path):
    train = make_image_folder(tmp_path / "photos", per_class=20)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    flags = readme_flags(README_FOLDERS, **{"path-to-train-root": str(train)})
    done = run_finetune([*flags, "--model_name_or_path", str(checkpoint)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "outputs" / "eval_results.json").read_text())
    assert results["eval_samples"] == 9  # the example's --train_val_split default: 15% of 60 images


def test_renamed_flags_set_the_same_fields_as_their_hf_resnet_names(tmp_path):
    common = ["--train_dir", str(tmp_path), "--arch", "resnet-18", "--output_dir", str(tmp_path / "out")]
    example = [
        *("--label_column_name", "labels", "--image_column_name", "img", "--train_val_split", "0.1"),
        *("--dataset_config_name", "full", "--model_revision", "v2", "--evaluation_strategy", "steps"),
        *("--push_to_hub_model_id", "me/model", "--image_processor_name", "my/processor"),
    ]
    ours = [
        *("--label_column", "labels", "--image_column", "img", "--validation_split", "0.1"),
        *("--dataset_config", "full", "--revision", "v2", "--eval_strategy", "steps"),
        *("--hub_model_id", "me/model", "--image_processor_name", "my/processor"),
    ]
    assert parse_args(common + example) == parse_args(common + ours)


def test_the_examples_json_argument_file_runs_with_its_own_key_names(tmp_path):
    arguments = {"train_dir": str(tmp_path), "arch": "resnet-18", "output_dir": str(tmp_path / "out")}
    arguments |= {"label_column_name": "labels", "train_val_split": 0.2, "do_train": True}
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    model_args, data_args, training_args = parse_args([str(tmp_path / "args.json")])
    assert (data_args.label_column, data_args.validation_split, training_args.do_train) == ("labels", 0.2, True)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--config_name", "google/vit-base-patch16-224"], "--config_name google/vit-base-patch16-224: the layout is"),
        (["--model_type", "vit"], "--model_type vit: hf_resnet fine-tunes ResNets only"),
    ],
)
def test_example_flags_that_cannot_apply_are_refused_in_one_line(tmp_path, capsys, flags, expected):
    train = make_image_folder(tmp_path / "photos", per_class=2)
    code = main(["--train_dir", str(train), "--arch", "resnet-18", "--output_dir", str(tmp_path / "out"), *flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and expected in error[0]
    assert not (tmp_path / "out").exists()


def test_a_recipe_records_no_flag_kept_only_for_the_example(tmp_path):
    from hf_resnet.config.recipe_file import portable_arguments

    model_args, data_args, training_args = parse_args(
        ["--train_dir", str(tmp_path), "--arch", "resnet-18", "--output_dir", str(tmp_path / "o")]
        + ["--ignore_mismatched_sizes", "True", "--trust_remote_code", "True", "--model_type", "resnet"]
    )
    recorded = portable_arguments(model_args, data_args, training_args)["model"]
    assert not {"ignore_mismatched_sizes", "trust_remote_code", "model_type", "config_name"} & set(recorded)
