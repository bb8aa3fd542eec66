"""Single-label classification: each image shows one class; softmax scores, cross-entropy, a temperature."""

from __future__ import annotations

import numpy as np
import torch

from ..data.arguments import SINGLE_LABEL_DEFAULTS
from ..scoring.metrics import METRICS
from .base import Task
from .base import markdown_cell as _cell

SINGLE_LABEL = "single_label_classification"


class SingleLabel(Task):
    """Class indices as targets, cross-entropy (smoothed, class-weighted) as the loss, mixup/cutmix on one-hot
    targets, accuracy and friends as metrics, a softmax temperature fitted after training, the top-k answer."""

    problem_type = SINGLE_LABEL
    name = "Single-label"
    multi_hot = False
    label_sets = False
    metrics = METRICS
    metrics_known_as = "choose from"
    per_class_plot = "confusion_matrix.png"
    per_class_title = "Confusion matrix"
    per_class_key = "confusion_matrix"
    agreement_kind = "top-1"
    agrees_with = "agrees with"
    data_defaults = SINGLE_LABEL_DEFAULTS
    fitted = "a calibration temperature"

    def loss_function(self):
        from .loss import soft_cross_entropy

        return soft_cross_entropy

    def loss_weights(self, counts, total: int) -> torch.Tensor:
        from .balance import balanced_class_weights

        return balanced_class_weights(counts)

    def batch_mix(self, num_labels: int, data_args):
        from ..data.transforms import build_batch_mix

        return build_batch_mix(num_labels, data_args)

    def compute_metrics(self, names, labels: list[str]):
        from ..scoring.metrics import compute_metrics_for

        return compute_metrics_for(names, labels)

    def fit(self, model, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        from ..tasks.calibration import calibrate

        return calibrate(model, logits, labels)

    def per_class_report(self, logits, labels, names: list[str]) -> dict:
        from ..scoring.metrics import per_class_report

        return per_class_report(np.asarray(logits), np.asarray(labels), names)

    def measure(self, logits: torch.Tensor, labels: torch.Tensor, names: list[str], report: dict, config) -> dict:
        """Loss, the named metrics that apply, per-class recalls and, with a fitted temperature, the calibrated ECE."""
        from ..scoring.metrics import applicable, compute, per_class_recall
        from ..scoring.modules.expected_calibration_error import calibration_error

        metrics = {
            "loss": torch.nn.functional.cross_entropy(logits, labels).item(),
            **compute(logits.numpy(), labels.numpy(), applicable(names, logits.shape[1])),
            **per_class_recall(report),
        }
        temperature = getattr(config, "calibration_temperature", None)
        if temperature is not None and "ece" in names:
            metrics["ece_calibrated"] = calibration_error((logits.double() / temperature).numpy(), labels.numpy())
            metrics["temperature"] = temperature
        metrics["samples"] = len(labels)
        return metrics

    def mistakes(self, logits, labels, config, names: list[str], shown: int) -> list[tuple[int, str]]:
        confidence, predicted = torch.softmax(logits, dim=-1).max(dim=-1)
        wrong = torch.nonzero(predicted != labels).flatten()
        surest = wrong[torch.argsort(confidence[wrong], descending=True, stable=True)][:shown].tolist()
        return [
            (i, f"true: {names[int(labels[i])]}\nsaid: {names[int(predicted[i])]} ({float(confidence[i]):.0%})")
            for i in surest
        ]

    def plot_per_class(self, report: dict, path, where: str = "validation"):
        from ..scoring.plots import plot_confusion_matrix

        return plot_confusion_matrix(report, path, title=f"{self.per_class_title} ({where})")

    def card_per_class(self, report: dict) -> list[str]:
        lines = ["", "### Per class", "", "| Class | Precision | Recall | F1 | Images |", "| --- " * 5 + "|"]
        for label, p, r, f, n in zip(
            report["labels"], report["precision"], report["recall"], report["f1"], report["support"]
        ):
            lines.append(f"| {_cell(label)} | {p:.3f} | {r:.3f} | {f:.3f} | {int(n)} |")
        if self.has_per_class(report):
            lines += ["", f"![Confusion matrix on the validation images]({self.per_class_plot})"]
        return lines

    def card_limitations(self, report: dict) -> list[str]:
        """The weakest class by F1 and the most frequent confusion, read off the confusion matrix."""
        if not report.get("f1"):
            return []
        f1 = np.asarray(report["f1"])
        worst = int(f1.argmin())
        lines = [f"- Weakest class: {_cell(report['labels'][worst])} (F1 {f1[worst]:.2f})."]
        matrix = np.asarray(report["confusion_matrix"])
        errors = matrix - np.diag(np.diag(matrix))
        if errors.sum() > 0:
            true, predicted = np.unravel_index(int(errors.argmax()), errors.shape)
            lines.append(
                f"- Most frequent confusion: {_cell(report['labels'][true])} taken for "
                f"{_cell(report['labels'][predicted])} ({int(errors[true, predicted])} of "
                f"{int(matrix[true].sum())} images)."
            )
        return lines

    def scores(self, logits: torch.Tensor, config) -> torch.Tensor:
        """Softmax of logits / temperature; as the pipeline does, a sigmoid for one label and logits for regression."""
        logits = logits.float() / self.temperature(config)
        if getattr(config, "problem_type", None) == "regression":
            return logits
        if config.num_labels == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def answered(self, scores: torch.Tensor, config) -> list[int]:
        """Every class, ranked."""
        return torch.argsort(scores, descending=True, stable=True).tolist()

    def label_set(self, scores: torch.Tensor, config) -> list[int]:
        return [int(scores.argmax())]

    def shown(self, answer: list[dict], thresholds: dict[str, float], top_k: int) -> list[dict]:
        return answer[:top_k]
