"""The recipe as a user runs it: `accelerate launch recipes/finetune.py ...` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import sklearn
import torch
from conftest import OUTPUT_FILES, ROOT, accelerate_launch, assert_quiet, save_tiny_checkpoint
from PIL import Image
from safetensors.torch import load_file

import hf_resnet
from hf_resnet.config.parsing import parse_args
from hf_resnet.families.resnet import FAMILY as RESNET

#: Real photographs shipped inside installed wheels: the only real photos an offline machine has.
PHOTOS = {
    "china": Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
    "flower": Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
    "hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
}


def photo_folders(root: Path, per_class: int = 10, seed: int = 0) -> tuple[Path, Path]:
    """Random crops of three real photos, one class each, saved in the modes cameras and editors produce."""
    rng = np.random.default_rng(seed)
    odd = [
        lambda im, p: im.convert("CMYK").save(p.with_suffix(".jpg")),
        lambda im, p: im.convert("P", palette=Image.ADAPTIVE).save(p.with_suffix(".png")),
        lambda im, p: im.convert("LA").save(p.with_suffix(".png")),
        lambda im, p: Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257).save(p.with_suffix(".png")),
        lambda im, p: _exif_rotated(im, p.with_suffix(".jpg")),
    ]
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for name, path in PHOTOS.items():
            photo = Image.open(path).convert("RGB")
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                side = int(rng.integers(min(photo.size) // 3, min(photo.size) // 2))
                x, y = (int(rng.integers(0, photo.size[k] - side)) for k in (0, 1))
                crop = photo.crop((x, y, x + side, y + side)).resize((48, 48))
                if i < len(odd):
                    odd[i](crop, folder / f"{name}_{i}")
                else:
                    crop.save(folder / f"{name}_{i}.jpg", quality=90)
    return root / "train", root / "val"


def _exif_rotated(image: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; viewers turn it back
    image.transpose(Image.Transpose.ROTATE_270).save(path, exif=exif)


def launch(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = accelerate_launch(ROOT / "recipes" / "finetune.py", args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_recipe_on_real_photos_with_odd_modes(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt", num_labels=5)
    train, val = photo_folders(tmp_path / "photos")
    out = tmp_path / "out"

    result = launch(
        [
            "--model_name_or_path",
            str(checkpoint),
            "--train_dir",
            str(train),
            "--validation_dir",
            str(val),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--eval_steps",
            "0.5",
        ],
        cwd=tmp_path,
    )

    assert_quiet(result, str(out))  # at most 15 lines besides progress bars: plan, evaluations, result
    assert "eval_recall/china" in (out / "trainer_state.json").read_text()  # per-class figures: in the files
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "china", "1": "flower", "2": "hopper"}
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert evaluation["eval_samples"] == 15
    before, after = load_file(str(checkpoint / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name, tensor in after.items():
        part = RESNET.part_of(name)
        if part in ("embedder", "stage1"):
            assert torch.equal(tensor, before[name]), name
    assert any(not torch.equal(t, before[n]) for n, t in after.items() if RESNET.part_of(n) == "stage4")
    answer = hf_resnet.classify(next((val / "flower").glob("*.jpg")), model=str(out))
    assert {entry["label"] for entry in answer} == {"china", "flower", "hopper"}
    assert answer == sorted(answer, key=lambda entry: -entry["score"])


def test_bad_image_fails_before_training_and_names_the_file(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    train, _ = photo_folders(tmp_path / "photos", per_class=4)
    broken = train / "china" / "broken.jpg"
    broken.write_bytes((train / "china" / "china_0.jpg").read_bytes()[:300])
    command = [
        sys.executable,
        str(ROOT / "recipes" / "finetune.py"),
        "--model_name_or_path",
        str(checkpoint),
        "--train_dir",
        str(train),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "broken.jpg" in result.stderr and "--skip_bad_images" in result.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_embedded_default_runs_offline_with_no_arguments(tmp_path):
    """The Quick start's main job, exactly as a user runs it: no arguments at all."""
    result = launch([], cwd=tmp_path, env={"HF_RESNET_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"})
    assert "embedded default" in result.stderr + result.stdout
    accuracy = float(result.stdout.split("Held-out accuracy: ")[1].split()[0])
    assert accuracy >= 0.90
    out = tmp_path / "outputs" / "digits-resnet18"
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_an_embedded_run_whose_cache_setting_is_a_file_is_one_line_naming_it(tmp_path):
    a_file = tmp_path / "cache"
    a_file.write_text("not a folder")
    env = {**os.environ, "HF_RESNET_CACHE": str(a_file), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "hf_resnet", "train", "--num_train_epochs", "1", "--dry_run"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"hf-resnet train: error: HF_RESNET_CACHE {a_file}: {a_file} is a file, not a folder; the embedded digits "
        "are written there once: set HF_RESNET_CACHE to a folder you can write"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache"]


@pytest.mark.parametrize(
    "config", sorted((ROOT / "hf_resnet" / "config" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_configs_parse(config):
    model_args, data_args, training_args = parse_args([str(config)])
    assert model_args.model_name_or_path.startswith("microsoft/resnet-")
    assert data_args.dataset_name or data_args.train_dir
    assert training_args.output_dir.startswith("outputs/")


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--train_dir", "--variant", "--freeze", "--backbone_learning_rate", "--reuse_host_memory"):
        assert flag in shown
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--help-all"])
    assert stopped.value.code == 0 and "0.5% more accurate" in capsys.readouterr().out


def _recorded_recipe(tmp_path: Path) -> Path:
    """A recipe.json as a run writes it, for a run on folders under tmp_path/alice (nothing is trained)."""
    from hf_resnet.config.recipe_file import portable_arguments

    alice = tmp_path / "alice"
    for folder in ("train", "val"):
        (alice / folder).mkdir(parents=True)
    model_args, data_args, training_args = parse_args(
        ["--model_name_or_path", "microsoft/resnet-50", "--train_dir", str(alice / "train")]
        + ["--validation_dir", str(alice / "val"), "--output_dir", str(alice / "run"), "--unfreeze_at_epoch", "2"]
        + ["--backbone_learning_rate", "3e-5", "--hflip", "0", "--dataloader_num_workers", "7"]
    )
    recipe = portable_arguments(model_args, data_args, training_args)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_recipe_json_records_data_relative_to_a_root_and_no_machine_settings(tmp_path):
    recipe = json.loads(_recorded_recipe(tmp_path).read_text())
    assert str(tmp_path) not in json.dumps(recipe)
    assert (recipe["data"]["train_dir"], recipe["data"]["validation_dir"]) == ("train", "val")
    assert recipe["paths"] == {"relative_to": "data_root", "not_recorded": []}
    assert recipe["model"]["model_name_or_path"] == "microsoft/resnet-50"  # a Hub id is portable as it is
    assert recipe["training"]["unfreeze_at_epoch"] == 2 and recipe["training"]["eval_strategy"] == "epoch"
    assert not {"output_dir", "dataloader_num_workers", "bf16", "hub_token"} & set(recipe["training"])


def test_recipe_reruns_on_another_data_root_and_the_command_line_wins(tmp_path):
    path = _recorded_recipe(tmp_path)
    bob = tmp_path / "bob"
    model_args, data_args, training_args = parse_args(
        ["--recipe", str(path), "--data_root", str(bob), "--output_dir", str(bob / "run"), "--hflip", "0.5"]
    )
    assert (data_args.train_dir, data_args.validation_dir) == (str(bob / "train"), str(bob / "val"))
    assert model_args.model_name_or_path == "microsoft/resnet-50"
    assert (training_args.unfreeze_at_epoch, training_args.backbone_learning_rate) == (2, 3e-5)
    assert data_args.hflip == 0.5 and training_args.output_dir == str(bob / "run")
    assert training_args.dataloader_num_workers != 7  # a machine setting: not replayed


def test_missing_recipe_is_one_line_naming_it(tmp_path):
    with pytest.raises(
        ValueError, match=r"^--recipe nowhere/recipe\.json: no such file or folder, and no recipe\.json"
    ):
        parse_args(["--recipe", "nowhere/recipe.json", "--output_dir", str(tmp_path)])


def test_logging_steps_alone_logs_every_n_steps(tiny_checkpoint, image_folders, tmp_path):
    def strategy(*flags):
        training_args = parse_args(["--output_dir", str(tmp_path / "parsed"), *flags])[2]
        return str(getattr(training_args.logging_strategy, "value", training_args.logging_strategy))

    assert strategy() == "epoch"
    assert strategy("--logging_steps", "1") == "steps"
    assert strategy("--logging_strategy", "epoch", "--logging_steps", "1") == "epoch"  # an explicit choice stands

    train, val = image_folders
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        logging_steps=1,
        per_device_train_batch_size=8,
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
    )
    history = json.loads((result.output_dir / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3]
