"""Expected calibration error: how far a classifier's confidence is from its accuracy."""

import evaluate
import numpy as np

from .common import PREDICTIONS_DESCRIPTION, SCORES, as_scores, config_value

#: Guo et al. (2017), "On Calibration of Modern Neural Networks", bin top-1 confidences 15 ways.
N_BINS = 15

_DESCRIPTION = (
    "Expected calibration error (ECE): top-1 confidences (softmax of the logits) are put in equal-width "
    "bins; ECE is the sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|. 0 is "
    f"perfect. The number of bins is the config name, {N_BINS} by default (Guo et al., 2017). To score "
    "temperature-scaled confidences, pass the logits divided by the temperature. Needs logits."
)
_KWARGS_DESCRIPTION = (
    PREDICTIONS_DESCRIPTION
    + """
Returns: {"ece": float in [0, 1]}.

    expected_calibration_error.compute(predictions=[[2.0, 0.0], [2.0, 0.0]], references=[0, 1])
    {'ece': 0.3807970779778824}
"""
)


def calibration_error(logits, labels, n_bins: int = N_BINS) -> float:
    """ECE of softmax(logits) against `labels`; the one implementation, also behind training's calibration."""
    logits = as_scores(logits, "expected calibration error")
    labels = np.asarray(labels)
    if n_bins < 1 or len(logits) == 0 or labels.shape != (len(logits),):
        raise ValueError(f"need logits (N, C), labels (N,) and n_bins >= 1, got {logits.shape}, {labels.shape}")
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    confidence, prediction = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
    correct = (prediction == labels).astype(np.float64)
    # Bin i holds confidences in (i/n, (i+1)/n]; confidence is never 0, and 1.0 falls in the last bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for index in np.unique(bins):
        members = bins == index
        ece += float(members.mean() * abs(correct[members].mean() - confidence[members].mean()))
    return ece


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpectedCalibrationError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION, features=[SCORES]
        )

    def _compute(self, predictions, references, num_classes=None):
        return {"ece": calibration_error(predictions, references, config_value(self.config_name, N_BINS, int))}
