"""Grad-CAM: high where the object a trained model looks for was planted; overlays and CLI work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image
from transformers import ConvNextImageProcessor, ResNetForImageClassification

from hf_resnet.cli import main as cli
from hf_resnet.inference.gradcam import Explanation, explain, grad_cam

SIZE = 128  # the last stage of a ResNet is 1/32 of the input: a 4x4 map, enough to localise
OBJECT = 24
YELLOW = (230, 200, 40)


def _scene(rng: np.random.Generator, corner: tuple[int, int] | None) -> np.ndarray:
    array = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
    if corner is not None:
        row, col = corner
        array[row : row + OBJECT, col : col + OBJECT] = YELLOW
    return array


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny ResNet trained (about a second) to tell 'square' (a yellow square anywhere) from 'empty'."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: thread wake-ups would cost more than the work
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = {0: "empty", 1: "square"}
    model = ResNetForImageClassification(
        tiny_config(num_labels=2, id2label=labels, label2id={"empty": 0, "square": 1})
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        targets = rng.integers(0, 2, size=32)
        scenes = [_scene(rng, tuple(rng.integers(0, SIZE - OBJECT, size=2)) if t else None) for t in targets]
        pixels = torch.from_numpy(np.stack(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        loss = model(pixel_values=pixels, labels=torch.from_numpy(targets)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("detector")
    model.save_pretrained(folder)
    # crop_pct=1 and images already at SIZE: the processor's resize and crop leave pixels where they are.
    ConvNextImageProcessor(size={"shortest_edge": SIZE}, crop_pct=1.0).save_pretrained(folder)
    yield folder


@pytest.mark.parametrize("corner", [(8, 8), (96, 16), (52, 92), (100, 100)])
def test_heat_map_is_high_where_the_object_was_planted(detector: Path, corner: tuple[int, int]):
    scene = _scene(np.random.default_rng(42), corner)
    explanation = explain(scene, model=detector)
    assert explanation.label == "square" and explanation.score > 0.9
    heatmap = explanation.heatmap
    assert heatmap.shape == (SIZE, SIZE) and heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    inside = np.zeros_like(heatmap, dtype=bool)
    row, col = corner
    inside[row : row + OBJECT, col : col + OBJECT] = True
    assert heatmap[inside].mean() > 2 * heatmap[~inside].mean()
    peak_row, peak_col = np.unravel_index(heatmap.argmax(), heatmap.shape)
    margin = SIZE // 8  # half a cell of the 4x4 map
    assert row - margin <= peak_row < row + OBJECT + margin and col - margin <= peak_col < col + OBJECT + margin


def test_target_can_be_given_by_label_or_index(detector: Path):
    scene = _scene(np.random.default_rng(1), (40, 40))
    by_label = explain(scene, model=detector, target="empty")
    by_index = explain(scene, model=detector, target=0)
    assert by_label.target == by_index.target == 0 and by_label.label == "empty"
    np.testing.assert_allclose(by_label.heatmap, by_index.heatmap)
    assert by_label.score == pytest.approx(1.0 - explain(scene, model=detector).score, abs=1e-5)
    with pytest.raises(ValueError, match="unknown label 'cat'"):
        explain(scene, model=detector, target="cat")
    with pytest.raises(ValueError, match="target 5 is not a class index"):
        explain(scene, model=detector, target=5)


def test_grad_cam_works_with_frozen_weights():
    torch.manual_seed(0)
    model = ResNetForImageClassification(tiny_config()).eval().requires_grad_(False)
    heatmap, target = grad_cam(model, torch.randn(1, 3, 64, 64))
    assert heatmap.shape == (64, 64) and 0 <= target < 3
    assert float(heatmap.max()) == pytest.approx(1.0)


def test_overlay_shows_the_model_view_and_is_saved(detector: Path, tmp_path: Path):
    scene = _scene(np.random.default_rng(2), (10, 60))
    explanation = explain(scene, model=detector, out=tmp_path / "cams" / "cam.png")
    # The model's view is the (here unchanged) input, recovered from the normalised tensor.
    np.testing.assert_allclose(np.asarray(explanation.image, dtype=int), scene.astype(int), atol=1)
    saved = Image.open(tmp_path / "cams" / "cam.png")
    assert saved.size == (SIZE, SIZE) and saved.mode == "RGB"
    assert np.array_equal(np.asarray(saved), np.asarray(explanation.overlay()))
    cold = Explanation(np.zeros((4, 4), np.float32), Image.new("RGB", (4, 4), (200, 200, 200)), 0, "x", 1.0)
    hot = Explanation(np.ones((4, 4), np.float32), cold.image, 0, "x", 1.0)
    # jet: cold is blue, hot is red
    assert np.asarray(cold.overlay())[0, 0, 2] > np.asarray(cold.overlay())[0, 0, 0]
    assert np.asarray(hot.overlay())[0, 0, 0] > np.asarray(hot.overlay())[0, 0, 2]


def test_cli_writes_the_overlay(detector: Path, tmp_path: Path, capsys):
    path = tmp_path / "scene.png"
    Image.fromarray(_scene(np.random.default_rng(3), (70, 20))).save(path)
    assert cli(["explain", str(path), "--model", str(detector), "--out", str(tmp_path / "cam.png")]) == 0
    label, score, out = capsys.readouterr().out.split()
    assert label == "square" and float(score) > 0.9 and Path(out).is_file()
    assert cli(["explain", str(path), "--model", str(detector), "--target", "0", "--out", out]) == 0
    assert capsys.readouterr().out.split()[0] == "empty"
    assert cli(["explain", str(path), "--model", str(detector), "--target", "cat", "--out", out]) == 2
    assert "hf-resnet explain: unknown label 'cat'" in capsys.readouterr().err
