"""Temperature scaling: make a classifier's scores mean what they say.

Fine-tuned networks are usually over-confident: among answers given with 0.95 confidence far
fewer than 95% are right. Dividing the logits by one temperature T fitted on held-out data
(Guo et al., 2017, "On Calibration of Modern Neural Networks") fixes most of that without
changing any prediction, since dividing by T > 0 keeps the order of the logits.

A temperature fitted on a few validation images can make things worse: with every image right the
fit sharpens without limit, with a few confident mistakes it flattens everything. So the run only
keeps what held-out images confirm: with at least `MIN_IMAGES` validation images, the validation
split is cut into `FOLDS` folds, the temperature is fitted on all folds but one and scored on the
one left out, for each fold in turn; the fitted temperature is kept only if the expected calibration
error of those held-out predictions is lower than without it. Otherwise T = 1 is kept, and the log,
recipe.json and the model card say why. Multi-label thresholds are checked the same way, per class,
on F1 against the sigmoid's 0.5.
"""

from __future__ import annotations

import logging
import math

import torch

from ..scoring.modules.expected_calibration_error import N_BINS, calibration_error

logger = logging.getLogger(__name__)

#: Range of the temperature. At T = 5 a two-class answer given at 90% becomes 61%, at T = 0.5 it
#: becomes 99%: a scaling beyond these overrides the model rather than correcting its confidence.
#: A fit that wants to go further is sharpening a model that got every validation image right (the
#: NLL falls on as T -> 0) or flattening one barely better than chance: the split is too small or
#: too easy to calibrate on.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 5.0
#: Folds of the held-out check: each temperature is scored on the fifth of the images it was not fitted on.
FOLDS = 5
#: The fewest validation images to calibrate on: 5 folds of 10 held-out images. On fewer, a fold's
#: figures move by a tenth or more with a single image, and one temperature fitted on a handful of
#: images is as likely to hurt as help (a check that cannot tell is no check): T = 1 is kept.
MIN_IMAGES = FOLDS * 10
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
    >>> round(fit_temperature(logits, torch.tensor([0, 1, 1, 0])), 1)  # half wrong: flatten as far as allowed
    5.0
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


def folds(labels: torch.Tensor, count: int = FOLDS) -> torch.Tensor:
    """The fold of each image: images sorted by label and dealt in turn, so each fold holds every class alike.

    Deterministic (every process computes the same folds from the same gathered labels).

    >>> folds(torch.tensor([1, 0, 1, 0, 1]), count=2).tolist()
    [0, 0, 1, 1, 0]
    """
    key = labels if labels.ndim == 1 else labels.argmax(dim=1)  # label sets: by their first label
    order = torch.argsort(key, stable=True)
    assigned = torch.empty(len(labels), dtype=torch.long)
    assigned[order] = torch.arange(len(labels)) % count
    return assigned


def held_out_temperatures(logits: torch.Tensor, labels: torch.Tensor, count: int = FOLDS) -> torch.Tensor:
    """Each image's temperature fitted on the other folds: what the image gets when it was not seen."""
    logits, labels = _check(logits, labels)
    fold = folds(labels, count)
    out = torch.ones(len(labels), dtype=torch.float64)
    for k in range(count):
        held = fold == k
        out[held] = fit_temperature(logits[~held], labels[~held])
    return out


