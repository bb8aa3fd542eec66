"""Classification metrics: accuracy, top-5 accuracy, macro F1, and a per-class report.

Computed with scikit-learn, which is what the `evaluate` library's `accuracy` and `f1`
modules call; `evaluate.load()` fetches those modules from the Hub at run time, which fails
offline and on locked-down clusters, so we call the same functions directly.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from transformers import EvalPrediction

#: Top-5 accuracy is reported only when it can differ from 1.0.
TOP_K = 5


def _logits_and_labels(prediction: EvalPrediction) -> tuple[np.ndarray, np.ndarray]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return np.asarray(logits), np.asarray(prediction.label_ids)


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: accuracy, macro F1 and, with more than 5 classes, top-5 accuracy.

    >>> compute_metrics(EvalPrediction(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0])))
    {'accuracy': 0.5, 'f1_macro': 0.3333333333333333}
    """
    logits, labels = _logits_and_labels(prediction)
    predicted = logits.argmax(-1)
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(
            f1_score(labels, predicted, average="macro", labels=np.arange(logits.shape[-1]), zero_division=0)
        ),
    }
    if logits.shape[-1] > TOP_K:
        top = np.argsort(-logits, axis=-1)[:, :TOP_K]
        metrics[f"top{TOP_K}_accuracy"] = float((top == labels[:, None]).any(axis=1).mean())
    return metrics


def per_class_report(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1, support and the confusion matrix (rows: true class), for the model card."""
    classes = np.arange(len(names))
    predicted = np.asarray(logits).argmax(-1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return {
        "labels": list(names),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
    }
