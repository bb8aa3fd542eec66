"""Multi-label classification: each image shows any number of classes; sigmoid scores, BCE, per-class thresholds.

Training saves `problem_type` and one tuned threshold per class in config.json
(tasks/calibration.py). `classify`, `explain`, `export`, `hf-resnet evaluate` and the demo all
read them through `stored_thresholds` and `thresholds`, so they agree on every config, also one
written by hand or by another tool (one threshold for all labels, or one per label by name).
"""

from __future__ import annotations

import numpy as np
import torch

from ..scoring.metrics import MULTI_LABEL_BEST, MULTI_LABEL_METRICS
from .base import Task
from .base import markdown_cell as _cell

#: transformers' `problem_type` of a multi-label model: its pipeline then applies a sigmoid per class.
MULTI_LABEL = "multi_label_classification"
#: The probability a label needs where the config stores no threshold (the sigmoid's midpoint).
DEFAULT_THRESHOLD = 0.5
#: Labels of a set named in a mistake's caption before "+N more"; a caption wider than its image is unreadable.
MAX_LABELS_SHOWN = 3


def stored_thresholds(config) -> list[float] | None:
    """The thresholds config.json holds, one per class in label order; None when it holds none.

    >>> from transformers import PretrainedConfig
    >>> stored_thresholds(PretrainedConfig(id2label={0: "cat", 1: "dog"}, thresholds={"dog": 0.3}))
    [0.5, 0.3]
    """
    stored = getattr(config, "thresholds", None)
    stored = getattr(config, "threshold", None) if stored is None else stored
    labels = [config.id2label[index] for index in range(config.num_labels)]
    if stored is None:
        return None
    if isinstance(stored, dict):
        if unknown := sorted(set(map(str, stored)) - set(labels)):
            raise ValueError(
                f"config.json thresholds name label(s) {unknown} the model does not have (its labels: {labels})"
            )
        values = [stored.get(label, DEFAULT_THRESHOLD) for label in labels]
    elif _probability(stored):
        values = [stored] * len(labels)
    elif isinstance(stored, (list, tuple)) and len(stored) == len(labels):
        values = list(stored)
    else:
        values = None
    if values is None or not all(_probability(value) for value in values):
        raise ValueError(
            f"config.json thresholds {stored!r} should be one probability per label ({len(labels)}), one per label "
            "name, or one for all, each in [0, 1]"
        )
    return [float(value) for value in values]


