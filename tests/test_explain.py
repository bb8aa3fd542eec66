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
from hf_resnet.inference.gradcam import Explanation, explain, explain_labels, grad_cam

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


# ----------------------------------------------------------------------------- multi-label models

CYAN = (40, 200, 230)
COLOURS = {"yellow": YELLOW, "cyan": CYAN}


def _two_colour_scene(rng: np.random.Generator, corners: dict[str, tuple[int, int]]) -> np.ndarray:
    array = _scene(rng, None)
    for name, (row, col) in corners.items():
        array[row : row + OBJECT, col : col + OBJECT] = COLOURS[name]
    return array


def _apart(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two object corners that do not overlap."""
    while True:
        a, b = (tuple(int(v) for v in rng.integers(0, SIZE - OBJECT, size=2)) for _ in range(2))
        if abs(a[0] - b[0]) >= OBJECT or abs(a[1] - b[1]) >= OBJECT:
            return a, b


@pytest.fixture(scope="module")
def colour_detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny multi-label ResNet trained (a few seconds) to say which of a yellow and a cyan square a scene shows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    config = tiny_config(
        num_labels=2,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        problem_type="multi_label_classification",
    )
    model = ResNetForImageClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        present = rng.integers(0, 2, size=(32, 2))
        scenes = []
        for row in present:
            a, b = _apart(rng)
            shown = [name for name, flag in zip(names, row) if flag]
            scenes.append(_two_colour_scene(rng, dict(zip(shown, (a, b)))))
        pixels = torch.from_numpy(np.stack(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        loss = model(pixel_values=pixels, labels=torch.from_numpy(present).float()).loss  # BCE: problem_type
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("colours")
    model.save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": SIZE}, crop_pct=1.0).save_pretrained(folder)
    yield folder


def _follows(heatmap: np.ndarray, corner: tuple[int, int], other: tuple[int, int]) -> None:
    """The map is high on the object at `corner`, higher there than on the one at `other`, and peaks nearer it."""

    def on(where):
        mask = np.zeros_like(heatmap, dtype=bool)
        mask[where[0] : where[0] + OBJECT, where[1] : where[1] + OBJECT] = True
        return mask

    inside = on(corner)
    assert heatmap[inside].mean() > 2 * heatmap[~inside].mean()
    assert heatmap[inside].mean() > 2 * heatmap[on(other)].mean()
    # The 4x4 map's peak cell, upsampled, is flat near the border: compare distances, not a tight box.
    peak = np.array(np.unravel_index(heatmap.argmax(), heatmap.shape))
    mine, theirs = (np.linalg.norm(peak - (np.array(where) + OBJECT / 2)) for where in (corner, other))
    assert mine < theirs


@pytest.mark.parametrize("yellow, cyan", [((8, 8), (96, 96)), ((90, 20), (20, 90)), ((52, 100), (52, 10))])
def test_each_label_of_a_multi_label_answer_gets_a_heat_map_on_its_own_object(colour_detector, yellow, cyan):
    scene = _two_colour_scene(np.random.default_rng(42), {"yellow": yellow, "cyan": cyan})
    explanations = explain_labels(scene, model=colour_detector)
    assert sorted(e.label for e in explanations) == ["cyan", "yellow"]
    assert all(e.score >= 0.5 for e in explanations)  # the label set: each at or above its threshold
    by_label = {e.label: e for e in explanations}
    _follows(by_label["yellow"].heatmap, yellow, cyan)
    _follows(by_label["cyan"].heatmap, cyan, yellow)
    picked = explain(scene, model=colour_detector, target="cyan")  # --label: one of them
    np.testing.assert_allclose(picked.heatmap, by_label["cyan"].heatmap)
    assert picked.score == pytest.approx(by_label["cyan"].score)


def test_a_scene_with_one_object_explains_that_label_and_an_empty_one_its_top_label(colour_detector):
    alone = explain_labels(_two_colour_scene(np.random.default_rng(5), {"cyan": (30, 60)}), model=colour_detector)
    assert [e.label for e in alone] == ["cyan"]
    empty = explain_labels(_two_colour_scene(np.random.default_rng(6), {}), model=colour_detector)
    assert len(empty) == 1 and empty[0].score < 0.5  # nothing over its threshold: the top label, to show something


def test_cli_writes_one_overlay_per_label_or_the_one_asked_for(colour_detector, tmp_path, capsys):
    path = tmp_path / "scene.png"
    Image.fromarray(_two_colour_scene(np.random.default_rng(3), {"yellow": (10, 10), "cyan": (90, 80)})).save(path)
    out = tmp_path / "maps" / "cam.png"
    assert cli(["explain", str(path), "--model", str(colour_detector), "--out", str(out)]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert sorted(label for label, _, _ in lines) == ["cyan", "yellow"]
    for label, score, written in lines:
        assert Path(written) == out.with_name(f"cam_{label}.png") and Path(written).is_file() and float(score) >= 0.5
    assert not out.exists()
    assert cli(["explain", str(path), "--model", str(colour_detector), "--label", "yellow", "--out", str(out)]) == 0
    label, score, written = capsys.readouterr().out.split()
    assert label == "yellow" and Path(written) == out and out.is_file()
