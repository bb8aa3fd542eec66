import json

import pytest
import torch
from conftest import OUTPUT_FILES, make_image_folder, tiny_config
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer

import hf_resnet
from hf_resnet.config.arguments import ResNetTrainingArguments
from hf_resnet.data.images import open_image
from hf_resnet.families.resnet import FAMILY as RESNET
from hf_resnet.training.trainer import PRIVATE_TRAINER_OVERRIDES, ResNetTrainer

FAST = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, report_to="none", disable_tqdm=True)


def _state(path):
    return load_file(str(path / "model.safetensors"))


def _by_part(state, part):
    return {name: tensor for name, tensor in state.items() if RESNET.part_of(name) == part}


@pytest.fixture
def finetuned(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        backbone_learning_rate=1e-2,  # large enough that unfrozen stages visibly move in 18 steps
        **FAST,
    )
    return tiny_checkpoint, result


def test_frozen_parts_are_bit_identical_and_the_rest_moved(finetuned):
    checkpoint, result = finetuned
    before, after = _state(checkpoint), _state(result.output_dir)
    for part in ("embedder", "stage1"):  # weights and BatchNorm running statistics alike
        frozen_before, frozen_after = _by_part(before, part), _by_part(after, part)
        assert any("running_mean" in name for name in frozen_after)
        for name, tensor in frozen_after.items():
            assert torch.equal(tensor, frozen_before[name]), name
    stage4 = _by_part(after, "stage4")
    moved = [name for name, tensor in stage4.items() if not torch.equal(tensor, before[name])]
    assert any(name.endswith("convolution.weight") for name in moved)
    assert any(name.endswith("running_mean") for name in moved)


def test_output_folder_has_the_transformers_layout(finetuned):
    _, result = finetuned
    out = result.output_dir
    for name in (*OUTPUT_FILES, "recipe.json", "eval_per_class.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "hbar", "2": "vbar"}
    assert config["label2id"] == {"circle": 0, "hbar": 1, "vbar": 2}
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert evaluation["eval_samples"] == 24
    assert {"eval_accuracy", "eval_f1_macro", "eval_loss"} <= set(evaluation)
    assert "eval_top5_accuracy" not in evaluation  # 3 classes: top-5 is always 1
    # 24 validation images: too few to check a temperature on held-out folds, so T = 1 is kept and said.
    assert evaluation["eval_temperature"] == config["calibration_temperature"] == 1.0
    assert evaluation["eval_ece_calibrated"] == evaluation["eval_ece"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 18  # 72 images / 8 per step x 2 epochs
    per_class = json.loads((out / "eval_per_class.json").read_text())
    assert sum(map(sum, per_class["confusion_matrix"])) == 24
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["recipe"]["frozen"] == ["embedder", "stage1"]
    assert recipe["recipe"]["calibration"]["reason"].startswith("temperature 1 kept: 24 validation images")
    assert "- Calibration: temperature 1 kept: 24 validation images" in (out / "README.md").read_text()
    assert recipe["recipe"]["learning_rates"] == {"head": 1e-3, "backbone": 1e-2, "backbone_lr_decay": 1.0}
    # What the machine chose for the data path, and why (the start-up summary says the same).
    data_path = recipe["recipe"]["data_path"]
    assert data_path["image_cache"]["mode"] in ("disk", "memory") and "MB" in data_path["image_cache"]["why"]
    assert data_path["data_overlap"]["mode"] in ("none", "workers") and data_path["data_overlap"]["why"]
    # The first step (kernel building, worker start-up) apart from the steady rate; the Trainer's figure as it is.
    results = json.loads((out / "train_results.json").read_text())
    assert 0 < results["train_first_step_seconds"] < results["train_runtime"]
    assert results["train_samples_per_second"] == pytest.approx(18 * 8 / results["train_runtime"], rel=0.02)
    assert results["train_steady_samples_per_second"] > 0


def test_reloaded_model_gives_identical_logits(finetuned, image_folders):
    _, result = finetuned
    image = open_image(next((image_folders[1] / "hbar").iterdir()))
    processor = AutoImageProcessor.from_pretrained(result.output_dir)
    reloaded = AutoModelForImageClassification.from_pretrained(result.output_dir).eval()
    pixels = processor([image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels).logits, result.model(pixels).logits, rtol=0, atol=1e-6)


def test_learnable_task_reaches_high_accuracy(image_folders, tmp_path):
    train, val = image_folders
    result = hf_resnet.finetune(
        config=tiny_config(),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "scratch"),
        num_train_epochs=12,
        learning_rate=1e-2,
        crop_scale_min=0.6,
        seed=0,
        save_strategy="no",
        **FAST,
    )
    assert result.metrics["eval_accuracy"] >= 0.9


def test_gradual_unfreezing_thaws_the_deepest_frozen_part_first(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "thaw"),
        num_train_epochs=2,
        unfreeze_at_epoch=1,
        backbone_learning_rate=1e-2,
        save_strategy="no",
        **FAST,
    )
    before, after = _state(tiny_checkpoint), _state(result.output_dir)
    assert all(torch.equal(t, before[n]) for n, t in _by_part(after, "embedder").items())
    assert any(not torch.equal(t, before[n]) for n, t in _by_part(after, "stage1").items())


