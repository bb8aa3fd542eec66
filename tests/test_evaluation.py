"""Metrics through the shipped `evaluate` modules, and `hf-resnet evaluate` on finished runs and plain checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import evaluate
import numpy as np
import pytest
from conftest import (
    MULTI_SHAPES,
    TEST_PYTHONPATH,
    accelerate_launch,
    label_sets,
    make_image_folder,
    make_multi_label_folder,
    save_tiny_checkpoint,
    tiny_config,
)
from huggingface_hub import ModelCard
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)
from transformers import AutoConfig, EvalPrediction

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config.arguments import ResNetTrainingArguments
from hf_resnet.config.run_folder import written_by_package
from hf_resnet.data.arguments import DataArguments
from hf_resnet.data.sources import DataError
from hf_resnet.hub.card import write_model_card
from hf_resnet.scoring.metrics import METRICS, compute, compute_metrics_for, module_path, per_class_report
from hf_resnet.tasks.calibration import expected_calibration_error

CLASSES = ("class_0", "class_1", "class_2")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_resnet", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH, **OFFLINE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def scores_and_labels(n: int = 60, classes: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(0, 3, size=n).astype(np.float32)  # right more often than not
    return logits, labels


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(output folder, validation folder) of a short fine-tuning run, as `hf-resnet train` leaves them."""
    root = tmp_path_factory.mktemp("run")
    train = make_image_folder(root / "train", per_class=16, classes=CLASSES, seed=1)
    val = make_image_folder(root / "val", per_class=7, classes=CLASSES, seed=2)  # 21: not a multiple of a batch
    return _short_run(root, train, val), val


def _short_run(root: Path, train: Path, val: Path) -> Path:
    """Two epochs from a tiny checkpoint, no checkpoints kept: the output folder."""
    hf_resnet.finetune(
        model_name_or_path=str(save_tiny_checkpoint(root / "ckpt")),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(root / "out"),
        num_train_epochs=2,
        backbone_learning_rate=1e-2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    return root / "out"


# ----------------------------------------------------------------------------- the metric modules


def test_every_metric_equals_scikit_learn_from_scores_and_from_class_indices():
    logits, labels = scores_and_labels()
    predicted = logits.argmax(-1)
    metrics = compute(logits, labels)
    assert set(metrics) == set(METRICS)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    for average in ("macro", "weighted"):
        assert metrics[f"f1_{average}"] == pytest.approx(f1_score(labels, predicted, average=average))
    assert metrics["precision_macro"] == pytest.approx(precision_score(labels, predicted, average="macro"))
    assert metrics["recall_macro"] == pytest.approx(recall_score(labels, predicted, average="macro"))
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    assert metrics["top5_accuracy"] == pytest.approx((top5 == labels[:, None]).any(axis=1).mean())
    assert metrics["ece"] == pytest.approx(expected_calibration_error(logits, labels))

    # What evaluate.evaluator passes: class indices. The label-based modules give the same figures.
    for name in ("accuracy", "balanced_accuracy", "f1", "precision", "recall"):
        module = evaluate.load(module_path(name), keep_in_memory=True)
        result = module.compute(predictions=predicted, references=labels, num_classes=7)
        key = next(iter(result))
        assert result[key] == pytest.approx(metrics[key]), name


def test_per_class_report_is_the_confusion_matrix_read_by_class():
    logits, labels = scores_and_labels(classes=4)
    predicted = logits.argmax(-1)
    report = per_class_report(logits, labels, ["a", "b", "c", "d"])
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(4))
    assert report["confusion_matrix"] == confusion_matrix(labels, predicted, labels=range(4)).tolist()
    np.testing.assert_allclose(report["precision"], precision)
    np.testing.assert_allclose(report["recall"], recall)
    np.testing.assert_allclose(report["f1"], f1)
    assert report["support"] == support.tolist() and report["labels"] == ["a", "b", "c", "d"]


