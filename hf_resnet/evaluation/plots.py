"""The figures of a run and of an evaluation: confusion matrix, per-class average precision, training curves,
most confident mistakes. Saved as PNG without timestamps, so drawing the same results twice gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..data.images import open_image

#: Above this many classes the cells and bars are too small to carry numbers.
MAX_ANNOTATED_CLASSES = 25


def plot_confusion_matrix(report: dict, path: Path, title: str = "Confusion matrix (validation)") -> Path:
    """Draw a confusion matrix: colour = share of the true class, text = image count."""
    matrix = np.asarray(report["confusion_matrix"], dtype=float)
    labels = report["labels"]
    n = len(labels)
    side = float(np.clip(2.5 + 0.45 * n, 4, 18))
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= MAX_ANNOTATED_CLASSES:
        for (row, col), count in np.ndenumerate(matrix):
            colour = "white" if shares[row, col] > 0.5 else "black"
            ax.text(col, row, f"{int(count)}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


def plot_average_precision(report: dict, path: Path, title: str = "Average precision per class (validation)") -> Path:
    """Draw each class's average precision as a bar, its image count above it.

    A multi-label image has a set of true classes, so there is no confusion matrix to draw; how
    well each class's scores rank its images is what tells a strong class from a weak one.
    """
    labels = report["labels"]
    values = np.array([np.nan if ap is None else ap for ap in report["average_precision"]], dtype=float)
    n = len(labels)
    fig = Figure(figsize=(float(np.clip(1.5 + 0.4 * n, 4, 18)), 3.8))
    ax = fig.add_subplot()
    ax.bar(range(n), np.nan_to_num(values), color="tab:blue")
    if n <= MAX_ANNOTATED_CLASSES:
        for index, (value, count) in enumerate(zip(values, report["support"])):
            text = "no images" if np.isnan(value) else f"{int(count)}"
            ax.text(index, (0 if np.isnan(value) else value) + 0.02, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("average precision (images above)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


def plot_training_curves(log_history: list[dict], path: Path) -> Path | None:
    """Draw loss, evaluation metrics and learning rate against epochs; None when nothing was logged."""
    train = [e for e in log_history if "loss" in e]
    evals = [e for e in log_history if "eval_loss" in e or "eval_accuracy" in e]
    x = "epoch" if all("epoch" in e for e in train + evals) else "step"
    panels = []
    if train or any("eval_loss" in e for e in evals):
        panels.append(("loss", [("train", train, "loss"), ("validation", evals, "eval_loss")]))
    metrics = [
        ("accuracy", evals, "eval_accuracy"),
        ("macro F1", evals, "eval_f1_macro"),
        ("accuracy, weight average", evals, "eval_ema_accuracy"),
    ]
    if any(key in e for _, rows, key in metrics for e in rows):
        panels.append(("validation metrics", metrics))
    if any("learning_rate" in e for e in train):
        panels.append(("learning rate (first parameter group)", [("", train, "learning_rate")]))
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    for index, (title, series) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), index)
        labelled = False
        for name, rows, key in series:
            points = [(e[x], e[key]) for e in rows if key in e]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=name or None)
                labelled = labelled or bool(name)
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


def plot_mistakes(images, shown: list[tuple[int, str]], path: Path) -> Path:
    """A grid of the most confident mistakes: each image with its caption (`Task.mistakes`)."""
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    fig = Figure(figsize=(2.6 * columns, 3.1 * rows), layout="constrained")  # room for the captions and title
    from datasets import Image as ImageFeature

    raw = images.cast_column("image", ImageFeature(decode=False))
    for position, (index, caption) in enumerate(shown, start=1):
        item = raw[index]["image"]
        ax = fig.add_subplot(rows, columns, position)
        ax.imshow(open_image(item.get("bytes") or item["path"], name=item.get("path")))
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    if not shown:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "No mistakes", ha="center", va="center")
        ax.axis("off")
    fig.suptitle("Most confident mistakes")
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path
