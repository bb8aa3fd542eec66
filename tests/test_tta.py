"""Test-time augmentation: answers averaged over an image and its mirror image, in classify and evaluate."""

import json

import pytest
import torch
from conftest import make_image_folder
from PIL import Image, ImageOps

import hf_resnet
from hf_resnet.inference.classifier import load_classifier


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
