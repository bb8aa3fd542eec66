"""Temperature scaling: make a classifier's scores mean what they say.

Fine-tuned networks are usually over-confident: among answers given with 0.95 confidence far
fewer than 95% are right. Dividing the logits by one temperature T fitted on held-out data
(Guo et al., 2017, "On Calibration of Modern Neural Networks") fixes most of that without
changing any prediction, since dividing by T > 0 keeps the order of the logits.
"""

from __future__ import annotations

import math

import torch

from ..scoring.modules.expected_calibration_error import N_BINS, calibration_error

#: Search range for the temperature. Outside it the validation set is too small or too easy
#: (every answer right, so NLL keeps falling as T -> 0) for the fit to mean anything.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
#: Golden-section steps; each shrinks the log-temperature interval by 0.618, so 60 reach ~1e-12.
_SEARCH_STEPS = 60


def _check(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits).detach().double().cpu()
    labels = torch.as_tensor(labels).detach().long().cpu()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(f"need logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return logits, labels


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the negative log-likelihood of `labels` under softmax(logits / T).

    NLL is convex in 1/T, hence unimodal in log T, so a golden-section search over log T finds
    the optimum without a learning rate or a starting point to tune.

    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> round(fit_temperature(logits, torch.tensor([0, 1, 1, 0])), 1)  # half wrong: flatten fully
    20.0
    """
    logits, labels = _check(logits, labels)
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = _nll(logits, labels, math.exp(a)), _nll(logits, labels, math.exp(b))
    for _ in range(_SEARCH_STEPS):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = _nll(logits, labels, math.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = _nll(logits, labels, math.exp(b))
    return math.exp((low + high) / 2.0)


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, n_bins: int = N_BINS
) -> float:
    """Expected calibration error of softmax(logits / temperature): the gap between confidence and accuracy.

    Computed by the shipped `expected_calibration_error` metric module, so training, `hf-resnet
    evaluate` and `evaluate.load` of that module give the same figure. 0 is perfect.

    >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    >>> round(expected_calibration_error(logits, torch.tensor([0, 1])), 3)  # 88% sure, 50% right
    0.381
    """
    if temperature <= 0 or n_bins < 1:
        raise ValueError(f"need temperature > 0 and n_bins >= 1, got {temperature} and {n_bins}")
    logits, labels = _check(logits, labels)
    return calibration_error((logits / temperature).numpy(), labels.numpy(), n_bins)


def calibrate(model, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Fit temperature scaling on the validation logits and store it in the config for `classify`.

    The calibrated ECE is measured on the split the temperature was fitted on, so it is an
    optimistic figure; one scalar fitted on hundreds of images overfits little (Guo et al., 2017).
    """
    temperature = fit_temperature(logits, labels)
    model.config.calibration_temperature = temperature
    return {
        "eval_ece": expected_calibration_error(logits, labels),
        "eval_ece_calibrated": expected_calibration_error(logits, labels, temperature),
        "eval_temperature": temperature,
    }


#: Where a class's decision threshold stays when validation cannot tell (no positives, or none scored): the
#: natural cut of a sigmoid.
DEFAULT_THRESHOLD = 0.5


def fit_thresholds(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Per-class probability thresholds maximising each class's F1 on held-out multi-hot `targets`.

    One shared 0.5 suits balanced classes only: a rare class scores low even when present, so its
    best cut is lower. Each class's threshold lies halfway between two neighbouring validation
    scores (the one accepted and the next one below), so it does not sit on one image's score.

    >>> fit_thresholds(torch.tensor([[2.0], [-1.0], [-3.0]]), torch.tensor([[1.0], [1.0], [0.0]]))
    [0.1...]
    """
    probabilities = torch.sigmoid(torch.as_tensor(logits).detach().double().cpu())
    targets = torch.as_tensor(targets).detach().cpu() > 0.5
    if probabilities.ndim != 2 or probabilities.shape != targets.shape or len(probabilities) == 0:
        raise ValueError(
            f"need logits and targets (N, C), got {tuple(probabilities.shape)} and {tuple(targets.shape)}"
        )
    return [_best_threshold(probabilities[:, c], targets[:, c]) for c in range(probabilities.shape[1])]


def _best_threshold(scores: torch.Tensor, positive: torch.Tensor) -> float:
    if not positive.any():
        return DEFAULT_THRESHOLD
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order].double()
    hits = torch.cumsum(positive, 0)
    f1 = 2 * hits / (torch.arange(1, len(scores) + 1, dtype=torch.float64) + positive.sum())
    # Ties must be accepted together: only the last of equal scores is a possible cut.
    distinct = torch.ones_like(positive, dtype=torch.bool)
    distinct[:-1] = scores[:-1] != scores[1:]
    best = int(torch.argmax(torch.where(distinct, f1, torch.tensor(-1.0, dtype=torch.float64))))
    below = float(scores[best + 1]) if best + 1 < len(scores) else 0.0
    return (float(scores[best]) + below) / 2.0


def tune_thresholds(model, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Fit per-class thresholds on the validation logits and store them in the config for `classify`.

    Multi-label scores are sigmoids, one per class, so there is no softmax temperature to fit:
    the thresholds are what turns scores into label sets. The figures computed at them are
    measured on the split they were fitted on, so they are optimistic on a small one.
    """
    thresholds = fit_thresholds(logits, targets)
    model.config.thresholds = thresholds
    return {"eval_mean_threshold": sum(thresholds) / len(thresholds)}
