"""Balanced accuracy: recall averaged over the classes present, so a rare class weighs as much as a common one."""

import evaluate
from sklearn.metrics import balanced_accuracy_score

from .common import PREDICTIONS_DESCRIPTION, SCORES_OR_LABELS, as_labels

_DESCRIPTION = "Balanced accuracy: the mean over true classes of the share of their images predicted right."
_KWARGS_DESCRIPTION = PREDICTIONS_DESCRIPTION + '\nReturns: {"balanced_accuracy": float in [0, 1]}.\n'


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BalancedAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=SCORES_OR_LABELS
        )

    def _compute(self, predictions, references, num_classes=None):
        return {"balanced_accuracy": float(balanced_accuracy_score(references, as_labels(predictions)))}
