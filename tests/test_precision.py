"""bf16 against fp32 on a real small task: real digit scans, a small ResNet trained from scratch, on any CPU.

bf16 autocast runs everywhere (emulated, and slower, on CPUs without native bf16), so this checks
the numerics wherever the suite runs; which precision is the default is decided by the hardware
(tests/test_launcher.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

import hf_resnet
from hf_resnet.data.embedded import digits_folders

#: Digits are 32 px; a small ResNet (tens of thousands of parameters) learns them in a few epochs.
DIGITS_CONFIG = dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    return digits_folders(tmp_path_factory.mktemp("digits"))


def _train(digits, out: Path, bf16: bool):
    train_dir, validation_dir = digits
    labels = sorted(p.name for p in train_dir.iterdir())
    config = tiny_config(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **DIGITS_CONFIG,
    )
    return hf_resnet.finetune(
        config=config,
        train_dir=str(train_dir),
        validation_dir=str(validation_dir),
        output_dir=str(out),
        image_size=32,
        hflip=0.0,
        crop_scale_min=0.5,
        num_train_epochs=4,
        per_device_train_batch_size=64,
        learning_rate=3e-3,
        bf16=bf16,
        fp16=False,
        save_strategy="no",
        eval_strategy="no",
        seed=0,
    )


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return {name: _train(digits, root / name, bf16=name == "bf16") for name in ("fp32", "bf16")}


def test_bf16_training_reaches_the_accuracy_of_fp32(runs):
    fp32, bf16 = runs["fp32"].metrics["eval_accuracy"], runs["bf16"].metrics["eval_accuracy"]
    assert fp32 >= 0.85, fp32
    assert abs(bf16 - fp32) <= 0.03, (fp32, bf16)
    recipe = (runs["bf16"].output_dir / "recipe.json").read_text()
    assert "bf16 autocast (--bf16/--fp16 as given)" in recipe


def test_bf16_inference_agrees_with_fp32_on_99_percent_of_images(runs, digits):
    images = sorted(digits[1].rglob("*.png"))
    model = runs["fp32"].output_dir
    fp32 = hf_resnet.classify(images, model=model, top_k=1, precision="fp32", batch_size=64)
    bf16 = hf_resnet.classify(images, model=model, top_k=1, precision="bf16", batch_size=64)
    agreement = sum(a[0]["label"] == b[0]["label"] for a, b in zip(fp32, bf16)) / len(images)
    assert len(images) == 360 and agreement >= 0.99, agreement
