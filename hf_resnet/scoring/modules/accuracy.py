"""Accuracy: the share of images whose predicted class is the true one."""

import evaluate
from sklearn.metrics import accuracy_score

from .common import PREDICTIONS_DESCRIPTION, SCORES_OR_LABELS, as_labels

_DESCRIPTION = "Accuracy: the share of images whose predicted class (the top score) is the true one."
_KWARGS_DESCRIPTION = (
    PREDICTIONS_DESCRIPTION
    + """
Returns: {"accuracy": float in [0, 1]}.

    accuracy.compute(predictions=[[2.0, 1.0], [0.0, 3.0]], references=[0, 0])
    {'accuracy': 0.5}
"""
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=SCORES_OR_LABELS
        )

    def _compute(self, predictions, references, num_classes=None):
        return {"accuracy": float(accuracy_score(references, as_labels(predictions)))}