def _probability(value) -> bool:
    """A number in [0, 1]: not NaN, not a bool, not a list."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def thresholds(config) -> list[float]:
    """The probability each class needs to be in the answer: the stored thresholds, else DEFAULT_THRESHOLD."""
    return stored_thresholds(config) or [DEFAULT_THRESHOLD] * config.num_labels


def label_set_agreement(reference: torch.Tensor, candidate: torch.Tensor, limits: torch.Tensor) -> tuple[float, float]:
    """(largest absolute sigmoid-score difference, share of images with the same label set at `limits`).

    >>> label_set_agreement(torch.tensor([[3.0, -3.0], [0.1, 0.0]]), torch.tensor([[3.0, -3.0], [-0.1, 0.0]]),
    ...                     torch.tensor([0.5, 0.5]))
    (0.04995..., 0.5)
    """
    reference, candidate = torch.sigmoid(reference.float()), torch.sigmoid(candidate.float())
    difference = float((reference - candidate).abs().max())
    agreement = float(((reference >= limits) == (candidate >= limits)).all(dim=-1).float().mean())
    return difference, agreement


def _limits(config) -> torch.Tensor:
    return torch.tensor(thresholds(config), dtype=torch.float32)


def _label_set(row: torch.Tensor, names: list[str]) -> str:
    present = [names[i] for i in torch.nonzero(row).flatten().tolist()]
    shown = ", ".join(present[:MAX_LABELS_SHOWN]) + (
        f" +{len(present) - MAX_LABELS_SHOWN}" if len(present) > MAX_LABELS_SHOWN else ""
    )
    return shown or "none"


class MultiLabel(Task):
    """Multi-hot rows as targets, BCE with logits (smoothed towards 1/2, `pos_weight` for balance) as the loss,
    mixup/cutmix of multi-hot rows, mAP/F1/exact match as metrics, per-class thresholds fitted after training,
    and every label at or above its threshold as the answer."""

    problem_type = MULTI_LABEL
    name = "Multi-label"
    multi_hot = True
    label_sets = True
    metrics = MULTI_LABEL_METRICS
    metrics_known_as = "a multi-label model is scored by"
    best_metric = MULTI_LABEL_BEST
    per_class_plot = "average_precision.png"
    per_class_title = "Average precision per class"
    per_class_key = "average_precision"
    agreement_kind = "label-set"
    agrees_with = "gives the same label sets as"
    #: The whole image, uncropped and unmirrored: labels may be about objects anywhere, even at the edges, and
    #: a crop or a flip that loses or changes one leaves a target that is no longer true (docs/benchmarks.md).
    data_defaults = {"resize": "squash", "crop_scale_min": 1.0, "hflip": 0.0}
    fitted = "a decision threshold per class"

    def configure(self, config) -> None:
        """Saved in config.json: the transformers pipeline then applies a sigmoid, and loaders pick this task."""
        config.problem_type = MULTI_LABEL

    def loss_function(self):
        from .loss import multi_label_bce

        return multi_label_bce

    def loss_weights(self, counts, total: int) -> torch.Tensor:
        from .balance import positive_weights

        return positive_weights(counts, total)

    def batch_mix(self, num_labels: int, data_args):
        from ..data.transforms import build_multi_hot_mix

        return build_multi_hot_mix(data_args)

    def compute_metrics(self, names, labels: list[str]):
        """All multi-label metrics at thresholds chosen at each evaluation, as the final one chooses and saves them."""
        from ..scoring.metrics import compute_multi_label_metrics_for
        from ..tasks.calibration import chosen_thresholds

        return compute_multi_label_metrics_for(chosen_thresholds)

    def fit(self, model, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        from ..tasks.calibration import tune_thresholds

        return tune_thresholds(model, logits, labels)

    def check(self, config) -> None:
        stored_thresholds(config)

    def per_class_report(self, logits, labels, names: list[str]) -> dict:
        from ..scoring.metrics import per_class_average_precision

        return per_class_average_precision(np.asarray(logits), np.asarray(labels), names)

    def measure(self, logits: torch.Tensor, labels: torch.Tensor, names: list[str], report: dict, config) -> dict:
        """The named metrics at the thresholds the run saved (the loss is BCE, as in training)."""
        from ..scoring.metrics import compute_multi_label

        limits = stored_thresholds(config)
        scores = compute_multi_label(logits.numpy(), labels.numpy(), limits)
        metrics = {
            "loss": torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float()).item(),
            **{name: scores[name] for name in names},
        }
        if limits is not None:
            metrics["mean_threshold"] = sum(limits) / len(limits)
        metrics["samples"] = len(labels)
        return metrics

    def mistakes(self, logits, labels, config, names: list[str], shown: int) -> list[tuple[int, str]]:
        """Images whose label set is wrong, ranked by their surest wrong decision, each with its caption.

        A wrong decision is a label given that is absent (as sure as its probability) or a label missed
        that is present (as sure as 1 - its probability): the caption names the surest one.
        """
        probabilities = torch.sigmoid(logits.double())
        limits = torch.tensor(thresholds(config), dtype=torch.float64)
        predicted, truth = probabilities >= limits, labels > 0.5
        sureness = torch.where(predicted, probabilities, 1.0 - probabilities)
        sureness = torch.where(predicted != truth, sureness, torch.tensor(-1.0, dtype=torch.float64))
        worst, worst_class = sureness.max(dim=1)
        wrong = torch.nonzero(worst >= 0).flatten()
        surest = wrong[torch.argsort(worst[wrong], descending=True, stable=True)][:shown].tolist()
        captions = []
        for i in surest:
            label = names[int(worst_class[i])]
            probability = float(probabilities[i, worst_class[i]])
            decision = f"{'wrongly said' if predicted[i, worst_class[i]] else 'missed'} {label} ({probability:.0%})"
            captions.append(
                (i, f"true: {_label_set(truth[i], names)}\nsaid: {_label_set(predicted[i], names)}\n{decision}")
            )
        return captions

    def plot_per_class(self, report: dict, path, where: str = "validation"):
        from ..scoring.plots import plot_average_precision

        return plot_average_precision(report, path, f"{self.per_class_title} ({where})")

    def card_per_class(self, report: dict) -> list[str]:
        """Each class's AP and image count: a multi-label image has no single true class to confuse."""
        if not self.has_per_class(report):
            return []
        lines = ["", "### Per class", "", "| Class | Average precision | Images |", "| --- | --- | --- |"]
        for label, ap, n in zip(report["labels"], report["average_precision"], report["support"]):
            lines.append(f"| {_cell(label)} | {'n/a' if ap is None else f'{ap:.3f}'} | {int(n)} |")
        return lines + ["", f"![Average precision of each class on the validation images]({self.per_class_plot})"]

    def scores(self, logits: torch.Tensor, config) -> torch.Tensor:
        """One independent sigmoid per class, of logits / temperature (1 unless a config says otherwise)."""
        return torch.sigmoid(logits.float() / self.temperature(config))

    def answered(self, scores: torch.Tensor, config) -> list[int]:
        """The labels at or above their own thresholds, best first: none, one or several."""
        over = torch.nonzero(scores >= _limits(config)).flatten()
        return over[torch.argsort(scores[over], descending=True, stable=True)].tolist()

    def label_set(self, scores: torch.Tensor, config) -> list[int]:
        """The answered labels; the top one when none is, so a map is always drawn."""
        return self.answered(scores, config) or [int(scores.argmax())]

    def shown(self, answer: list[dict], thresholds: dict[str, float], top_k: int) -> list[dict]:
        """Every label over its threshold, however many (`top_k` is for rankings)."""
        return [entry for entry in answer if entry["score"] >= thresholds[entry["label"]]]

    def compare(self, reference: torch.Tensor, candidate: torch.Tensor, config) -> dict:
        """Scores as classify computes them (sigmoid of logits / temperature) and the label sets they give."""
        temperature = self.temperature(config)
        difference, agreement = label_set_agreement(reference / temperature, candidate / temperature, _limits(config))
        return {"top1_agreement": None, "max_score_diff": difference, "label_set_agreement": agreement}
