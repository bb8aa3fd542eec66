"""Exact-match ratio (subset accuracy) of multi-label predictions: the share of images whose label set is right."""

import evaluate
import numpy as np

from .common import MULTI_HOT, MULTI_LABEL_DESCRIPTION, as_multi_hot, over_thresholds

_DESCRIPTION = """Exact-match ratio: the share of images whose predicted label set (every class at or above its
threshold) equals the true set, with nothing missing and nothing extra. The strictest multi-label score.
"""
_KWARGS_DESCRIPTION = MULTI_LABEL_DESCRIPTION + '\nReturns: {"exact_match": float in [0, 1]}.\n'


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=MULTI_HOT
        )

    def _compute(self, predictions, references, thresholds=None):
        predicted = over_thresholds(predictions, thresholds)
        return {"exact_match": float(np.mean(np.all(predicted == as_multi_hot(references), axis=1)))}