def test_modules_load_by_path_with_the_network_off_and_nothing_cached(tmp_path):
    """A fresh module cache and a dead proxy: any attempt to reach the Hub would fail the computation."""
    code = (
        "import numpy as np\n"
        "from hf_resnet.scoring.metrics import METRICS, load_metrics, load_module\n"
        "logits = np.array([[2.0, 1, 0, 0, 0, 0, 0], [0, 3.0, 0, 0, 0, 0, 0], [0, 0, 1.0, 2, 0, 0, 0]])\n"
        "print(load_metrics(list(METRICS)).compute(predictions=logits, references=[0, 1, 2]))\n"
        "print(load_module('confusion_matrix').compute(predictions=logits, references=[0, 1, 2]))\n"
    )
    dead = "http://127.0.0.1:9"
    env = {
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        "HF_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": TEST_PYTHONPATH, **OFFLINE, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "'accuracy': 0.666" in result.stdout and "'ece':" in result.stdout and "'top5_accuracy': 1.0" in result.stdout
    )
    assert "'confusion_matrix': [[1, 0, 0" in result.stdout


def test_metrics_flag_chooses_and_metric_for_best_model_must_be_computed(tmp_path):
    from hf_resnet.config.checks import ArgumentError, validate
    from hf_resnet.model.arguments import ModelArguments

    (tmp_path / "photos").mkdir()

    def check(**flags):
        args = ResNetTrainingArguments(output_dir=str(tmp_path / "out"), **flags)
        validate(ModelArguments(arch="resnet-18"), DataArguments(train_dir=str(tmp_path / "photos")), args)
        return args

    args = check(metrics="accuracy, ece", metric_for_best_model="ece")
    assert args.metrics == "accuracy,ece" and args.greater_is_better is False  # a lower ECE is better
    assert check(metric_for_best_model="f1_weighted").greater_is_better
    with pytest.raises(ArgumentError, match=r"^--metrics accuracy,f2: unknown metric\(s\) \['f2'\]"):
        check(metrics="accuracy,f2")
    with pytest.raises(ArgumentError, match="^--metric_for_best_model f1_macro: is not computed"):
        check(metrics="accuracy", metric_for_best_model="f1_macro")


def test_training_reports_the_chosen_metrics_and_picks_the_best_model_by_one(tmp_path):
    train = make_image_folder(tmp_path / "train", per_class=6, classes=CLASSES)
    result = hf_resnet.finetune(
        config=tiny_config(),
        train_dir=str(train),
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        metrics="balanced_accuracy,recall_macro",
        metric_for_best_model="balanced_accuracy",
        load_best_model_at_end=True,
        per_device_train_batch_size=8,
        report_to="none",
        disable_tqdm=True,
    )
    assert {"eval_balanced_accuracy", "eval_recall_macro"} <= set(result.metrics)
    assert "eval_accuracy" not in result.metrics and "eval_f1_macro" not in result.metrics
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_balanced_accuracy" in entry]
    assert len(evaluations) >= 2 and state["best_metric"] == max(e["eval_balanced_accuracy"] for e in evaluations[:2])
    assert all(f"eval_recall/{name}" in entry for entry in evaluations for name in CLASSES)  # beside, not instead


def test_per_class_recall_is_scikit_learns_recall_of_each_class():
    logits, labels = scores_and_labels(classes=4)
    labels[labels == 3] = 0  # a class without images: recall 0, as scikit-learn's zero_division=0 gives
    prediction = EvalPrediction(logits, labels)
    metrics = compute_metrics_for(["recall_macro"], ["a", "b", "c", "d"])(prediction)
    expected = recall_score(labels, logits.argmax(-1), labels=range(4), average=None, zero_division=0)
    assert [metrics[f"recall/{name}"] for name in "abcd"] == pytest.approx(expected.tolist())
    assert metrics["recall_macro"] == pytest.approx(np.mean(expected))
    assert set(compute_metrics_for(["accuracy"])(prediction)) == {"accuracy"}  # no label names, no per-class keys


def test_training_logs_every_class_recall_at_each_evaluation_as_the_saved_confusion_matrix_gives(finished_run):
    out, _ = finished_run
    report = json.loads((out / "eval_per_class.json").read_text())
    matrix = np.asarray(report["confusion_matrix"])
    # The images behind the saved matrix, one (true, predicted) pair per count.
    true, predicted = (np.repeat(axis, matrix.flatten()) for axis in np.indices(matrix.shape).reshape(2, -1))
    expected = recall_score(true, predicted, labels=range(len(CLASSES)), average=None, zero_division=0)
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert [eval_results[f"eval_recall/{name}"] for name in CLASSES] == pytest.approx(expected.tolist())
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    evaluations = [entry for entry in history if "eval_accuracy" in entry]
    assert len(evaluations) == 2  # one per epoch
    for entry in evaluations:
        recalls = [entry[f"eval_recall/{name}"] for name in CLASSES]
        assert np.mean(recalls) == pytest.approx(entry["eval_recall_macro"])
    card = (out / "README.md").read_text()
    assert "recall/" not in card  # the card's per-class table shows them, not its metric table


