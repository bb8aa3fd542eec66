"""`hf-resnet deploy-report`: every form of two runs on their test images, a budget, the card's Deployment section."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROGRESS, TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint
from PIL import Image

from hf_resnet.cli import main as cli
from hf_resnet.deployment.forms import Form
from hf_resnet.deployment.report import _fresh_process
from hf_resnet.hub.card import write_model_card

CLASSES = ("circle", "hbar", "vbar")
#: Looked up, not imported: OpenVINO stays out of the test process (see test_export's `_apart`).
OPENVINO_INSTALLED = all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))


def _lines(stderr: str) -> list[str]:
    """What a person reads: progress bars (the image check's) left out."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(teacher, student, test folder): a wider and a narrower tiny ResNet over the same three shape classes."""
    root = tmp_path_factory.mktemp("deploy")
    test = make_image_folder(root / "test", per_class=6, classes=CLASSES, seed=3)
    labels = {"id2label": dict(enumerate(CLASSES)), "label2id": {c: i for i, c in enumerate(CLASSES)}}
    teacher = save_tiny_checkpoint(root / "teacher", hidden_sizes=[16, 24, 32, 48], **labels)
    student = save_tiny_checkpoint(root / "student", seed=1, **labels)
    return teacher, student, test


@pytest.fixture(scope="module")
def reported(runs) -> tuple[subprocess.CompletedProcess, Path]:
    """deploy-report over both runs, with a latency budget no form can meet."""
    teacher, student, test = runs
    out = teacher.parent / "report"
    command = [sys.executable, "-m", "hf_resnet", "deploy-report", str(teacher), str(student), "--test_dir", str(test)]
    command += ["--output_dir", str(out), "--repeats", "2", "--batch_repeats", "1", "--batch_size", "4"]
    command += ["--no_fresh_process", "--max_latency_ms", "0.000001"]
    # One thread: tiny convolutions on a shared machine spend more on waking threads than on the work.
    env = {**os.environ, "PYTHONPATH": TEST_PYTHONPATH, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600), out


def test_a_report_over_two_runs_writes_the_table_json_and_plot_with_every_form(runs, reported):
    result, out = reported
    report = json.loads((out / "report.json").read_text())
    assert report["test_images"] == 18
    for run in ("teacher", "student"):
        forms = {row["form"] for row in report["results"] if row["run"] == run}
        notes = " ".join(report["notes"][run])
        expected = {"pytorch-fp32", "onnx-fp32"} | ({"openvino-fp32"} if OPENVINO_INSTALLED else set())
        assert expected <= forms, (forms, notes)
        assert ("pytorch-bf16" in forms) == (report["machine"]["native_bf16"] is not None) or "bf16" in notes
        for int8 in ("onnx-int8", "openvino-int8"):  # measured, or refused by the agreement rule, with its reason
            assert int8 in forms or f"{int8}: refused, int8 model agrees with fp32" in notes or "absent" in notes
        assert "cuda-fp16" in forms or "cuda-fp16, cuda-bf16: absent, no CUDA GPU" in notes
    for row in report["results"]:
        assert row["size_mb"] > 0 and row["latency_ms"] > 0 and row["images_per_second"] > 0
        assert row["latency_ms_p95"] >= row["latency_ms"] and row["preprocess_ms"] > 0
        assert 0 <= row["agreement"] <= 1
    assert any(row["pareto"] for row in report["results"])
    table = (out / "report.md").read_text()
    assert "## teacher" in table and "## student" in table and "| onnx-fp32 |" in table.replace("**", "")
    assert Image.open(out / "accuracy_latency.png").size[0] > 300
    for run in runs[:2]:  # each run keeps its own rows for its card
        own = json.loads((run / "deployment.json").read_text())
        assert {row["run"] for row in own["results"]} == {run.name}


def test_fp32_forms_score_what_evaluate_scores(runs, reported, tmp_path):
    teacher, _, test = runs
    assert cli(["evaluate", "--model", str(teacher), "--test_dir", str(test), "--output_dir", str(tmp_path)]) == 0
    expected = json.loads((tmp_path / "test_results.json").read_text())["test_accuracy"]
    rows = json.loads((reported[1] / "report.json").read_text())["results"]
    fp32 = {row["form"]: row["accuracy"] for row in rows if row["run"] == "teacher" and row["form"].endswith("fp32")}
    assert fp32["pytorch-fp32"] == expected
    assert all(accuracy == expected for accuracy in fp32.values()), fp32


def test_a_budget_no_form_meets_exits_1_with_one_line_naming_the_closest_form(reported):
    result, _ = reported
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("no form fits the budget; closest: ") and "> --max_latency_ms 1e-06" in last


def test_a_fresh_serving_process_reports_its_first_answer_and_peak_memory(runs, reported):
    teacher, _, test = runs
    onnx = reported[1] / "forms" / "teacher" / "model.onnx"
    ballast = bytearray(3 * 2**30)  # this process now holds 3 GB; the serving process it starts holds none of it
    served = _fresh_process(Form("onnx-fp32", str(onnx), 0.1), teacher, str(next(test.rglob("*.png"))), 4)
    del ballast
    assert 50 < served["peak_rss_mb"] < 3 * 1024  # its own peak, not the memory of the process that started it
    # The form's own share (loading ONNX Runtime and the model, answering) is part of the whole, not all of it.
    assert 0 < served["form_first_answer_s"] < served["first_answer_s"]
    assert 0 <= served["form_rss_mb"] < served["peak_rss_mb"]


def test_the_model_card_shows_the_deployment_section(runs, reported):
    teacher = runs[0]
    card = write_model_card(teacher).read_text()
    section = card.split("## Deployment", 1)[1]
    assert "deploy-report" in section and "pytorch-fp32" in section and "| form |" in section


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["missing-run"], "RUN missing-run: no such folder"),
        (["{teacher}", "--test_dir", "{empty}"], "--test_dir"),
        (["{teacher}", "--min_accuracy", "95"], "--min_accuracy 95"),
    ],
    ids=["missing_run", "empty_test_dir", "accuracy_as_percent"],
)
def test_bad_input_is_one_line_and_exit_2_before_work(runs, tmp_path, capsys, arguments, named):
    teacher, _, test = runs
    (tmp_path / "empty").mkdir()
    values = {"teacher": str(teacher), "empty": str(tmp_path / "empty")}
    argv = ["deploy-report", *[a.format(**values) for a in arguments], "--output_dir", str(tmp_path / "out")]
    argv += [] if "--test_dir" in arguments else ["--test_dir", str(test)]
    assert cli(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and named in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_test_folder_with_a_class_the_run_does_not_know_is_refused(runs, tmp_path, capsys):
    teacher = runs[0]
    make_image_folder(tmp_path / "other", per_class=2, classes=("circle", "star"))
    assert cli(["deploy-report", str(teacher), "--test_dir", str(tmp_path / "other")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "star" in err[0], err
