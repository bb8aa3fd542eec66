"""F1 of multi-label predictions at per-class thresholds, micro- or macro-averaged."""

import evaluate
from sklearn.metrics import f1_score

from .common import MULTI_HOT, MULTI_LABEL_DESCRIPTION, as_multi_hot, config_value, over_thresholds

_DESCRIPTION = """F1 of multi-label predictions, each class predicted where its probability reaches its threshold.
The average is the config name: micro (the default: every (image, class) decision weighs the same, so
common classes dominate) or macro (every class weighs the same; a class never predicted nor present scores 0).
"""
_KWARGS_DESCRIPTION = MULTI_LABEL_DESCRIPTION + '\nReturns: {"f1_<average>": float in [0, 1]}, e.g. f1_micro.\n'


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabelF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=MULTI_HOT
        )

    def _compute(self, predictions, references, thresholds=None):
        average = config_value(self.config_name, "micro")
        if average not in ("micro", "macro"):
            raise ValueError(f"multi_label_f1: config name {average!r}; choose micro or macro")
        predicted = over_thresholds(predictions, thresholds)
        value = f1_score(as_multi_hot(references), predicted, average=average, zero_division=0)
        return {f"f1_{average}": float(value)}
