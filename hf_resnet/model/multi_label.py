"""What a model's config says about multi-label answers: that it gives label sets, and what each label needs.

Training saves `problem_type` and one tuned threshold per class in config.json
(training/calibration.py). `classify`, `explain`, `export`, `hf-resnet evaluate` and the demo all
read them through here, so they agree on every config, also one written by hand or by another
tool (one threshold for all labels, or one per label by name).
"""

from __future__ import annotations

#: transformers' `problem_type` of a multi-label model: its pipeline then applies a sigmoid per class.
MULTI_LABEL = "multi_label_classification"
#: The probability a label needs where the config stores no threshold (the sigmoid's midpoint).
DEFAULT_THRESHOLD = 0.5


def is_multi_label(config) -> bool:
    return getattr(config, "problem_type", None) == MULTI_LABEL


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
        return [float(stored.get(label, DEFAULT_THRESHOLD)) for label in labels]
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return [float(stored)] * len(labels)
    if isinstance(stored, (list, tuple)) and len(stored) == len(labels):
        return [float(value) for value in stored]
    raise ValueError(
        f"config.json thresholds {stored!r} should be one probability per label ({len(labels)}), "
        "one per label name, or one for all"
    )


def thresholds(config) -> list[float]:
    """The probability each class needs to be in the answer: the stored thresholds, else DEFAULT_THRESHOLD."""
    return stored_thresholds(config) or [DEFAULT_THRESHOLD] * config.num_labels
