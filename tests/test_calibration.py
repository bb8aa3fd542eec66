"""Temperature scaling recovers a known over-confidence and lowers the calibration error."""

from __future__ import annotations

import math

import pytest
import torch

from hf_resnet.tasks.calibration import (
    MAX_TEMPERATURE,
    MIN_IMAGES,
    MIN_TEMPERATURE,
    checked_temperature,
    checked_thresholds,
    expected_calibration_error,
    fit_temperature,
)


def _calibrated_sample(n: int = 20000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true label distribution: calibrated by construction."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2.0
    labels = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
    return logits, labels


def test_fit_recovers_the_over_confidence_factor():
    logits, labels = _calibrated_sample()
    for factor in (0.5, 1.0, 3.0):
        assert fit_temperature(logits * factor, labels) == pytest.approx(factor, rel=0.05)


def test_fitted_temperature_minimises_validation_nll():
    logits, labels = _calibrated_sample(n=2000, seed=1)
    logits = logits * 2.2
    fitted = fit_temperature(logits, labels)
    grid = torch.linspace(0.5, 6.0, 1101)
    scaled = (logits[None] / grid[:, None, None]).reshape(-1, logits.shape[1])
    losses = torch.nn.functional.cross_entropy(scaled, labels.repeat(len(grid)), reduction="none").view(len(grid), -1)
    losses = losses.mean(dim=1)
    assert fitted == pytest.approx(float(grid[losses.argmin()]), abs=0.01)


def test_scaling_lowers_ece_without_changing_predictions():
    logits, labels = _calibrated_sample(seed=2)
    overconfident = logits * 3.0
    temperature = fit_temperature(overconfident, labels)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(overconfident, labels, temperature=temperature)
    assert before > 0.1
    assert after < 0.02
    assert torch.equal((overconfident / temperature).argmax(-1), overconfident.argmax(-1))


def test_ece_matches_a_hand_computed_value():
    # Two bins used: confidences 0.9 (both right) and 0.6 (one of two right).
    p_high, p_low = 0.9, 0.6
    logits = torch.tensor(
        [[math.log(p_high / (1 - p_high)), 0.0]] * 2 + [[math.log(p_low / (1 - p_low)), 0.0]] * 2, dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 0, 1])
    expected = 0.5 * abs(1.0 - p_high) + 0.5 * abs(0.5 - p_low)
    assert expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(expected, abs=1e-9)
    assert expected_calibration_error(logits * 100, torch.zeros(4, dtype=torch.long)) == pytest.approx(0.0, abs=1e-9)


def test_easy_and_hopeless_sets_stay_within_the_search_range():
    certain = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    assert fit_temperature(certain, torch.tensor([0, 1])) == pytest.approx(MIN_TEMPERATURE, rel=1e-6)  # all right
    assert fit_temperature(certain, torch.tensor([1, 0])) == pytest.approx(MAX_TEMPERATURE, rel=1e-6)


def test_bad_shapes_and_arguments_are_refused():
    with pytest.raises(ValueError, match="need logits"):
        fit_temperature(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="need logits"):
        expected_calibration_error(torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="temperature > 0"):
        expected_calibration_error(torch.zeros(4, 3), torch.zeros(4), temperature=0.0)


def _small_split(images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fine-tuned model's validation logits on a small split: confident, right about 70% of the time."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (images,), generator=generator)
    guessed = torch.where(torch.rand(images, generator=generator) < 0.7, labels, torch.randint(0, 3, (images,)))
    logits = torch.randn(images, 3, generator=generator)
    logits[torch.arange(images), guessed] += 2 + 4 * torch.rand(images, generator=generator)
    return logits, labels


def test_twenty_validation_images_keep_temperature_one_and_say_why():
    for seed in range(20):
        logits, labels = _small_split(20, seed)
        decision = checked_temperature(logits, labels)
        assert decision["temperature"] == 1.0 and decision["ece_calibrated"] == decision["ece"]
        assert f"20 validation images, fewer than the {MIN_IMAGES}" in decision["reason"]


def test_a_kept_temperature_always_lowered_the_held_out_ece_and_the_check_rejects_some():
    outcomes = set()
    for seed in range(30):
        logits, labels = _small_split(60, seed)
        decision = checked_temperature(logits, labels)
        assert MIN_TEMPERATURE <= decision["fitted"] <= MAX_TEMPERATURE
        assert decision["ece_calibrated"] <= decision["ece"]  # reported on held-out folds, never worse
        if decision["temperature"] != 1.0:
            assert decision["ece_held_out"] < decision["ece"] and decision["temperature"] == decision["fitted"]
        outcomes.add(decision["temperature"] == 1.0)
    assert outcomes == {True, False}  # some fits are confirmed by the held-out folds, some are not


def test_a_large_overconfident_split_keeps_its_temperature_on_held_out_evidence():
    logits, labels = _calibrated_sample(n=500, seed=3)
    decision = checked_temperature(logits * 2.5, labels)
    assert decision["temperature"] == pytest.approx(2.5, rel=0.2) and decision["folds"] == 5
    assert decision["ece_calibrated"] == decision["ece_held_out"] < decision["ece"] / 2
    assert decision["reason"].startswith(f"temperature {decision['temperature']:.3g}: held-out ECE")


def test_thresholds_are_kept_only_for_classes_where_held_out_folds_confirm_them():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(200, 2, generator=generator) < 0.3).float()
    # Class 0: present images score just below 0.5, absent ones far below: a lower cut is right.
    # Class 1: scores are noise: a fitted cut only follows the noise of the images it was fitted on.
    logits = torch.stack(
        [
            targets[:, 0] * 3.0 - 3.2 + 0.3 * torch.randn(200, generator=generator),
            torch.randn(200, generator=generator),
        ],
        dim=1,
    )
    decision = checked_thresholds(logits, targets)
    assert decision["thresholds"][0] == decision["fitted"][0] < 0.5 and 0 in decision["kept"]
    assert decision["thresholds"][1] in (0.5, decision["fitted"][1])
    for c, (at_default, at_fitted) in decision["held_out_f1"].items():
        assert (decision["thresholds"][c] == 0.5) == (at_fitted <= at_default)
    few = checked_thresholds(logits[:20], targets[:20])
    assert few["thresholds"] == [0.5, 0.5] and "20 validation images" in few["reason"]
