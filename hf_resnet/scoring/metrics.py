"""The project's metrics by name: which shipped `evaluate` module computes each, and how to run them together.

Every number in `eval_results.json`, `test_results.json`, the model card and `--metric_for_best_model`
comes from the modules in `modules/`, loaded by path with `evaluate.load`, so nothing is fetched
from the Hub and `HF_EVALUATE_OFFLINE=1` changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

MODULES_DIR = Path(__file__).with_name("modules")
#: Top-k accuracy's k; reported only with more than k classes, where it can differ from 1.0.
TOP_K = 5


class Metric(NamedTuple):
    """One metric, declared once: what computes it and how the model card and the Hub name it."""

    #: The module in modules/ that computes it, and that module's config name.
    module: str
    config: str | None
    #: Its name for people (the card's results table and the model-index entry).
    title: str
    #: The model-index metric type Hub leaderboards read; None: not reported there.
    hub_type: str | None = None
    #: Smaller is better (the Trainer assumes larger is, unless the name ends in "loss").
    lower_is_better: bool = False


#: Name in results files and `--metrics` -> how it is computed and named. Adding a metric is a module in
#: modules/ and a line here (and its test); `--metrics`, the card and the model-index follow.
METRICS = {
    "accuracy": Metric("accuracy", None, "Accuracy", "accuracy"),
    "balanced_accuracy": Metric("balanced_accuracy", None, "Balanced accuracy", "balanced_accuracy"),
    "f1_macro": Metric("f1", "macro", "Macro F1", "f1"),
    "f1_weighted": Metric("f1", "weighted", "Weighted F1", "f1_weighted"),
    "precision_macro": Metric("precision", "macro", "Macro precision", "precision"),
    "recall_macro": Metric("recall", "macro", "Macro recall", "recall"),
    f"top{TOP_K}_accuracy": Metric("top_k_accuracy", str(TOP_K), f"Top-{TOP_K} accuracy", f"top_{TOP_K}_accuracy"),
    "ece": Metric("expected_calibration_error", None, "Expected calibration error (15 bins)", lower_is_better=True),
}
#: The same for multi-label models (sigmoid scores, label sets); F1 and exact match at the per-class thresholds.
MULTI_LABEL_METRICS = {
    "map": Metric("mean_average_precision", None, "Mean average precision (mAP)", "map"),
    "f1_micro": Metric("multi_label_f1", "micro", "Micro F1 (at the per-class thresholds)", "f1_micro"),
    "f1_macro": Metric("multi_label_f1", "macro", "Macro F1", "f1"),
    "exact_match": Metric("exact_match", None, "Exact-match ratio (whole label set right)", "exact_match"),
}
#: Names of results that no metric module computes: the loss and what calibration fits.
RESULT_TITLES = {
    "loss": "Loss",
    "ece_calibrated": "ECE after temperature scaling (after training: on held-out folds of validation)",
    "temperature": "Calibration temperature (applied by hf_resnet.classify)",
}
#: What a multi-label run keeps its best model by when the one asked for is a single-label metric (the default).
MULTI_LABEL_BEST = "map"
#: Metrics where smaller is better (the Trainer assumes larger is, unless the name ends in "loss").
LOWER_IS_BETTER = tuple(name for name, metric in METRICS.items() if metric.lower_is_better)
#: Names `--metric_for_best_model` may use besides METRICS.
OTHER_RESULTS = ("loss",)
#: Prefix of the per-class recalls every single-label evaluation reports (`eval_recall/<label>`): one
#: number per class, so they are read in logs and results files, never named by `--metric_for_best_model`.
PER_CLASS_RECALL = "recall/"


def module_path(module: str) -> str:
    """The file `evaluate.load` takes for a shipped module, e.g. `module_path("f1")`.

    >>> Path(module_path("accuracy")).is_file()
    True
    """
    return str(MODULES_DIR / f"{module}.py")


def check_metric_names(
    names: Sequence[str], argument: str = "--metrics", known: dict = METRICS, known_as: str = "choose from"
) -> list[str]:
    """The names, checked: a name that no module computes is an error listing the ones that exist.

    `known`: the metric table of the model's task (METRICS or MULTI_LABEL_METRICS, see `hf_resnet.tasks`),
    introduced in the error by `known_as`.

    >>> check_metric_names(["accuracy", "f1_macro"])
    ['accuracy', 'f1_macro']
    """
    names = [name.strip() for name in names if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"{argument} {','.join(names)!r}: unknown metric(s) {unknown}; {known_as} {', '.join(known)}")
    return names


def parse_metric_names(
    text: str | Sequence[str] | None, argument: str = "--metrics", known: dict = METRICS, known_as: str = "choose from"
) -> list[str]:
    """`--metrics accuracy,f1_macro` (or a list) as checked names of `known`; "all" or None gives every metric."""
    if text is None or text == "all":
        return list(known)
    return check_metric_names(text.split(",") if isinstance(text, str) else list(text), argument, known, known_as)


def applicable(names: Sequence[str], num_classes: int) -> list[str]:
    """The metrics that mean something for `num_classes`: top-k needs more than k classes."""
    return [name for name in names if not (METRICS[name][0] == "top_k_accuracy" and num_classes <= TOP_K)]


def load_module(module: str, config_name: str | None = None):
    """A shipped module loaded by path, computing in memory (no cache files, no Hub)."""
    import evaluate

    return evaluate.load(module_path(module), config_name=config_name, keep_in_memory=True)


def load_metrics(names: Sequence[str]):
    """One `evaluate.combine` of the named metrics; each result keeps its name (they never collide)."""
    import evaluate

    return evaluate.combine({name: load_module(METRICS[name].module, METRICS[name].config) for name in names})


def compute(logits: np.ndarray, labels: np.ndarray, names: Sequence[str] | None = None) -> dict[str, float]:
    """The named metrics (default: all that apply) of `logits` (N, C) against `labels` (N,).

    >>> compute(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]), ["accuracy", "f1_macro"])
    {'accuracy': 0.5, 'f1_macro': 0.3333333333333333}
    """
    logits = np.asarray(logits)
    names = applicable(parse_metric_names(names), logits.shape[-1])
    return {name: float(value) for name, value in _combined(tuple(names)).compute(**_inputs(logits, labels)).items()}


def _inputs(logits: np.ndarray, labels: np.ndarray) -> dict:
    logits = np.asarray(logits, dtype=np.float32)
    return {"predictions": logits, "references": np.asarray(labels, dtype=np.int64)}


# Loading copies and hashes each module script; a run evaluating every epoch does it once.
_combined = functools.lru_cache(maxsize=8)(load_metrics)
_confusion_matrix = functools.lru_cache(maxsize=1)(functools.partial(load_module, "confusion_matrix"))


def per_class_recall(report: dict) -> dict[str, float]:
    """`recall/<label>` of every class in a `per_class_report` (0 for a class without images).

    Read off the report, so the logged recalls and the saved per-class report never disagree;
    macro recall is their mean.

    >>> logits, labels = np.array([[2.0, 1.0], [0.0, 3.0], [0.0, 1.0]]), np.array([0, 0, 1])
    >>> per_class_recall(per_class_report(logits, labels, ["cat", "dog"]))
    {'recall/cat': 0.5, 'recall/dog': 1.0}
    """
    return {f"{PER_CLASS_RECALL}{name}": float(value) for name, value in zip(report["labels"], report["recall"])}


def compute_metrics_for(names: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Callable:
    """A Trainer `compute_metrics` computing the named metrics, and each of `labels`' recall, from the gathered logits.

    Per-class recall shows a class the averages hide: one class never recognised costs macro
    recall only 1/C, but reads 0 under its own name in every evaluation's log.

    >>> from transformers import EvalPrediction
    >>> compute_metrics_for(["accuracy"])(EvalPrediction(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0])))
    {'accuracy': 0.5}
    """
    names = parse_metric_names(names)

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        metrics = compute(logits, prediction.label_ids, names)
        if labels:
            metrics |= per_class_recall(per_class_report(logits, prediction.label_ids, list(labels)))
        return metrics

    return compute_metrics


def load_multi_label_metrics():
    import evaluate

    return evaluate.combine(
        {name: load_module(metric.module, metric.config) for name, metric in MULTI_LABEL_METRICS.items()}
    )


_multi_label_combined = functools.lru_cache(maxsize=1)(load_multi_label_metrics)


def compute_multi_label(logits: np.ndarray, targets: np.ndarray, thresholds=None) -> dict[str, float]:
    """mAP, micro/macro F1 and exact match of `logits` (N, C) against multi-hot `targets` (N, C).

    `thresholds` are the per-class probabilities a label needs (default 0.5 for all).

    >>> compute_multi_label(np.array([[2.0, -2.0], [2.0, 2.0]]), np.array([[1, 0], [1, 0]]))["exact_match"]
    0.5
    """
    inputs = {
        "predictions": np.asarray(logits, dtype=np.float32),
        "references": np.asarray(targets, dtype=np.float32),
        "thresholds": None if thresholds is None else list(thresholds),
    }
    return {name: float(value) for name, value in _multi_label_combined().compute(**inputs).items()}


def per_class_average_precision(logits: np.ndarray, targets: np.ndarray, names: list[str]) -> dict:
    """Each class's AP and number of images showing it, for the card and `eval_per_class.json`."""
    module = load_module("mean_average_precision", "per_class")
    values = module.compute(predictions=np.asarray(logits, np.float32), references=np.asarray(targets, np.float32))
    support = (np.asarray(targets) > 0.5).sum(axis=0)
    average_precision = [
        None if np.isnan(value) else value for value in values["average_precision"]
    ]  # JSON has no NaN
    return {"labels": list(names), "average_precision": average_precision, "support": support.tolist()}


def compute_multi_label_metrics_for(fit_thresholds: Callable) -> Callable:
    """A Trainer `compute_metrics` for multi-label models, at thresholds `fit_thresholds(logits, targets)` fits.

    The thresholds are refitted at each evaluation, as they will be on the final one and saved;
    the figures they give are measured on the split they were fitted on.
    """

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        return compute_multi_label(logits, prediction.label_ids, fit_thresholds(logits, prediction.label_ids))

    return compute_metrics


def per_class_report(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1, support and the confusion matrix (rows: true class), for the card and reports.

    Read off the confusion-matrix module's counts, so the per-class figures and the matrix always agree.
    """
    matrix = np.asarray(
        _confusion_matrix().compute(**_inputs(logits, labels), num_classes=len(names))["confusion_matrix"]
    )
    hits, predicted, support = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(len(names)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(names)), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(names)), where=both > 0)
    return {
        "labels": list(names),
        "confusion_matrix": matrix.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
    }
