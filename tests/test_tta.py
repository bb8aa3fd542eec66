"""Test-time augmentation: answers averaged over an image and its mirror image, in classify and evaluate."""

import json

import numpy as np
import pytest
import torch
from conftest import make_image_folder
from PIL import Image, ImageOps

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.inference.classifier import load_classifier
from hf_resnet.tasks.calibration import checked_temperature, expected_calibration_error


@pytest.fixture
def asymmetric_image(tmp_path):
    """A picture that is not its own mirror image, so the two passes differ."""
    pixels = torch.zeros(40, 40, 3, dtype=torch.uint8)
    pixels[5:35, 2:14] = 220
    pixels[10:20, 20:38, 1] = 150
    path = tmp_path / "asymmetric.png"
    Image.fromarray(pixels.numpy()).save(path)
    return path


def test_tta_scores_are_those_of_the_mean_of_the_image_and_mirror_logits(tiny_checkpoint, asymmetric_image):
    classifier = load_classifier(tiny_checkpoint, device="cpu", precision="fp32")
    pixels = classifier.preprocess([Image.open(asymmetric_image).convert("RGB")])
    plain, mirrored = classifier.forward(pixels)[0], classifier.forward(pixels.flip(-1))[0]
    assert not torch.allclose(plain, mirrored)
    expected = torch.softmax((plain + mirrored) / 2, dim=-1)
    answer = hf_resnet.classify(str(asymmetric_image), model=tiny_checkpoint, top_k=None, tta=True, precision="fp32")
    by_label = {item["label"]: item["score"] for item in answer}
    for index, score in enumerate(expected.tolist()):
        assert by_label[classifier.config.id2label[index]] == pytest.approx(score, abs=1e-6)
    without = hf_resnet.classify(str(asymmetric_image), model=tiny_checkpoint, top_k=None, precision="fp32")
    assert [item["score"] for item in without] != [item["score"] for item in answer]


def test_with_tta_an_image_and_its_mirror_get_the_same_answer(tiny_checkpoint, asymmetric_image, tmp_path):
    mirror = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(asymmetric_image)).save(mirror)
    first, second = (
        hf_resnet.classify(str(path), model=tiny_checkpoint, top_k=None, tta=True, precision="fp32")
        for path in (asymmetric_image, mirror)
    )
    assert [item["label"] for item in first] == [item["label"] for item in second]
    assert [item["score"] for item in first] == pytest.approx([item["score"] for item in second], abs=1e-5)


def test_evaluate_with_tta_scores_the_flip_averaged_logits(tiny_checkpoint, tmp_path):
    folder = make_image_folder(tmp_path / "test", per_class=3, classes=("class_0", "class_1", "class_2"))
    plain = hf_resnet.evaluate(str(tiny_checkpoint), test_dir=str(folder), output_dir=str(tmp_path / "plain"))
    tta = hf_resnet.evaluate(str(tiny_checkpoint), test_dir=str(folder), output_dir=str(tmp_path / "tta"), tta=True)
    assert plain.metrics["test_loss"] != tta.metrics["test_loss"]
    saved = json.loads((tmp_path / "tta" / "test_results.json").read_text())
    assert saved["test_loss"] == pytest.approx(tta.metrics["test_loss"])


def _edge_shift(pixels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The image moved by (dy, dx), edges repeated: the crop of an edge-padded copy, written out independently."""
    height, width = pixels.shape[-2:]
    padded = np.pad(pixels, [(0, 0)] * (pixels.ndim - 2) + [(abs(dy), abs(dy)), (abs(dx), abs(dx))], mode="edge")
    return padded[..., abs(dy) - dy : abs(dy) - dy + height, abs(dx) - dx : abs(dx) - dx + width]


def test_crops_average_the_image_and_four_copies_moved_a_sixteenth_toward_each_corner(
    tiny_checkpoint, asymmetric_image, capsys
):
    classifier = load_classifier(tiny_checkpoint, device="cpu", precision="fp32")
    pixels = classifier.preprocess([Image.open(asymmetric_image).convert("RGB")])
    step = round(pixels.shape[-1] / 16)
    shifted = [(0, 0), (step, step), (step, -step), (-step, step), (-step, -step)]
    logits = [classifier.forward(torch.from_numpy(_edge_shift(pixels.numpy(), dy, dx).copy())) for dy, dx in shifted]
    expected = torch.softmax(torch.stack(logits).mean(dim=0)[0], dim=-1)
    answer = hf_resnet.classify(
        str(asymmetric_image), model=tiny_checkpoint, top_k=None, tta="crops", precision="fp32"
    )
    by_label = {item["label"]: item["score"] for item in answer}
    for index, score in enumerate(expected.tolist()):
        assert by_label[classifier.config.id2label[index]] == pytest.approx(score, abs=1e-6)
    command = ["classify", str(asymmetric_image), "--model", str(tiny_checkpoint), "--json", "--precision", "fp32"]
    assert cli([*command, "--top-k", "3", "--tta", "crops"]) == 0
    printed = json.loads(capsys.readouterr().out)[0]["labels"]
    assert [item["score"] for item in printed] == pytest.approx([item["score"] for item in answer], abs=1e-6)
    with pytest.raises(SystemExit):
        cli([*command, "--tta", "sideways"])
    assert "--tta: invalid choice: 'sideways'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tta 'sideways': choose one of none, flip, crops, flip\\+crops"):
        hf_resnet.classify(str(asymmetric_image), model=tiny_checkpoint, tta="sideways")


def test_a_model_trained_with_tta_is_calibrated_on_and_scored_with_the_averaged_logits(
    tiny_checkpoint, image_folders, tmp_path
):
    train, val = image_folders
    run = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "run"),
        num_train_epochs=1,
        tta="flip",
        per_device_train_batch_size=8,
        report_to="none",
        disable_tqdm=True,
    ).output_dir
    config = json.loads((run / "config.json").read_text())
    assert config["tta"] == "flip"
    # The temperature is the one fitted on the flip-averaged validation logits ...
    classifier = load_classifier(run, device="cpu", precision="fp32")
    images = sorted(val.rglob("*.png"))
    pixels = classifier.preprocess([Image.open(path).convert("RGB") for path in images])
    labels = torch.tensor([classifier.config.label2id[path.parent.name] for path in images])
    averaged = (classifier.forward(pixels) + classifier.forward(pixels.flip(-1))) / 2
    assert config["calibration_temperature"] == checked_temperature(averaged, labels)["temperature"]
    results = json.loads((run / "eval_results.json").read_text())
    assert results["eval_ece"] == pytest.approx(expected_calibration_error(averaged, labels), abs=1e-4)
    # ... and evaluate scores that way by default, reproducing the run's own validation figures.
    results = json.loads((run / "eval_results.json").read_text())
    again = hf_resnet.evaluate(str(run), test_dir=str(val), output_dir=str(tmp_path / "default"))
    assert again.metrics["test_loss"] == pytest.approx(results["eval_loss"], rel=1e-5)
    single = hf_resnet.evaluate(str(run), test_dir=str(val), output_dir=str(tmp_path / "single"), tta="none")
    assert single.metrics["test_loss"] != pytest.approx(results["eval_loss"], rel=1e-5)
