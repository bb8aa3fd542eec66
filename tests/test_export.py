"""ONNX and int8 export: parity with PyTorch, a refused int8 model, classify(backend="onnx"), the CLI."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    MULTI_SHAPES,
    TEST_PYTHONPATH,
    multi_shape_image,
    save_tiny_checkpoint,
    shape_image,
    tiny_config,
    tiny_processor,
)
from PIL import Image
from transformers import ResNetForImageClassification

from hf_resnet.cli import main as cli
from hf_resnet.config import run_folder
from hf_resnet.inference.classifier import classify, load_classifier
from hf_resnet.inference.onnx_export import ExportError, ExportReport, export, reference_photos

# Parity with the transformers pipeline (and ONNX) is a claim about fp32 numerics; on CPUs with native bf16,
# classify's default is bf16 autocast, whose agreement with fp32 is tested in test_precision.py.
classify = functools.partial(classify, precision="fp32")
load_classifier = functools.partial(load_classifier, precision="fp32")

WHITE = Image.new("RGB", (40, 40), (255, 255, 255))


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ResNet trained (under a second) on the three conftest shapes, so its answers have margins.

    With random weights the top two logits are often nearly tied and int8 agreement says little.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: thread wake-ups would cost more than the work
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    processor = tiny_processor()
    model = ResNetForImageClassification(tiny_config())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        labels = rng.integers(0, 3, size=32)
        pixels = processor(images=[shape_image(int(c), rng) for c in labels], return_tensors="pt")["pixel_values"]
        loss = model(pixel_values=pixels, labels=torch.from_numpy(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("shapes")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _shapes(count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [shape_image(i % 3, rng) for i in range(count)]


@pytest.fixture(scope="module")
def exported(shapes_model: Path) -> ExportReport:
    return export(
        shapes_model,
        quantize="int8",
        sample_images=_shapes(60, seed=10),
        calibration_images=_shapes(30, seed=11),
        latency_repeats=2,
    )


def test_onnx_and_int8_files_agree_with_pytorch(exported: ExportReport, shapes_model: Path):
    out = shapes_model / "onnx"
    assert exported.out_dir == str(out)
    assert {"model.onnx", "model_int8.onnx", "config.json", "preprocessor_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert exported.sample_images == 60 and exported.calibration_images == 30
    # Measured, not rounded away: fp32 ONNX (BatchNorm fused) and PyTorch differ by float rounding, not 0.
    assert 0 < exported.onnx.max_logit_diff < 1e-4 and exported.onnx.top1_agreement == 1.0
    assert exported.int8.top1_agreement >= exported.min_int8_agreement
    assert 0 < exported.int8.max_logit_diff < 1.0  # quantized: close, but not bit-identical
    assert exported.batchnorm_nodes_after_fusion == 0
    assert exported.int8.size_mb < exported.onnx.size_mb
    for variant in (exported.eager, exported.onnx, exported.int8):
        assert variant.latency_ms_batch1 > 0 and variant.latency_ms_batch32 > 0
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["int8"]["top1_agreement"] == exported.int8.top1_agreement


def test_classify_with_the_onnx_backend_matches_torch(exported, shapes_model: Path):
    images = _shapes(6, seed=20)
    eager = classify(images, model=shapes_model, top_k=3)
    for location in (shapes_model, shapes_model / "onnx", shapes_model / "onnx" / "model.onnx"):
        answers = classify(images, model=location, backend="onnx", top_k=3)
        for ours, theirs in zip(answers, eager):
            assert [e["label"] for e in ours] == [e["label"] for e in theirs]
            np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-5)
    int8 = classify(images, model=shapes_model / "onnx" / "model_int8.onnx", backend="onnx", top_k=1)
    assert [a[0]["label"] for a in int8] == [a[0]["label"] for a in eager]
    assert load_classifier(shapes_model, backend="onnx").backend == "onnx"


@pytest.mark.parametrize("replace", [False, True], ids=["resume", "overwrite_output_dir"])
def test_an_export_of_earlier_weights_is_removed_when_a_run_changes_them(exported, shapes_model, tmp_path, replace):
    run = Path(shutil.copytree(shapes_model, tmp_path / "run"))  # a model folder with its default onnx/ export
    (run / "onnx" / "model.onnx").stat()
    run_folder.start(run, {}, replace=replace)  # what a resumed or overwriting run does before training
    assert not (run / "onnx").exists()
    with pytest.raises(FileNotFoundError, match="run `hf-resnet export"):
        classify(_shapes(1, seed=0), model=run, backend="onnx")


def test_onnx_backend_applies_the_calibration_temperature(tmp_path: Path):
    folder = save_tiny_checkpoint(tmp_path / "m", seed=4, calibration_temperature=3.0)
    export(folder, sample_images=_shapes(4, seed=1), latency_repeats=1)
    image = _shapes(1, seed=2)[0]
    logits = load_classifier(folder).forward(load_classifier(folder).preprocess([image]))[0]
    expected = sorted(torch.softmax(logits / 3.0, dim=-1).tolist(), reverse=True)
    answer = classify(image, model=folder, backend="onnx", top_k=None)
    np.testing.assert_allclose([e["score"] for e in answer], expected, atol=1e-5)


def test_int8_model_below_the_agreement_threshold_is_refused(shapes_model: Path, tmp_path: Path):
    # Calibrating on a blank white image sets every activation range wrong: the int8 answers collapse.
    with pytest.raises(ExportError, match=r"int8 model agrees with fp32 on .*below the 99% minimum") as error:
        export(
            shapes_model,
            out=tmp_path / "bad",
            quantize="int8",
            sample_images=_shapes(30, seed=3),
            calibration_images=[WHITE],
            latency_repeats=1,
        )
    assert "--calibration-dir" in str(error.value)
    assert not (tmp_path / "bad" / "model_int8.onnx").exists()
    assert (tmp_path / "bad" / "model.onnx").exists()  # the fp32 export stays usable
    report = json.loads((tmp_path / "bad" / "export_report.json").read_text())
    assert report["int8"]["path"] is None and report["int8"]["top1_agreement"] < 0.99


def test_cli_exports_from_image_folders_and_reports_refusals(shapes_model: Path, tmp_path: Path, capsys):
    samples, calibration = tmp_path / "samples", tmp_path / "calibration"
    for folder, images in ((samples, _shapes(9, seed=5)), (calibration, [WHITE])):
        folder.mkdir()
        for i, image in enumerate(images):
            image.save(folder / f"{i}.png")
    common = ["export", "--model", str(shapes_model), "--sample-dir", str(samples), "--repeats", "1"]
    assert cli([*common, "--out", str(tmp_path / "fp32")]) == 0
    printed = capsys.readouterr().out
    assert "onnx" in printed and "9 sample images" in printed
    assert (tmp_path / "fp32" / "model.onnx").is_file()
    measured = json.loads((tmp_path / "fp32" / "export_report.json").read_text())["onnx"]["max_logit_diff"]
    onnx_row = next(line.split() for line in printed.splitlines() if line.startswith("onnx "))
    assert onnx_row[4] == f"{measured:.2g}" != "0"  # the measured gap as printed, not rounded to nothing
    assert (
        cli([*common, "--out", str(tmp_path / "q"), "--quantize", "int8", "--calibration-dir", str(calibration)]) == 2
    )
    assert "hf-resnet export: int8 model agrees with fp32 on" in capsys.readouterr().err


def test_reference_photos_are_real_and_repeatable(tmp_path: Path):
    first, again, other = reference_photos(4, seed=0), reference_photos(4, seed=0), reference_photos(4, seed=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))
    # Photos, not noise: neighbouring pixels are strongly correlated.
    pixels = np.asarray(first[0].convert("L"), dtype=float)
    assert np.corrcoef(pixels[:, :-1].ravel(), pixels[:, 1:].ravel())[0, 1] > 0.8
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images found"):
        export(save_tiny_checkpoint(tmp_path / "m"), sample_images=tmp_path / "empty")


def test_export_without_the_extra_names_the_install_and_writes_nothing(tmp_path: Path):
    model = save_tiny_checkpoint(tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    hide = "import sys; sys.modules['onnxscript'] = None; from hf_resnet.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", hide, "export", "--model", str(model)],
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == 'hf-resnet export: export needs onnxscript: pip install "hf_resnet[export]"'
    assert sorted(p.name for p in model.iterdir()) == before  # no empty onnx/


def test_export_into_a_read_only_folder_is_one_clear_line(tmp_path: Path, monkeypatch, capsys):
    model = save_tiny_checkpoint(tmp_path / "model")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere; let the check see what any other user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    capsys.readouterr()
    assert cli(["export", "--model", str(model), "--out", str(read_only / "onnx")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [  # before the model loads: no progress bars
        f"hf-resnet export: --out {read_only / 'onnx'}: not writable (its nearest existing parent {read_only} "
        "is not); pass a folder you can write to"
    ]
    assert list(read_only.iterdir()) == []


def test_the_onnx_file_takes_any_batch_height_and_width(exported: ExportReport, shapes_model: Path):
    from hf_resnet.inference.classifier import onnx_session

    session = onnx_session(shapes_model / "onnx" / "model.onnx")
    assert [str(side) for side in session.get_inputs()[0].shape] == ["batch", "3", "height", "width"]
    model = ResNetForImageClassification.from_pretrained(shapes_model).eval()
    for shape in [(1, 3, 32, 32), (3, 3, 48, 40), (2, 3, 64, 96)]:  # the processor makes 32x32
        pixels = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(pixel_values=pixels).logits.numpy()
        np.testing.assert_allclose(session.run(None, {"pixel_values": pixels.numpy()})[0], expected, atol=1e-4)


# ----------------------------------------------------------------------------- multi-label models


def _scenes(count: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    rng = np.random.default_rng(seed)
    present = rng.integers(0, 2, size=(count, len(MULTI_SHAPES)))
    return [multi_shape_image(np.flatnonzero(row), rng) for row in present], present


@pytest.fixture(scope="module")
def multi_label_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny multi-label ResNet trained (a second or two) to say which of three shapes a picture shows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    processor = tiny_processor()
    names = dict(enumerate(MULTI_SHAPES))
    model = ResNetForImageClassification(
        tiny_config(
            id2label=names,
            label2id={name: i for i, name in names.items()},
            problem_type="multi_label_classification",
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        images, present = _scenes(32, seed=step)
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        loss = model(pixel_values=pixels, labels=torch.from_numpy(present).float()).loss  # BCE: problem_type
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    model.config.thresholds = [0.3, 0.6, 0.5]  # as a run saves them: classify and the checks must use them
    folder = tmp_path_factory.mktemp("multi")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _label_sets(answers) -> list[list[str]]:
    return [[entry["label"] for entry in answer] for answer in answers]


def test_a_multi_label_export_is_checked_on_label_sets_and_classify_answers_the_same_sets(multi_label_model):
    samples, _ = _scenes(40, seed=100)
    report = export(
        multi_label_model,
        quantize="int8",
        sample_images=samples,
        calibration_images=_scenes(30, seed=101)[0],
        min_agreement=0.0,  # the figure is checked against classify below, whatever it is
        latency_repeats=1,
    )
    assert report.onnx.top1_agreement is None and report.onnx.label_set_agreement == 1.0
    assert report.onnx.max_score_diff < 1e-3
    saved = json.loads((multi_label_model / "onnx" / "export_report.json").read_text())
    assert saved["int8"]["label_set_agreement"] == report.int8.label_set_agreement

    eager = _label_sets(classify(samples, model=multi_label_model, top_k=None))
    assert eager != [[]] * len(eager) and len({tuple(s) for s in eager}) > 2  # real, varied label sets
    onnx = _label_sets(classify(samples, model=multi_label_model / "onnx", backend="onnx", top_k=None))
    assert onnx == eager
    int8_file = multi_label_model / "onnx" / "model_int8.onnx"
    int8 = _label_sets(classify(samples, model=int8_file, backend="onnx", top_k=None))
    # Sets compared as sets: the int8 model may order two close scores the other way round.
    same = [sorted(a) == sorted(b) for a, b in zip(int8, eager)]
    assert report.int8.label_set_agreement == pytest.approx(np.mean(same))
    assert report.int8.agreement == report.int8.label_set_agreement


def test_a_multi_label_int8_model_is_refused_on_label_set_agreement(multi_label_model, tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, image in enumerate(_scenes(12, seed=7)[0]):
        image.save(samples / f"{i}.png")
    common = ["export", "--model", str(multi_label_model), "--sample-dir", str(samples), "--repeats", "1"]
    assert cli([*common, "--out", str(tmp_path / "fp32")]) == 0
    assert "sets agree" in capsys.readouterr().out
    refused = [*common, "--out", str(tmp_path / "q"), "--quantize", "int8", "--min-agreement", "1.01"]
    assert cli(refused) == 2
    assert "hf-resnet export: int8 model gives the same label sets as fp32 on" in capsys.readouterr().err
    report = json.loads((tmp_path / "q" / "export_report.json").read_text())
    assert report["notes"][-1] == "int8 model refused: label-set agreement below min_int8_agreement"


# ----------------------------------------------------------------------------- OpenVINO


def _apart(code: str) -> dict:
    """Run `code` (which sets `result`) in a fresh Python process and return `result`, read back as JSON.

    OpenVINO's runtime stays out of the test process: loaded there, it made a later test's DataLoader worker
    fork kill the whole test process (SIGSEGV).
    """
    script = "import json\nfrom test_export import WHITE, ExportError, _shapes, classify, export\n"
    script += f"{textwrap.dedent(code)}\nprint(json.dumps(result))"
    env = {**os.environ, "PYTHONPATH": TEST_PYTHONPATH}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def openvino_exported(shapes_model: Path) -> dict:
    """The export's report (export_report.json) of the shapes model as OpenVINO IR and NNCF int8."""
    return _apart(
        f"""
        export({str(shapes_model)!r}, format="openvino", quantize="int8", sample_images=_shapes(60, seed=10),
               calibration_images=_shapes(30, seed=11), latency_repeats=2)
        result = json.loads(open({str(shapes_model / "openvino" / "export_report.json")!r}).read())
        """
    )


