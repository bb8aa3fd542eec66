"""Recall, the share of a class's images predicted as that class, averaged over classes."""

import evaluate
from sklearn.metrics import recall_score

from .common import AVERAGE_DESCRIPTION, PREDICTIONS_DESCRIPTION, SCORES_OR_LABELS, averaged

_DESCRIPTION = (
    "Recall, the share of a class's images predicted as that class, averaged over classes." + AVERAGE_DESCRIPTION
)
_KWARGS_DESCRIPTION = (
    PREDICTIONS_DESCRIPTION + '\nReturns: {"recall_<average>": float in [0, 1]}, e.g. recall_macro.\n'
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=SCORES_OR_LABELS
        )

    def _compute(self, predictions, references, num_classes=None):
        return averaged(recall_score, "recall", self.config_name, predictions, references, num_classes)
