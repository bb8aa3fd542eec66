"""Top-k accuracy: the share of images whose true class is among the k highest scores."""

import evaluate
import numpy as np

from .common import PREDICTIONS_DESCRIPTION, SCORES, as_scores, config_value

_DESCRIPTION = (
    "Top-k accuracy: the share of images whose true class is among the k highest scores. k is the config "
    'name (`evaluate.load(path, config_name="3")`), 5 by default. Needs scores, not class indices.'
)
_KWARGS_DESCRIPTION = (
    PREDICTIONS_DESCRIPTION
    + """
Returns: {"top<k>_accuracy": float in [0, 1]}, e.g. top5_accuracy.

    top_k_accuracy.compute(predictions=[[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]], references=[2, 2])  # config "2"
    {'top2_accuracy': 0.5}
"""
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=[SCORES]
        )

    def _compute(self, predictions, references, num_classes=None):
        k = config_value(self.config_name, 5, int)
        scores = as_scores(predictions, f"top{k}_accuracy")
        top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        return {f"top{k}_accuracy": float((top == np.asarray(references)[:, None]).any(axis=1).mean())}