# ----------------------------------------------------------------------------- hf-resnet evaluate


def test_evaluate_on_a_runs_validation_folder_reproduces_its_eval_results(finished_run, tmp_path):
    out, val = finished_run
    result = run_cli(["evaluate", "--model", str(out), "--test_dir", str(val), "--output_dir", "scores"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Evaluating" in result.stderr  # the progress bar
    eval_results = json.loads((out / "eval_results.json").read_text())
    test_results = json.loads((tmp_path / "scores" / "test_results.json").read_text())
    assert test_results["test_samples"] == eval_results["eval_samples"] == 21
    for key in ("accuracy", "f1_macro", "ece", "ece_calibrated", "temperature", *(f"recall/{c}" for c in CLASSES)):
        assert test_results[f"test_{key}"] == pytest.approx(eval_results[f"eval_{key}"], abs=1e-6), key
    assert 0 < test_results["test_accuracy"]
    run_bookkeeping = {"epoch", "eval_steps_per_second"}
    expected = {"test_" + key.removeprefix("eval_") for key in eval_results if key not in run_bookkeeping}
    assert expected <= set(test_results)
    report = json.loads((tmp_path / "scores" / "test_per_class.json").read_text())
    assert report == json.loads((out / "eval_per_class.json").read_text())
    for png in ("test_confusion_matrix.png", "test_mistakes.png"):
        assert Image.open(tmp_path / "scores" / png).size[0] > 100, png


def test_evaluate_on_a_plain_transformers_checkpoint_needs_no_hf_resnet_file(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain")
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    test = make_image_folder(tmp_path / "test", per_class=3, classes=CLASSES)
    result = hf_resnet.evaluate(checkpoint, test_dir=test, metrics="accuracy,top5_accuracy,ece")
    assert result.output_dir == checkpoint
    assert set(result.metrics) == {
        "test_loss",
        "test_accuracy",
        "test_ece",  # no calibration_temperature in a plain config: no calibrated figures
        "test_samples",
        "test_runtime",
        "test_samples_per_second",
        *(f"test_recall/{name}" for name in CLASSES),  # every class's recall, whatever --metrics says
    }  # top-5 of 3 classes is always 1.0, so it is left out
    assert result.metrics["test_samples"] == 9
    assert json.loads((checkpoint / "test_results.json").read_text()) == result.metrics
    hf_resnet.evaluate(checkpoint, test_dir=test, update_card=True)
    # The card it creates is the package's own, so a training run into this folder may re-render it.
    assert written_by_package(checkpoint / "README.md")


def test_evaluate_reads_a_dataset_split_by_name_and_matches_labels_by_name(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain")
    # A dataset whose label ids run the other way round from the model's: names decide, not ids.
    make_image_folder(tmp_path / "data" / "test", per_class=3, classes=CLASSES)
    names = list(reversed(CLASSES))
    folder = datasets.load_dataset(str(tmp_path / "data"), split="test")
    reordered = folder.cast_column("label", datasets.Value("string")).map(
        lambda row: {"label": folder.features["label"].names[int(row["label"])]}
    )
    reordered = reordered.cast_column("label", datasets.ClassLabel(names=names))
    by_name = hf_resnet.evaluate(checkpoint, dataset=reordered, output_dir=tmp_path / "a")
    by_folder = hf_resnet.evaluate(checkpoint, test_dir=tmp_path / "data" / "test", output_dir=tmp_path / "b")
    assert by_name.metrics["test_accuracy"] == by_folder.metrics["test_accuracy"]
    assert by_name.report == by_folder.report

    result = run_cli(
        ["evaluate", "--model", str(checkpoint), "--dataset_name", str(tmp_path / "data"), "--split", "test"]
        + ["--output_dir", "c"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "c" / "test_results.json").read_text())["test_accuracy"] == pytest.approx(
        by_folder.metrics["test_accuracy"]
    )


def test_a_test_label_the_model_does_not_know_is_one_clear_line_and_nothing_is_written(tmp_path, monkeypatch, capfd):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain")
    test = make_image_folder(tmp_path / "test", per_class=2, classes=("class_0", "zebra"))
    result = run_cli(["evaluate", "--model", str(checkpoint), "--test_dir", str(test), "--output_dir", "o"], tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hf-resnet evaluate: --test_dir") and "['zebra']" in last and "class_0" in last
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()

    # The other mistakes in this process (capfd sees all it writes), sparing a torch import each.
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    for args, message in (
        (["--model", str(checkpoint)], "give exactly one test set"),
        (["--model", str(tmp_path / "nope"), "--test_dir", str(test)], "no such model folder"),
        (["--model", "someone/resnet", "--test_dir", str(test)], "pass --output_dir"),
        (["--model", str(checkpoint), "--test_dir", str(test), "--metrics", "acc"], "unknown metric(s) ['acc']"),
    ):
        code = cli(["evaluate", *args])
        stderr = capfd.readouterr().err
        assert code == 2 and message in stderr and "Traceback" not in stderr, (args, stderr)
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]


def test_update_card_adds_a_model_index_entry_that_round_trips_beside_the_validation_one(finished_run, tmp_path):
    out = shutil.copytree(finished_run[0], tmp_path / "out")
    test = make_image_folder(tmp_path / "photos" / "test", per_class=4, classes=CLASSES, seed=5)
    result = hf_resnet.evaluate(out, test_dir=test, update_card=True)
    hf_resnet.evaluate(out, test_dir=test, update_card=True)  # again: replaces its entry, adds no duplicate

    def entries() -> dict:
        results = ModelCard.load(out / "README.md").data.eval_results
        return {(r.dataset_split, r.metric_type): r for r in results}

    loaded = entries()
    assert loaded[("test", "accuracy")].metric_value == pytest.approx(result.metrics["test_accuracy"])
    assert loaded[("test", "accuracy")].dataset_name == "local image folder photos/test"
    validation = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    assert loaded[("validation", "accuracy")].metric_value == pytest.approx(validation)
    assert len(loaded) == len(ModelCard.load(out / "README.md").data.eval_results)
    write_model_card(out)  # what `hf-resnet push` does: re-rendering keeps the test entry
    assert entries().keys() == loaded.keys()


def test_two_processes_count_every_image_once_and_agree_with_one(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain")
    test = make_image_folder(tmp_path / "test", per_class=5, classes=CLASSES)  # 15 images, batches of 4 per rank
    hf_resnet_cli = Path(sys.executable).with_name("hf-resnet")
    flags = ["evaluate", "--model", str(checkpoint), "--test_dir", str(test), "--batch_size", "4"]
    result = accelerate_launch(hf_resnet_cli, [*flags, "--output_dir", "two"], processes=2, cwd=tmp_path, env=OFFLINE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "test_results.json").read_text())
    one = hf_resnet.evaluate(checkpoint, test_dir=test, output_dir=tmp_path / "one", batch_size=4).metrics
    assert two["test_samples"] == one["test_samples"] == 15
    for key in ("test_accuracy", "test_f1_macro", "test_loss", "test_ece"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert json.loads((tmp_path / "two" / "test_per_class.json").read_text())["support"] == [5, 5, 5]


def test_the_readme_evaluator_recipe_gives_the_same_figures_as_hf_resnet_evaluate(finished_run, tmp_path):
    out, val = finished_run
    ours = hf_resnet.evaluate(out, test_dir=val, output_dir=tmp_path / "ours").metrics

    # The recipe in docs/how-to/evaluate.md, "Metrics", verbatim but for the paths.
    from hf_resnet.scoring.metrics import module_path

    config = AutoConfig.from_pretrained(out)
    data = datasets.load_dataset("imagefolder", data_dir=str(val), split="train")
    data = data.align_labels_with_mapping(config.label2id, "label")
    metric = evaluate.combine(
        [evaluate.load(module_path("accuracy")), evaluate.load(module_path("f1"), config_name="macro")]
    )
    results = evaluate.evaluator("image-classification").compute(
        model_or_pipeline=str(out), data=data, metric=metric, label_mapping=config.label2id
    )
    assert results["accuracy"] == pytest.approx(ours["test_accuracy"])
    assert results["f1_macro"] == pytest.approx(ours["test_f1_macro"])


def test_an_installed_wheel_computes_every_metric_offline(installed_wheel, tmp_path):
    """The modules are in the wheel and load from where pip put them, with no repository around."""
    site = installed_wheel
    code = (
        "import numpy as np\n"
        "from hf_resnet.scoring.metrics import METRICS, compute, module_path\n"
        "print(module_path('accuracy'))\n"
        "print(sorted(compute(np.eye(7)[[0, 1, 2]] * 3, np.array([0, 1, 1]))))\n"
    )
    dead = "http://127.0.0.1:9"
    env = {"PYTHONPATH": str(site), "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "HF_MODULES_CACHE": str(tmp_path / "m")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, **OFFLINE, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path, names = result.stdout.strip().splitlines()[-2:]
    assert path.startswith(str(site)) and eval(names) == sorted(METRICS)


# ----------------------------------------------------------------------------- multi-label models

MULTI_LABEL_KEYS = ("map", "f1_micro", "f1_macro", "exact_match", "mean_threshold")


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory) -> tuple[Path, Path]:
    """(output folder, validation folder) of a short multi-label run: shapes in their places, any set of them."""
    root = tmp_path_factory.mktemp("multi")
    train = make_multi_label_folder(root / "train", count=48, seed=1)
    val = make_multi_label_folder(root / "val", count=21, seed=2)  # 21: not a multiple of a batch
    return _short_run(root, train, val), val


def test_evaluate_on_a_multi_label_runs_validation_folder_reproduces_its_eval_results(multi_label_run, tmp_path):
    out, val = multi_label_run
    result = run_cli(["evaluate", "--model", str(out), "--test_dir", str(val), "--output_dir", "scores"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    eval_results = json.loads((out / "eval_results.json").read_text())
    test_results = json.loads((tmp_path / "scores" / "test_results.json").read_text())
    assert test_results["test_samples"] == eval_results["eval_samples"] == 21
    for key in MULTI_LABEL_KEYS:  # at the thresholds the run saved in config.json
        assert test_results[f"test_{key}"] == pytest.approx(eval_results[f"eval_{key}"], abs=1e-6), key
    assert test_results["test_loss"] == pytest.approx(eval_results["eval_loss"], abs=1e-5)  # BCE, as in training
    run_bookkeeping = {"epoch", "eval_steps_per_second"}
    expected = {"test_" + key.removeprefix("eval_") for key in eval_results if key not in run_bookkeeping}
    assert expected <= set(test_results)
    report = json.loads((tmp_path / "scores" / "test_per_class.json").read_text())
    saved = json.loads((out / "eval_per_class.json").read_text())
    assert report["labels"] == saved["labels"] == sorted(MULTI_SHAPES) and report["support"] == saved["support"]
    assert report["average_precision"] == pytest.approx(saved["average_precision"])
    written = {p.name for p in (tmp_path / "scores").iterdir()}
    assert "test_confusion_matrix.png" not in written  # a label set has no single cell in a matrix
    for png in ("test_average_precision.png", "test_mistakes.png"):
        assert Image.open(tmp_path / "scores" / png).size[0] > 100, png


def test_a_multi_label_model_reads_class_sub_folders_as_one_label_sets(multi_label_run, tmp_path):
    out, _ = multi_label_run
    folders = make_image_folder(tmp_path / "folders", per_class=4, classes=MULTI_SHAPES, seed=3)
    by_folder = hf_resnet.evaluate(out, test_dir=folders, output_dir=tmp_path / "a")
    # The same images listed in a metadata file, one label each, score the same.
    listed = tmp_path / "listed"
    listed.mkdir()
    rows = []
    for image in sorted(folders.rglob("*.png")):
        shutil.copy(image, listed / image.name)
        rows.append(json.dumps({"file_name": image.name, "labels": [image.parent.name]}))
    (listed / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    by_metadata = hf_resnet.evaluate(out, test_dir=listed, output_dir=tmp_path / "b")
    assert by_folder.report["support"] == [4, 4, 4] and by_folder.metrics["test_samples"] == 12
    for key in MULTI_LABEL_KEYS:
        assert by_folder.metrics[f"test_{key}"] == pytest.approx(by_metadata.metrics[f"test_{key}"]), key
    assert by_folder.report == by_metadata.report


def test_a_dataset_with_a_list_label_column_is_scored_by_label_names(multi_label_run, tmp_path):
    out, val = multi_label_run
    rows = [json.loads(line) for line in (val / "metadata.jsonl").read_text().splitlines()]
    names = list(reversed(MULTI_SHAPES))  # ids the other way round from the model's: names decide
    features = datasets.Features(
        {"img": datasets.Image(), "tags": datasets.Sequence(datasets.ClassLabel(names=names))}
    )
    dataset = datasets.Dataset.from_dict(
        {
            "img": [str(val / r["file_name"]) for r in rows],
            "tags": [[names.index(x) for x in r["labels"]] for r in rows],
        },
        features=features,
    )
    by_dataset = hf_resnet.evaluate(out, dataset=dataset, label_column="tags", output_dir=tmp_path / "a")
    by_folder = hf_resnet.evaluate(out, test_dir=val, output_dir=tmp_path / "b")
    for key in MULTI_LABEL_KEYS:
        assert by_dataset.metrics[f"test_{key}"] == pytest.approx(by_folder.metrics[f"test_{key}"]), key


def test_label_sets_for_a_single_label_model_are_one_clear_line(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "plain")
    sets = make_multi_label_folder(tmp_path / "sets", count=6)
    result = run_cli(["evaluate", "--model", str(checkpoint), "--test_dir", str(sets), "--output_dir", "o"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hf-resnet evaluate: --test_dir {sets}: metadata.jsonl lists a set of labels per image")
    assert "the model is single-label" in last and not (tmp_path / "o").exists()
    tags = datasets.Dataset.from_dict(
        {"image": [str(sets / "scene_000.png")], "labels": [["square"]]},
    )
    with pytest.raises(DataError, match="column 'labels' holds a list of labels per image.*single-label"):
        hf_resnet.evaluate(checkpoint, dataset=tags, output_dir=tmp_path / "o")


def test_a_multi_label_model_refuses_single_label_metric_names(multi_label_run, tmp_path):
    out, val = multi_label_run
    result = run_cli(["evaluate", "--model", str(out), "--test_dir", str(val), "--metrics", "accuracy"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown metric(s) ['accuracy']; a multi-label model is scored by map, f1_micro" in result.stderr
    chosen = hf_resnet.evaluate(out, test_dir=val, output_dir=tmp_path / "o", metrics="map,exact_match").metrics
    assert {"test_map", "test_exact_match"} <= set(chosen) and "test_f1_micro" not in chosen


def test_update_card_adds_multi_label_results_beside_the_validation_ones(multi_label_run, tmp_path):
    out = shutil.copytree(multi_label_run[0], tmp_path / "out")
    test = make_multi_label_folder(tmp_path / "photos" / "test", count=16, seed=7)
    result = hf_resnet.evaluate(out, test_dir=test, update_card=True)
    loaded = {(r.dataset_split, r.metric_type): r for r in ModelCard.load(out / "README.md").data.eval_results}
    for key in ("map", "f1_micro", "exact_match"):
        assert loaded[("test", key)].metric_value == pytest.approx(result.metrics[f"test_{key}"]), key
    assert loaded[("test", "f1")].metric_value == pytest.approx(result.metrics["test_f1_macro"])
    validation = json.loads((out / "eval_results.json").read_text())["eval_map"]
    assert loaded[("validation", "map")].metric_value == pytest.approx(validation)
    text = (out / "README.md").read_text()  # the card training wrote: per-class AP as a chart, no matrix
    assert "(average_precision.png)" in text and Image.open(out / "average_precision.png").size[0] > 100
    assert "confusion_matrix" not in text


def test_two_processes_score_a_multi_label_model_as_one(tmp_path):
    labels = dict(enumerate(MULTI_SHAPES))
    checkpoint = save_tiny_checkpoint(
        tmp_path / "plain",
        problem_type="multi_label_classification",
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )
    test = make_multi_label_folder(tmp_path / "test", count=15)  # batches of 4 per rank: the last one padded
    hf_resnet_cli = Path(sys.executable).with_name("hf-resnet")
    flags = ["evaluate", "--model", str(checkpoint), "--test_dir", str(test), "--batch_size", "4"]
    result = accelerate_launch(hf_resnet_cli, [*flags, "--output_dir", "two"], processes=2, cwd=tmp_path, env=OFFLINE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "test_results.json").read_text())
    one = hf_resnet.evaluate(checkpoint, test_dir=test, output_dir=tmp_path / "one", batch_size=4)
    assert two["test_samples"] == one.metrics["test_samples"] == 15
    assert "test_mean_threshold" not in one.metrics  # no thresholds saved: 0.5 for every class
    for key in ("test_map", "test_f1_micro", "test_f1_macro", "test_exact_match", "test_loss"):
        assert two[key] == pytest.approx(one.metrics[key], abs=1e-6), key
    support = [sum(name in labels for labels in label_sets(15)) for name in MULTI_SHAPES]
    assert json.loads((tmp_path / "two" / "test_per_class.json").read_text())["support"] == support
