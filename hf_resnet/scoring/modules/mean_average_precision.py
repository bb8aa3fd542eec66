"""Mean average precision over classes: how well each class's scores rank its images above the rest."""

import evaluate
import numpy as np
from sklearn.metrics import average_precision_score

from .common import MULTI_HOT, MULTI_LABEL_DESCRIPTION, as_multi_hot, config_value

_DESCRIPTION = """Mean average precision (mAP) of a multi-label classifier: the area under each class's
precision-recall curve, averaged over the classes that have at least one image (a class without one
has no defined AP). Threshold-free: it judges the ranking, not a decision rule.
The config name "per_class" returns each class's AP instead (NaN for classes without images).
"""
_KWARGS_DESCRIPTION = MULTI_LABEL_DESCRIPTION + (
    '\nReturns: {"map": float in [0, 1]}, or {"average_precision": [float per class]} with config "per_class".\n'
)


def per_class_average_precision(predictions, references) -> list[float]:
    scores, truth = np.asarray(predictions, dtype=np.float64), as_multi_hot(references)
    return [
        float(average_precision_score(truth[:, c], scores[:, c])) if truth[:, c].any() else float("nan")
        for c in range(scores.shape[1])
    ]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanAveragePrecision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=MULTI_HOT
        )

    def _compute(self, predictions, references, thresholds=None):
        per_class = per_class_average_precision(predictions, references)
        if config_value(self.config_name, "macro") == "per_class":
            return {"average_precision": per_class}
        present = [value for value in per_class if not np.isnan(value)]
        return {"map": float(np.mean(present)) if present else 0.0}
