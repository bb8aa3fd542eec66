"""The confusion matrix: images counted by (true class, predicted class)."""

import evaluate
from sklearn.metrics import confusion_matrix

from .common import PREDICTIONS_DESCRIPTION, SCORES_OR_LABELS, as_labels, classes

_DESCRIPTION = "Confusion matrix: row i, column j counts the images of true class i predicted as class j."
_KWARGS_DESCRIPTION = (
    PREDICTIONS_DESCRIPTION + '\nReturns: {"confusion_matrix": list of rows (one per true class) of int counts}.\n'
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=SCORES_OR_LABELS
        )

    def _compute(self, predictions, references, num_classes=None):
        matrix = confusion_matrix(references, as_labels(predictions), labels=classes(predictions, num_classes))
        return {"confusion_matrix": matrix.tolist()}
