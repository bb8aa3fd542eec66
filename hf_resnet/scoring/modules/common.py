"""What the metric modules share: the two input formats they accept and how a class is read from each.

Predictions are either one row of scores (logits) per image, which is what training and
`hf-resnet evaluate` pass and what top-k accuracy and calibration need, or one class index per
image, which is what `evaluate.evaluator("image-classification")` passes.
"""

import datasets
import numpy as np

#: Scores first: a row of floats never passes for a class index, while evaluate tries the formats in order.
SCORES = datasets.Features(
    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
)
LABELS = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
SCORES_OR_LABELS = [SCORES, LABELS]

PREDICTIONS_DESCRIPTION = """
    predictions: one row of scores (logits) per image, or one predicted class index per image.
    references: the true class index of each image.
    num_classes: how many classes the model has. Scores say it themselves (their width); with class
        indices, classes that appear in neither predictions nor references are only counted when it is given.
"""


def as_labels(predictions) -> np.ndarray:
    """The predicted class of each image: the top score's index, or the index given."""
    predictions = np.asarray(predictions)
    return predictions.argmax(-1) if predictions.ndim == 2 else predictions.astype(np.int64)


def as_scores(predictions, metric: str) -> np.ndarray:
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2:
        raise ValueError(f"{metric} needs one row of scores (logits) per image, not class indices")
    return predictions


def classes(predictions, num_classes: int | None) -> np.ndarray | None:
    """Every class index a per-class average runs over, or None to let scikit-learn take those present."""
    predictions = np.asarray(predictions)
    if num_classes is None and predictions.ndim == 2:
        num_classes = predictions.shape[1]
    return None if num_classes is None else np.arange(num_classes)


def config_value(config_name: str, default, kind=str):
    """A module's option, given as `evaluate.load(path, config_name=...)`; "default" when none was given."""
    return default if config_name == "default" else kind(config_name)


AVERAGES = ("macro", "weighted", "micro")
AVERAGE_DESCRIPTION = """
The average is the module's config name: `evaluate.load(path, config_name="weighted")`; one of
macro (the default: every class weighs the same), weighted (by each class's number of images) or micro.
"""


def averaged(score, name: str, config_name: str, predictions, references, num_classes=None) -> dict[str, float]:
    """`{name}_{average}` of a scikit-learn per-class score; a class never predicted scores 0, not NaN."""
    average = config_value(config_name, "macro")
    if average not in AVERAGES:
        raise ValueError(f"{name}: config name {average!r} is not an average; choose one of {', '.join(AVERAGES)}")
    value = score(
        references, as_labels(predictions), labels=classes(predictions, num_classes), average=average, zero_division=0
    )
    return {f"{name}_{average}": float(value)}


#: Multi-label inputs: one row of scores (logits) per image and one multi-hot row of its true labels.
MULTI_HOT = datasets.Features(
    {
        "predictions": datasets.Sequence(datasets.Value("float32")),
        "references": datasets.Sequence(datasets.Value("float32")),
    }
)
MULTI_LABEL_DESCRIPTION = """
    predictions: one row of scores (logits, one per class) per image.
    references: one multi-hot row per image: 1 for each class it shows, 0 for the others.
    thresholds: the probability (sigmoid of the logit) at or above which each class counts as predicted: one
        number per class, or one for all (default 0.5).
"""


def as_multi_hot(references) -> np.ndarray:
    return np.asarray(references, dtype=np.float64) > 0.5


def over_thresholds(predictions, thresholds=None) -> np.ndarray:
    """Which classes each image is predicted to show: sigmoid(logit) at or above the class's threshold."""
    logits = np.asarray(predictions, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError("multi-label metrics need one row of scores (logits) per image")
    thresholds = np.broadcast_to(
        np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64), logits.shape[1:]
    )
    return 1.0 / (1.0 + np.exp(-logits)) >= thresholds
