"""Temperature scaling recovers a known over-confidence and lowers the calibration error."""

from __future__ import annotations

import math

import pytest
import torch

from hf_resnet.tasks.calibration import MAX_TEMPERATURE, expected_calibration_error, fit_temperature


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
    assert fit_temperature(certain, torch.tensor([0, 1])) < 0.1  # all right: sharpen as far as allowed
    assert fit_temperature(certain, torch.tensor([1, 0])) == pytest.approx(MAX_TEMPERATURE, rel=1e-6)


def test_bad_shapes_and_arguments_are_refused():
    with pytest.raises(ValueError, match="need logits"):
        fit_temperature(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="need logits"):
        expected_calibration_error(torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="temperature > 0"):
        expected_calibration_error(torch.zeros(4, 3), torch.zeros(4), temperature=0.0)