def test_augmentations_mixup_cutmix_and_label_smoothing_train(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "aug"),
        num_train_epochs=1,
        auto_augment="trivial",
        random_erasing=0.25,
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        label_smoothing_factor=0.1,
        save_strategy="no",
        **FAST,
    )
    assert torch.isfinite(torch.tensor(result.metrics["train_loss"]))
    assert 0 <= result.metrics["eval_accuracy"] <= 1


def test_trainer_optimizer_has_the_configured_learning_rates(tmp_path):
    from transformers import ResNetForImageClassification

    model = ResNetForImageClassification(tiny_config())
    args = ResNetTrainingArguments(output_dir=str(tmp_path), report_to="none", eval_strategy="no")
    trainer = ResNetTrainer(model=model, args=args, head_lr=3e-3, backbone_lr=2e-5, lr_decay=0.5)
    optimizer = trainer.create_optimizer()
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["head"] == 3e-3 and rates["stage4"] == 2e-5 and rates["stage1"] == pytest.approx(2e-5 / 8)


def test_the_private_trainer_methods_overridden_are_the_listed_ones_and_still_exist_in_transformers():
    ours = ResNetTrainer.__mro__[: ResNetTrainer.__mro__.index(Trainer)]
    overridden = {
        name
        for cls in ours
        for name in vars(cls)
        if name.startswith("_") and not name.startswith("__") and callable(getattr(Trainer, name, None))
    }
    assert overridden == set(PRIVATE_TRAINER_OVERRIDES)


def test_resume_from_last_checkpoint_continues_the_step_count(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    common = dict(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "resume"),
        **FAST,
    )
    hf_resnet.finetune(num_train_epochs=1, **common)
    assert (tmp_path / "resume" / "checkpoint-9").is_dir()
    result = hf_resnet.finetune(num_train_epochs=2, resume_from_checkpoint="last", **common)
    state = json.loads((result.output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 18
    assert [round(entry["epoch"]) for entry in state["log_history"] if "eval_accuracy" in entry] == [1, 2]


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['learnig_rate'\]"):
        hf_resnet.finetune(learnig_rate=1e-3)


def test_resume_without_checkpoint_is_a_clear_error(tiny_checkpoint, tmp_path):
    make_image_folder(tmp_path / "d", per_class=4)
    with pytest.raises(ValueError, match=r"no checkpoint-\* folder"):
        hf_resnet.finetune(
            model_name_or_path=str(tiny_checkpoint),
            train_dir=str(tmp_path / "d"),
            output_dir=str(tmp_path / "empty"),
            resume_from_checkpoint="last",
            **FAST,
        )
