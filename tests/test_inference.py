"""classify(): every input kind gives the transformers pipeline's answer; bad inputs are named."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_PYTHONPATH, save_tiny_checkpoint, shape_image
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

from hf_resnet.cli import main as cli
from hf_resnet.data import images
from hf_resnet.data.images import ImageError, load_picture
from hf_resnet.families.loading import ModelLoadError
from hf_resnet.inference.classifier import classify, load_classifier

# Parity with the transformers pipeline (and ONNX) is a claim about fp32 numerics; on CPUs with native bf16,
# classify's default is bf16 autocast, whose agreement with fp32 is tested in test_precision.py.
classify = functools.partial(classify, precision="fp32")
load_classifier = functools.partial(load_classifier, precision="fp32")


@pytest.fixture
def photo() -> Image.Image:
    return shape_image(0, np.random.default_rng(3), size=48).resize((60, 44))


@pytest.fixture
def labelled_checkpoint(tmp_path: Path) -> Path:
    labels = ["cat", "dog", "bird", "fish"]
    return save_tiny_checkpoint(
        tmp_path / "pets",
        num_labels=4,
        seed=7,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )


def _assert_same_answer(ours: list[dict], theirs: list[dict]) -> None:
    assert [entry["label"] for entry in ours] == [entry["label"] for entry in theirs]
    np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], rtol=1e-5, atol=1e-6)


def test_answers_with_the_fine_tuned_labels_like_the_pipeline(labelled_checkpoint: Path, photo: Image.Image):
    reference = pipeline("image-classification", model=str(labelled_checkpoint))(photo)
    answer = classify(photo, model=labelled_checkpoint)
    assert set(answer[0]) == {"label", "score"}
    assert {entry["label"] for entry in answer} == {"cat", "dog", "bird", "fish"}
    assert [e["score"] for e in answer] == sorted((e["score"] for e in answer), reverse=True)
    _assert_same_answer(answer, reference)


def test_every_input_kind_gives_the_same_answer(tiny_checkpoint: Path, photo: Image.Image, tmp_path: Path):
    path = tmp_path / "photo.png"
    photo.save(path)
    array = np.asarray(photo)
    expected = classify(photo, model=tiny_checkpoint)
    kinds = {
        "str path": str(path),
        "Path": path,
        "bytes": path.read_bytes(),
        "numpy uint8 HWC": array,
        "numpy float HWC": array.astype(np.float32) / 255.0,
        "tensor CHW": torch.from_numpy(array.copy()).permute(2, 0, 1),
        "tensor HWC": torch.from_numpy(array.copy()),
        "PIL RGBA (opaque)": photo.convert("RGBA"),
    }
    for kind, source in kinds.items():
        answer = classify(source, model=tiny_checkpoint)
        assert [e["label"] for e in answer] == [e["label"] for e in expected], kind
        np.testing.assert_allclose([e["score"] for e in answer], [e["score"] for e in expected], atol=1e-5)


def test_odd_modes_are_converted_before_the_processor(tiny_checkpoint: Path, photo: Image.Image):
    grey = photo.convert("L")
    via_rgb = classify(grey.convert("RGB"), model=tiny_checkpoint)
    for source in (grey, np.asarray(grey), np.asarray(grey)[..., None], photo.convert("CMYK").convert("L")):
        assert classify(source, model=tiny_checkpoint) == via_rgb
    # A transparent palette image is composited on white, as everywhere else in hf_resnet.
    palette = Image.new("P", (40, 40), 0)
    palette.info["transparency"] = 0
    white = classify(Image.new("RGB", (40, 40), (255, 255, 255)), model=tiny_checkpoint)
    assert classify(palette, model=tiny_checkpoint) == white


def test_list_input_gives_a_list_of_answers_whatever_the_batch_size(tiny_checkpoint: Path):
    rng = np.random.default_rng(0)
    images = [shape_image(i % 3, rng, size=36 + 4 * i) for i in range(5)]
    one_by_one = [classify(image, model=tiny_checkpoint, top_k=2) for image in images]
    for batch_size in (1, 2, 16):
        batched = classify(images, model=tiny_checkpoint, top_k=2, batch_size=batch_size)
        assert len(batched) == 5
        for answer, single in zip(batched, one_by_one):
            _assert_same_answer(answer, single)
    reference = pipeline("image-classification", model=str(tiny_checkpoint))(images, top_k=2)
    for answer, theirs in zip(classify(images, model=tiny_checkpoint, top_k=2), reference):
        _assert_same_answer(answer, theirs)


def test_top_k_is_clamped_to_the_number_of_labels(tiny_checkpoint: Path, photo: Image.Image):
    assert len(classify(photo, model=tiny_checkpoint, top_k=1)) == 1
    assert len(classify(photo, model=tiny_checkpoint, top_k=50)) == 3
    assert len(classify(photo, model=tiny_checkpoint, top_k=None)) == 3


def test_already_loaded_model_is_accepted(tiny_checkpoint: Path, photo: Image.Image):
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoint)
    assert classify(photo, model=model) == classify(photo, model=tiny_checkpoint)


def test_bfloat16_checkpoint_runs_in_its_own_dtype(tiny_checkpoint: Path, photo: Image.Image, tmp_path: Path):
    model = AutoModelForImageClassification.from_pretrained(tiny_checkpoint).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    load_classifier(tiny_checkpoint).processor.save_pretrained(tmp_path / "bf16")
    assert next(load_classifier(tmp_path / "bf16").model.parameters()).dtype == torch.bfloat16
    answer, reference = classify(photo, model=tmp_path / "bf16"), classify(photo, model=tiny_checkpoint)
    assert [e["label"] for e in answer] == [e["label"] for e in reference]
    np.testing.assert_allclose([e["score"] for e in answer], [e["score"] for e in reference], atol=0.02)


def test_model_is_loaded_once_and_reloaded_when_the_folder_changes(tmp_path: Path, photo: Image.Image):
    folder = save_tiny_checkpoint(tmp_path / "m", seed=1)
    first = load_classifier(folder)
    assert load_classifier(folder) is first
    assert load_classifier(str(folder)) is first
    assert not first.model.training
    assert first.device.type in ("cpu", "cuda", "mps")
    before = classify(photo, model=folder)
    save_tiny_checkpoint(folder, seed=2)  # a new training run writes over the folder
    assert load_classifier(folder) is not first
    assert classify(photo, model=folder) != before


def test_calibration_temperature_in_the_config_softens_scores(tmp_path: Path, photo: Image.Image):
    folder = save_tiny_checkpoint(tmp_path / "m", seed=5)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    pixel_values = load_classifier(folder).preprocess([photo])
    with torch.no_grad():
        logits = model(pixel_values).logits[0]
    model.config.calibration_temperature = 2.5
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["calibration_temperature"] == 2.5
    answer = classify(photo, model=folder, top_k=None)
    expected = torch.softmax(logits / 2.5, dim=-1)
    for entry in answer:
        index = model.config.label2id[entry["label"]]
        assert entry["score"] == pytest.approx(float(expected[index]), abs=1e-5)


@pytest.mark.parametrize(
    "source, message",
    [
        ("no/such/photo.jpg", "no/such/photo.jpg: no such file"),
        (np.zeros((8, 8, 7), dtype=np.uint8), "wrong shape (8, 8, 7)"),
        (np.zeros((2, 3, 8, 8), dtype=np.uint8), "wrong shape (2, 3, 8, 8)"),
        (torch.zeros(5, 8, 8, 2), "wrong shape (5, 8, 8, 2)"),
        (np.full((8, 8, 3), 2.0), "float pixels outside [0, 1]"),
        (b"definitely not a picture", "<24 bytes>: not an image"),
        (12345, "unsupported input type int"),
    ],
)
def test_bad_inputs_raise_errors_naming_them(tiny_checkpoint: Path, source, message: str):
    with pytest.raises(ImageError) as error:
        classify(source, model=tiny_checkpoint)
    assert message in str(error.value)


def test_bad_files_are_named_and_list_items_are_numbered(tiny_checkpoint: Path, photo: Image.Image, tmp_path: Path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        classify(text, model=tiny_checkpoint)
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated"):
        classify(str(truncated), model=tiny_checkpoint)
    with pytest.raises(ImageError, match=r"item 1 <numpy array of shape \(3, 3, 9\)"):
        classify([photo, np.zeros((3, 3, 9), dtype=np.uint8)], model=tiny_checkpoint)


class _ImageServer(http.server.BaseHTTPRequestHandler):
    payloads: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        body = self.payloads.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server(photo: Image.Image) -> Iterator[str]:
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    _ImageServer.payloads = {"/photo.png": buffer.getvalue(), "/big.png": b"x" * 4096}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_are_downloaded_with_a_size_cap(
    tiny_checkpoint: Path, photo: Image.Image, image_server: str, monkeypatch: pytest.MonkeyPatch
):
    assert classify(f"{image_server}/photo.png", model=tiny_checkpoint) == classify(photo, model=tiny_checkpoint)
    with pytest.raises(ImageError, match=r"/missing\.png: could not download"):
        classify(f"{image_server}/missing.png", model=tiny_checkpoint)
    monkeypatch.setattr(images, "MAX_DOWNLOAD_BYTES", 1024)
    with pytest.raises(ImageError, match=r"/big\.png: download of 4096 bytes exceeds the 1024-byte limit"):
        load_picture(f"{image_server}/big.png")


def test_cli_prints_labels_and_json(tiny_checkpoint: Path, photo: Image.Image, tmp_path: Path, capsys):
    path = tmp_path / "photo.png"
    photo.save(path)
    assert (
        cli(["classify", str(path), "--model", str(tiny_checkpoint), "--top-k", "2", "--json", "--precision", "fp32"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == [{"image": str(path), "labels": classify(path, model=tiny_checkpoint, top_k=2)}]

    other = tmp_path / "other.png"
    shape_image(1, np.random.default_rng(0)).save(other)
    command = ["classify", str(path), str(other), str(path), "--model", str(tiny_checkpoint), "--top-k", "2", "--json"]
    command += ["--precision", "fp32"]
    assert cli(command) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [entry["image"] for entry in printed] == [str(path), str(other), str(path)]  # repeats included, in order
    for entry in printed:
        expected = classify(entry["image"], model=tiny_checkpoint, top_k=2)
        assert [label["label"] for label in entry["labels"]] == [label["label"] for label in expected]
        assert [label["score"] for label in entry["labels"]] == pytest.approx([label["score"] for label in expected])
    assert (
        cli(["classify", str(path), str(path), "--model", str(tiny_checkpoint), "--top-k", "1", "--precision", "fp32"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(path) and len(lines) == 4
    assert lines[1].split()[1] == classify(path, model=tiny_checkpoint, top_k=1)[0]["label"]
    assert cli(["classify", str(tmp_path / "gone.png"), "--model", str(tiny_checkpoint), "--precision", "fp32"]) == 2
    assert (
        capsys.readouterr().err.strip() == f"hf-resnet classify: {tmp_path / 'gone.png'}: no such file. Check the path"
    )


def _broken_models(root: Path) -> dict[str, str]:
    """Model folders a user gets wrong, and what the error must say about each."""
    good = save_tiny_checkpoint(root / "good")
    no_processor = save_tiny_checkpoint(root / "no_processor")
    (no_processor / "preprocessor_config.json").unlink()
    truncated = save_tiny_checkpoint(root / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (root / "empty").mkdir()
    return {
        "./missing/model": "--model ./missing/model: no such folder",
        str(no_processor): f"--model {no_processor}: no preprocessor_config.json in it",
        str(truncated): f"--model {truncated}: model.safetensors is truncated or corrupt",
        str(root / "empty"): f"--model {root / 'empty'}: the folder is empty",
        f"{good} --device bogus": "--device bogus: not a device; use cpu, cuda, cuda:N or mps",
    }


def test_models_that_cannot_load_are_one_line_naming_the_path_exit_2(tmp_path: Path, photo: Image.Image, capsys):
    photo.save(tmp_path / "photo.png")
    broken = _broken_models(tmp_path)
    capsys.readouterr()  # the checkpoints' saving progress
    for model, message in broken.items():
        assert cli(["classify", str(tmp_path / "photo.png"), "--model", *model.split()]) == 2
        printed = capsys.readouterr().err.strip()
        assert printed.splitlines() == [printed] and printed.startswith(f"hf-resnet classify: {message}"), printed
    # One of them as a user meets it, in a process of its own: the line is all that process prints.
    model = next(name for name in broken if "truncated" in name)
    result = subprocess.run(
        [sys.executable, "-m", "hf_resnet", "classify", "photo.png", "--model", model],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    printed = result.stderr.strip()
    assert printed.splitlines() == [printed] and printed.startswith(f"hf-resnet classify: {broken[model]}"), printed


def test_loading_errors_are_model_load_errors_in_python(tmp_path: Path):
    for model, message in _broken_models(tmp_path).items():
        if " --device " in model:
            model, device = model.split(" --device ")
            with pytest.raises(ModelLoadError, match=f"^{re.escape(message)}"):
                load_classifier(model, device=device)
        else:
            with pytest.raises(ModelLoadError, match=f"^{re.escape(message)}"):
                load_classifier(model)
    with pytest.raises(
        ModelLoadError,
        match=r"^--model nobody/no-such-model: HF_HUB_OFFLINE is set, and the model is not in the cache; connect once",
    ):
        load_classifier("nobody/no-such-model")  # the tests run offline


@pytest.mark.parametrize("top_k", [0, -1, True, 2.5])
def test_top_k_below_one_or_not_a_whole_number_is_refused(tiny_checkpoint: Path, photo: Image.Image, top_k):
    with pytest.raises(
        ValueError, match=rf"top_k must be a positive number of labels, or None for all of them; got {top_k!r}"
    ):
        classify(photo, model=tiny_checkpoint, top_k=top_k)


@pytest.mark.parametrize("flag", ["0", "-1"])
def test_cli_refuses_a_top_k_below_one_before_loading_anything(tmp_path: Path, flag: str, capsys):
    with pytest.raises(SystemExit) as exit:
        cli(["classify", "a.jpg", "--model", str(tmp_path / "no-model"), "--top-k", flag])
    assert exit.value.code == 2
    assert f"argument --top-k: '{flag}' is not a positive number of labels" in capsys.readouterr().err


def test_a_folder_is_named_as_a_folder(tiny_checkpoint: Path, tmp_path: Path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert cli(["classify", str(folder), "--model", str(tiny_checkpoint)]) == 2
    message = capsys.readouterr().err.strip()
    assert (
        message
        == f"hf-resnet classify: {folder}: a folder, not an image. Pass the image files inside it, e.g. FOLDER/*.jpg"
    )


def test_a_huge_image_in_a_small_file_is_refused_from_its_header(tiny_checkpoint: Path, tmp_path: Path):
    path = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(path)  # a few KB on disk; 144 megapixels decoded
    assert path.stat().st_size < 100_000
    with pytest.raises(
        ImageError, match=r"huge\.png: 12000x12000 pixels, over the 64-megapixel limit for a full decode"
    ):
        classify(path, model=tiny_checkpoint)


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tiny_checkpoint: Path, tmp_path: Path, monkeypatch):
    path = tmp_path / "big.jpg"
    shape_image(0, np.random.default_rng(0), size=400).save(path, quality=90)
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)  # 400x400 is 16 times the budget: decoded at 1/4 scale
    assert images.open_image(path).size == (100, 100)
    assert len(classify(path, model=tiny_checkpoint, top_k=None)) == 3
