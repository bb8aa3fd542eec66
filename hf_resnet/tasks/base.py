"""The questions every part of the project asks a task, answered the same way for both problem types.

A subclass answers each one for its problem type; callers hold a task and never ask which
problem type it is. Methods that train or score import that code when called, so `classify`,
which needs only `scores` and `answer`, never loads the training stack (datasets, the Trainer).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def markdown_cell(text: Any) -> str:
    """`text` safe inside a Markdown table cell (the card's tables)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


class Task:
    """One problem type: how a model of it is trained, scored, fitted, reported and how it answers."""

    #: transformers' `config.problem_type` of this task, and its name in messages.
    problem_type: str
    name: str
    #: Whether targets are multi-hot rows (N, C) of floats rather than class indices (N,).
    multi_hot: bool
    #: Whether an answer is a set of labels (several, one or none) rather than a ranking of all classes.
    label_sets: bool
    #: Name in results files and `--metrics` -> (module in scoring/modules, its config name).
    metrics: dict[str, tuple[str, str | None]]
    #: How a refusal of an unknown metric name introduces the names this task knows.
    metrics_known_as: str
    #: The metric the best model is kept by when the one asked for has no meaning here; None: keep the asked.
    best_metric: str | None = None
    #: The per-class plot: file name in a run folder, and its title without the split it shows.
    per_class_plot: str
    per_class_title: str
    #: The key of a per-class report that holds this task's per-class figure.
    per_class_key: str
    #: How export reports name the share of images the exported model answers as PyTorch does.
    agreement_kind: str
    agrees_with: str
    #: What the framing and augmentation flags left unset (None) mean for this task (data/arguments.py says why).
    data_defaults: dict[str, Any]
    #: What `fit` fits after training, as the run's plan names it.
    fitted: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ training

    def with_data_defaults(self, data_args):
        """`data_args` with this task's `data_defaults` in place of the flags left unset.

        >>> from hf_resnet.data.arguments import DataArguments
        >>> from hf_resnet.tasks import task_for
        >>> task_for("multi_label_classification").with_data_defaults(DataArguments(hflip=0.5)).hflip
        0.5
        """
        from ..data.arguments import fill_unset

        return fill_unset(data_args, self.data_defaults)

    def configure(self, config) -> None:
        """Record in a model's config what loaders (and the transformers pipeline) need to know about the task."""

    def best_model_args(self, args):
        """The Trainer arguments with `metric_for_best_model` set to one that this task computes."""
        from ..scoring.metrics import OTHER_RESULTS

        best = (args.metric_for_best_model or "").removeprefix("eval_")
        if self.best_metric is None or not best or best in (*self.metrics, *OTHER_RESULTS):
            return args
        logger.info("%s data: the best model is kept by %s, not %s", self.name, self.best_metric, best)
        return dataclasses.replace(args, metric_for_best_model=self.best_metric, greater_is_better=True)

    def loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None):
        """The Trainer's `compute_loss_func`: this task's loss with the run's smoothing and class weights bound."""
        from functools import partial

        return partial(self.loss_function(), label_smoothing=label_smoothing, weight=weight)

    def loss_function(self):
        """loss(outputs, labels, num_items_in_batch=None, label_smoothing=0.0, weight=None) for this task's targets."""
        raise NotImplementedError

    def loss_weights(self, counts, total: int) -> torch.Tensor:
        """`--class_weights balanced`: per-class loss weights from the images per class (`counts`) of `total`."""
        raise NotImplementedError

    def balance(self, labels, names: list[str], args):
        """(loss weights or None, sampler or None) for `--class_weights`/`--sampler` on these targets."""
        from ..tasks.balance import balance

        return balance(labels, names, self.loss_weights, args)

    def batch_mix(self, num_labels: int, data_args):
        """Mixup and/or CutMix of a whole batch, images and targets, or None when both are off."""
        raise NotImplementedError

    def compute_metrics(self, names, labels: list[str]):
        """The Trainer's `compute_metrics`: the named metrics of the gathered validation logits."""
        raise NotImplementedError

    def fit(self, model, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Fit on the validation logits what turns logits into answers, store it in the config; its figures."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring

    def metric_names(self, text, argument: str = "--metrics") -> list[str]:
        """`--metrics` as checked names of this task's metrics; None or "all" gives every one."""
        from ..scoring.metrics import parse_metric_names

        return parse_metric_names(text, argument, self.metrics, self.metrics_known_as)

    def check(self, config) -> None:
        """Raise ValueError when the config's task settings cannot be read (before any image is loaded)."""

    def per_class_report(self, logits, labels, names: list[str]) -> dict:
        """Per-class figures for `eval_per_class.json`, the card and `hf-resnet evaluate`."""
        raise NotImplementedError

    def measure(self, logits: torch.Tensor, labels: torch.Tensor, names: list[str], report: dict, config) -> dict:
        """The numbers of a scored split, under the names training's eval_results.json uses."""
        raise NotImplementedError

    def mistakes(self, logits, labels, config, names: list[str], shown: int) -> list[tuple[int, str]]:
        """The `shown` most confident wrong answers, surest first, as (image index, caption)."""
        raise NotImplementedError

    def plot_per_class(self, report: dict, path, where: str = "validation"):
        """Draw the per-class report at `path`, titled with `where` the images came from."""
        raise NotImplementedError

    def has_per_class(self, report: dict) -> bool:
        """Whether a per-class report holds this task's per-class figure (a card then places its plot)."""
        return bool(report.get(self.per_class_key))

    def card_per_class(self, report: dict) -> list[str]:
        """The card's per-class table (Markdown lines) and the line placing the per-class plot."""
        raise NotImplementedError

    def card_limitations(self, report: dict) -> list[str]:
        """Card lines on the model's weak points that its per-class report shows."""
        return []

    # ------------------------------------------------------------------ answering

    @staticmethod
    def temperature(config) -> float:
        """The fitted calibration temperature stored in the config (1.0 when none was fitted)."""
        return float(getattr(config, "calibration_temperature", None) or 1.0)

    def scores(self, logits: torch.Tensor, config) -> torch.Tensor:
        """Calibrated per-class scores of logits (N, C), as the transformers pipeline computes them."""
        raise NotImplementedError

    def answer(self, scores: torch.Tensor, config, top_k: int | None) -> list[dict[str, Any]]:
        """One image's answer in the pipeline's shape, best first and at most `top_k`: [{"label", "score"}, ...]."""
        return [
            {"label": config.id2label[index], "score": float(scores[index])}
            for index in self.answered(scores, config)[:top_k]
        ]

    def answered(self, scores: torch.Tensor, config) -> list[int]:
        """The class indices one image's answer may name, best first."""
        raise NotImplementedError

    def label_set(self, scores: torch.Tensor, config) -> list[int]:
        """The class indices one image's answer names, best first (explain draws one map per each)."""
        raise NotImplementedError

    def shown(self, answer: list[dict], thresholds: dict[str, float], top_k: int) -> list[dict]:
        """What the demo shows of an answer to all labels (`top_k=None`)."""
        raise NotImplementedError

    def compare(self, reference: torch.Tensor, candidate: torch.Tensor, config) -> dict[str, Any]:
        """Export checks beyond logits and top-1: `VariantReport` fields of candidate logits against reference."""
        return {}