def test_openvino_files_agree_with_pytorch_and_sit_beside_onnx_runtimes(openvino_exported, shapes_model: Path):
    out = shapes_model / "openvino"
    assert {"model.xml", "model.bin", "model_int8.xml", "model.onnx", "model_int8.onnx"} <= {
        p.name for p in out.iterdir()
    }
    saved = openvino_exported
    assert 0 < saved["openvino"]["max_logit_diff"] < 1e-4 and saved["openvino"]["top1_agreement"] == 1.0
    assert saved["openvino_int8"]["top1_agreement"] >= saved["min_int8_agreement"]
    # The weights (a tiny model's graph description outweighs them, and int8 adds quantize nodes to it).
    assert (out / "model_int8.bin").stat().st_size < (out / "model.bin").stat().st_size
    for runtime in ("onnx", "int8", "openvino", "openvino_int8"):  # both runtimes' latencies, side by side
        assert saved[runtime]["latency_ms_batch1"] > 0 and saved[runtime]["latency_ms_batch32"] > 0


def test_classify_with_the_openvino_backend_matches_torch(openvino_exported, shapes_model: Path):
    images = _shapes(6, seed=20)
    eager = classify(images, model=shapes_model, top_k=3)
    locations = [str(shapes_model), str(shapes_model / "openvino"), str(shapes_model / "openvino" / "model.xml")]
    answered = _apart(
        f"""
        images = _shapes(6, seed=20)
        result = [classify(images, model=location, backend="openvino", top_k=3) for location in {locations!r}]
        result.append(classify(images, model={str(shapes_model / "openvino" / "model_int8.xml")!r},
                               backend="openvino", top_k=1))
        """
    )
    *fp32, int8 = answered
    for answers in fp32:
        for ours, theirs in zip(answers, eager):
            assert [e["label"] for e in ours] == [e["label"] for e in theirs]
            np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-5)
    assert [a[0]["label"] for a in int8] == [a[0]["label"] for a in eager]


