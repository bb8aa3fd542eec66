"""`--resize`: how images are framed, saved in the processor so every loader frames them as training did."""

import json
import logging

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_processor
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from transformers import AutoImageProcessor, pipeline

import hf_resnet
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.sources import warn_if_cropped
from hf_resnet.data.transforms import Plan, build_train_transform, processor_geometry, reframe
from hf_resnet.tasks import task_for

SIZE = 32
COLOURS = {"red": (230, 30, 30), "green": (30, 220, 30), "blue": (40, 40, 230)}
FAST = dict(
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    report_to="none",
    disable_tqdm=True,
    num_train_epochs=1,
    image_size=SIZE,
)


def wide_image(colours: list[str], rng: np.random.Generator, height: int = SIZE, width: int = 3 * SIZE) -> Image.Image:
    """Noise with a coloured square per colour, at the left edge, then the right edge: what a centre crop cuts off."""
    array = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    side = height // 2
    for colour, left in zip(colours, (0, width - side)):
        top = int(rng.integers(0, height - side))
        array[top : top + side, left : left + side] = COLOURS[colour]
    return Image.fromarray(array)


def _single_label(count: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    labels = [i % len(names) for i in range(count)]
    images = [wide_image([names[label]], rng) for label in labels]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def _multi_label(count: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    sets = [[i % 3, (i + 1 + i // 3) % 3] for i in range(count)]
    images = [wide_image([names[i] for i in labels], rng) for labels in sets]
    features = datasets.Features(
        {"image": datasets.Image(), "labels": datasets.Sequence(datasets.ClassLabel(names=names))}
    )
    return datasets.Dataset.from_dict({"image": images, "labels": sets}, features=features)


def _train(tmp_path, dataset, **flags):
    splits = datasets.DatasetDict(train=dataset(48, 0), validation=dataset(12, 1))
    return hf_resnet.finetune(
        dataset=splits, config=tiny_config(), output_dir=str(tmp_path / "model"), **FAST, **flags
    )


@pytest.fixture(scope="module", params=["squash", "pad"])
def framed_model(request, tmp_path_factory):
    return request.param, _train(tmp_path_factory.mktemp(request.param), _single_label, resize=request.param)


def test_the_saved_processor_frames_the_whole_wide_image_as_the_policy_says(framed_model):
    policy, result = framed_model
    saved = json.loads((result.output_dir / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "ViTImageProcessor"  # a transformers class: no hf_resnet needed
    image = wide_image(["red", "blue"], np.random.default_rng(5))
    pixels = AutoImageProcessor.from_pretrained(result.output_dir)(image, return_tensors="pt")["pixel_values"][0]
    geometry = processor_geometry(AutoImageProcessor.from_pretrained(result.output_dir))
    shown = (SIZE, SIZE) if policy == "squash" else (SIZE // 3, SIZE)  # a 3:1 image fits in a third of the height
    whole = TF.resize(TF.pil_to_tensor(image), list(shown), interpolation=geometry.interpolation, antialias=True)
    mean, std = torch.tensor(geometry.mean).view(3, 1, 1), torch.tensor(geometry.std).view(3, 1, 1)
    expected = (whole / 255 - mean) / std
    assert pixels.shape == (3, SIZE, SIZE)
    assert torch.allclose(pixels[:, : shown[0], : shown[1]], expected, atol=0.05)
    if policy == "pad":
        assert pixels[:, shown[0] :].abs().max() == 0  # the letterbox is the mean colour: 0 after normalisation
    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert recipe["data"]["resize"] == policy


def test_the_pipeline_and_classify_give_the_same_top_k_on_wide_images(framed_model):
    _, result = framed_model
    rng = np.random.default_rng(9)
    images = [wide_image([list(COLOURS)[i % 3], list(COLOURS)[(i + 1) % 3]], rng) for i in range(20)]
    piped = pipeline("image-classification", model=str(result.output_dir), device="cpu")(images, top_k=3)
    answers = hf_resnet.classify(images, model=result.output_dir, top_k=3, precision="fp32")
    assert [[a["label"] for a in answer] for answer in answers] == [[p["label"] for p in pipe] for pipe in piped]


def test_the_onnx_export_keeps_the_frame(framed_model, tmp_path):
    from hf_resnet.inference.onnx_export import export

    _, result = framed_model
    report = export(
        result.output_dir,
        out=tmp_path / "onnx",
        sample_images=[wide_image(["red"], np.random.default_rng(4))] * 4,
        latency_repeats=1,
    )
    exported = AutoImageProcessor.from_pretrained(report.out_dir)
    saved = AutoImageProcessor.from_pretrained(result.output_dir)
    assert exported.to_dict() == saved.to_dict()
    image = wide_image(["green", "blue"], np.random.default_rng(6))
    onnx = hf_resnet.classify(image, model=report.out_dir, backend="onnx", top_k=3)
    torch_answer = hf_resnet.classify(image, model=result.output_dir, top_k=3, precision="fp32")
    assert [a["label"] for a in onnx] == [a["label"] for a in torch_answer]


def test_training_crops_follow_the_frame_evaluation_uses():
    image = wide_image(["red", "green"], np.random.default_rng(2))
    for policy in ("squash", "pad"):
        processor = reframe(tiny_processor(SIZE), policy)
        augment = build_train_transform(processor, DataArguments(crop_scale_min=1.0, hflip=0.0))
        # Boxes are shaped like the image, so the largest is (all but rounding of) the whole image...
        boxes = [augment.plan(image.height, image.width, seed=seed).box for seed in range(20)]
        assert all(height == image.height and width >= image.width - 1 for _, _, height, width in boxes)
        # ...and finishing the whole image gives what evaluation gives.
        whole = Plan(box=(0, 0, image.height, image.width), flip=False, erase=(0, 0, 0, 0), aug_seed=0)
        trained = augment.finish([TF.pil_to_tensor(image)], [whole])[0]
        evaluated = processor(image, return_tensors="pt")["pixel_values"][0]
        assert torch.allclose(trained, evaluated, atol=0.05), policy


def test_single_label_defaults_are_the_imagenet_recipe_and_the_checkpoints_own_frame(tiny_checkpoint):
    resolved = task_for(None).with_data_defaults(DataArguments())
    assert (resolved.resize, resolved.crop_scale_min, resolved.hflip) == (None, 0.08, 0.5)
    processor = AutoImageProcessor.from_pretrained(tiny_checkpoint)
    assert reframe(processor, resolved.resize) is processor
    assert processor_geometry(processor).fit == "crop"


def test_multi_label_defaults_keep_the_whole_image_without_flips(tmp_path):
    result = _train(tmp_path, _multi_label)
    saved = AutoImageProcessor.from_pretrained(result.output_dir)
    assert processor_geometry(saved).fit == "squash"
    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert (recipe["data"]["resize"], recipe["data"]["crop_scale_min"], recipe["data"]["hflip"]) == (
        "squash",
        1.0,
        0.0,
    )
    explicit = task_for("multi_label_classification").with_data_defaults(DataArguments(hflip=0.5, resize="crop"))
    assert (explicit.hflip, explicit.resize) == (0.5, "crop")  # what the user says wins


def test_a_crop_frame_on_wide_images_warns_with_the_share_evaluation_never_sees(caplog):
    wide = _single_label(9, 0)
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        share = warn_if_cropped(wide, processor_geometry(tiny_processor(SIZE)))
    # Measured: the processor's output of an image whose pixels say where they come from.
    height, width = 120, 360
    rows, columns = np.mgrid[0:height, 0:width]
    coded = np.stack([columns * 255 // (width - 1), rows * 255 // (height - 1), rows * 0], axis=-1).astype(np.uint8)
    processor = tiny_processor(SIZE)
    processor.do_rescale = processor.do_normalize = False
    seen = processor(Image.fromarray(coded), return_tensors="np")["pixel_values"][0]
    seen_width = (seen[0].max() - seen[0].min()) / 255 * (width - 1) + 1
    seen_height = (seen[1].max() - seen[1].min()) / 255 * (height - 1) + 1
    assert share == pytest.approx(1 - seen_width * seen_height / (width * height), abs=0.02)
    assert share == pytest.approx(1 - 0.875**2 / 3)  # the sides, 2/3, and the 12.5% crop_pct border
    assert f"never see {100 * share:.0f}% of the median image (96x32" in caplog.text
    assert "--resize squash" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_resnet"):
        assert warn_if_cropped(wide, processor_geometry(reframe(tiny_processor(SIZE), "squash"))) == 0.0
        square = datasets.Dataset.from_dict(
            {"image": [Image.new("RGB", (40, 36))] * 3}, features=datasets.Features({"image": datasets.Image()})
        )
        assert warn_if_cropped(square, processor_geometry(tiny_processor(SIZE))) < 0.34
    assert caplog.text == ""


def test_from_scratch_the_input_size_follows_the_data_and_the_summary_says_why(tmp_path, caplog):
    # 64 wide x 32 high scans: --resize squash fits the whole image, so its longer side (64) sets the size.
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "scans" / label).mkdir(parents=True)
        for i in range(6):
            array = rng.integers(0, 255, size=(32, 64, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / "scans" / label / f"{i}.png")
    with caplog.at_level(logging.INFO, logger="hf_resnet"):
        result = hf_resnet.finetune(
            arch="resnet-18",
            train_dir=str(tmp_path / "scans"),
            resize="squash",
            output_dir=str(tmp_path / "model"),
            max_steps=1,
            per_device_train_batch_size=4,
            report_to="none",
            disable_tqdm=True,
        )
    geometry = processor_geometry(AutoImageProcessor.from_pretrained(result.output_dir))
    assert (geometry.height, geometry.width, geometry.fit) == (64, 64, "squash")
    assert "images: 64x64 (squash), from the data: the median training image is 32x64 (height x width)" in caplog.text
    assert json.loads((result.output_dir / "recipe.json").read_text())["model"]["image_size"] == 64


def test_a_fine_tune_keeps_the_checkpoints_preprocessing_and_a_crop_frames_the_shorter_side():
    from hf_resnet.data.transforms import size_from_data
    from hf_resnet.model.arguments import ModelArguments
    from hf_resnet.training.run import _image_size

    checkpoint = ModelArguments(model_name_or_path="some/checkpoint")
    assert _image_size(checkpoint, DataArguments(), None, streaming=False) == (checkpoint, "")
    given = ModelArguments(arch="resnet-18", image_size=96)
    assert _image_size(given, DataArguments(), None, streaming=False) == (given, "")
    assert size_from_data([(32, 64)] * 5, "crop")[0] == 32  # a centre crop sees a square of the shorter side
    assert size_from_data([(300, 200), (20, 20), (1000, 900)], "pad")[0] == 224  # held at the ImageNet size
    assert size_from_data([(10, 12)], "squash")[0] == 32  # and at least 32
    assert size_from_data([(80, 80)], "crop")[0] == 96  # 80 rounds to the nearer multiple of 32, 96
