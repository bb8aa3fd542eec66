"""F1, the harmonic mean of precision and recall, averaged over classes."""

import evaluate
from sklearn.metrics import f1_score

from .common import AVERAGE_DESCRIPTION, PREDICTIONS_DESCRIPTION, SCORES_OR_LABELS, averaged

_DESCRIPTION = "F1, the harmonic mean of precision and recall, averaged over classes." + AVERAGE_DESCRIPTION
_KWARGS_DESCRIPTION = PREDICTIONS_DESCRIPTION + '\nReturns: {"f1_<average>": float in [0, 1]}, e.g. f1_macro.\n'


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=SCORES_OR_LABELS
        )

    def _compute(self, predictions, references, num_classes=None):
        return averaged(f1_score, "f1", self.config_name, predictions, references, num_classes)