def test_an_openvino_int8_model_is_refused_by_the_same_agreement_rule(shapes_model: Path, tmp_path: Path):
    refused = _apart(
        f"""
        try:
            export({str(shapes_model)!r}, out={str(tmp_path / "bad")!r}, format="openvino", quantize="int8",
                   sample_images=_shapes(30, seed=3), calibration_images=[WHITE], latency_repeats=1)
            result = None
        except ExportError as error:
            result = str(error)
        """
    )
    assert re.search(r"OpenVINO int8 model agrees with fp32 on .*below the 99% minimum", refused or "")
    assert not (tmp_path / "bad" / "model_int8.xml").exists() and not (tmp_path / "bad" / "model_int8.bin").exists()
    assert (tmp_path / "bad" / "model.xml").exists()  # the fp32 IR stays usable
    report = json.loads((tmp_path / "bad" / "export_report.json").read_text())
    assert report["openvino_int8"]["path"] is None and report["openvino_int8"]["top1_agreement"] < 0.99


def test_openvino_without_its_extra_is_one_line_naming_the_install(tmp_path: Path, monkeypatch, capsys):
    from hf_resnet.inference import openvino_export

    model = save_tiny_checkpoint(tmp_path / "model")
    WHITE.save(tmp_path / "white.png")
    monkeypatch.setattr(openvino_export, "missing_openvino", lambda: ["nncf"])  # as without the extra
    capsys.readouterr()
    assert cli(["export", "--model", str(model), "--format", "openvino"]) == 2
    assert cli(["classify", str(tmp_path / "white.png"), "--model", str(model), "--backend", "openvino"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "hf-resnet export: --format openvino needs nncf: pip install 'hf_resnet[openvino]'",
        "hf-resnet classify: --backend openvino needs nncf: pip install 'hf_resnet[openvino]'",
    ]
    assert not (model / "openvino").exists()