def checked_temperature(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """The temperature to keep and why: fitted on all images if held-out folds confirm it lowers ECE, else 1.

    >>> checked_temperature(torch.tensor([[3.0, 0.0]] * 20), torch.tensor([0, 1] * 10))["temperature"]
    1.0
    """
    logits, labels = _check(logits, labels)
    images = len(labels)
    before = expected_calibration_error(logits, labels)
    decision = {"temperature": 1.0, "fitted": None, "images": images, "folds": 0, "ece": before}
    if images < MIN_IMAGES:
        decision["reason"] = (
            f"temperature 1 kept: {images} validation images, fewer than the {MIN_IMAGES} a {FOLDS}-fold "
            "held-out check needs"
        )
        decision["ece_calibrated"] = before
        return decision
    fitted = fit_temperature(logits, labels)
    scaled = logits.double() / held_out_temperatures(logits, labels)[:, None]
    after = calibration_error(scaled.numpy(), labels.numpy(), N_BINS)
    decision |= {"fitted": fitted, "folds": FOLDS, "ece_held_out": after}
    check = f"held-out ECE {before:.3g} -> {after:.3g} ({FOLDS} folds of {images} validation images)"
    if after < before:
        decision |= {"temperature": fitted, "ece_calibrated": after, "reason": f"temperature {fitted:.3g}: {check}"}
    else:
        decision |= {"ece_calibrated": before, "reason": f"temperature 1 kept: fitted {fitted:.3g} but {check}"}
    return decision


def calibrate(model, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Fit temperature scaling where held-out folds confirm it, store it in the config for `classify`.

    The calibrated ECE reported is the held-out one (each image scored at the temperature fitted
    without it), so it is not flattered by the images it was fitted on; with T = 1 kept it is the
    plain ECE. Returns the metrics and, under "calibration", the decision for recipe.json and the card.
    """
    decision = checked_temperature(logits, labels)
    model.config.calibration_temperature = decision["temperature"]
    logger.info("Calibration: %s", decision["reason"])
    return {
        "eval_ece": decision["ece"],
        "eval_ece_calibrated": decision["ece_calibrated"],
        "eval_temperature": decision["temperature"],
        "calibration": decision,
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


def _f1(chosen: torch.Tensor, positive: torch.Tensor) -> float:
    hits = float((chosen & positive).sum())
    return 2 * hits / max(1.0, float(chosen.sum() + positive.sum()))


def checked_thresholds(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """Per-class thresholds to keep and why: a class's fitted threshold where held-out folds confirm it, else 0.5.

    For each class, the F1 of every image decided at the threshold fitted without its fold is set
    against the F1 at 0.5 on the same images; the threshold fitted on all images is kept where the
    first is higher.

    >>> checked_thresholds(torch.zeros(10, 2), torch.ones(10, 2))["thresholds"]
    [0.5, 0.5]
    """
    logits = torch.as_tensor(logits).detach().double().cpu()
    targets = torch.as_tensor(targets).detach().cpu()
    fitted = fit_thresholds(logits, targets)
    images, classes = logits.shape
    decision = {"thresholds": [DEFAULT_THRESHOLD] * classes, "fitted": fitted, "images": images, "folds": 0}
    if images < MIN_IMAGES:
        decision["reason"] = (
            f"thresholds 0.5 kept: {images} validation images, fewer than the {MIN_IMAGES} a {FOLDS}-fold "
            "held-out check needs"
        )
        return decision
    fold = folds(targets, FOLDS)
    held_out = torch.empty_like(logits)
    for k in range(FOLDS):
        held = fold == k
        held_out[held] = torch.tensor(fit_thresholds(logits[~held], targets[~held]), dtype=torch.float64)
    probabilities, positive = torch.sigmoid(logits), targets > 0.5
    kept, f1 = [], {}
    for c in range(classes):
        at_fitted = _f1(probabilities[:, c] >= held_out[:, c], positive[:, c])
        at_default = _f1(probabilities[:, c] >= DEFAULT_THRESHOLD, positive[:, c])
        f1[c] = (at_default, at_fitted)
        if at_fitted > at_default:
            decision["thresholds"][c] = fitted[c]
            kept.append(c)
    decision |= {"folds": FOLDS, "kept": kept, "held_out_f1": f1}
    decision["reason"] = (
        f"fitted thresholds kept for {len(kept)} of {classes} classes, where they raised the held-out F1 "
        f"({FOLDS} folds of {images} validation images); 0.5 for the others"
    )
    return decision


def chosen_thresholds(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """The thresholds `checked_thresholds` keeps: what every evaluation scores at, as the final one saves."""
    return checked_thresholds(logits, targets)["thresholds"]


def tune_thresholds(model, logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """Per-class thresholds where held-out folds confirm them (0.5 elsewhere), stored in the config for `classify`.

    Multi-label scores are sigmoids, one per class, so there is no softmax temperature to fit:
    the thresholds are what turns scores into label sets. The figures computed at them are
    measured on the split they were fitted on, so they are optimistic for the classes whose fitted
    threshold was kept. Returns the metrics and, under "calibration", the decision.
    """
    decision = checked_thresholds(logits, targets)
    thresholds = decision["thresholds"]
    model.config.thresholds = thresholds
    logger.info("Thresholds: %s", decision["reason"])
    return {"eval_mean_threshold": sum(thresholds) / len(thresholds), "calibration": decision}
