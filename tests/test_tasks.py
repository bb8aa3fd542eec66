"""The task objects: each problem type's loss, metrics, fitting, mixing, answers and report, asked directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import PretrainedConfig

from hf_resnet.config.arguments import ResNetTrainingArguments
from hf_resnet.data.arguments import DataArguments
from hf_resnet.tasks import MULTI_LABEL, SINGLE_LABEL, MultiLabel, SingleLabel, task_for
from hf_resnet.tasks.multi_label import stored_thresholds

LABELS = ["cat", "dog", "fox"]


def _config(**settings) -> PretrainedConfig:
    return PretrainedConfig(
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}, **settings
    )


class _Model(torch.nn.Module):
    """Just a config, which is all fitting writes to."""

    def __init__(self, config):
        super().__init__()
        self.config = config


def test_a_task_is_picked_by_name_by_config_or_by_config_json():
    assert isinstance(task_for(MULTI_LABEL), MultiLabel) and isinstance(task_for(SINGLE_LABEL), SingleLabel)
    assert isinstance(task_for(None), SingleLabel)
    assert isinstance(task_for(_config(problem_type=MULTI_LABEL)), MultiLabel)
    assert isinstance(task_for(_config(problem_type="regression")), SingleLabel)  # as the pipeline reads it
    assert isinstance(task_for({"problem_type": MULTI_LABEL}), MultiLabel) and isinstance(task_for({}), SingleLabel)
    with pytest.raises(ValueError, match="problem type 'multilabel': choose single_label_classification or multi"):
        task_for("multilabel")


def test_each_task_trains_with_its_own_loss_and_class_weights():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    classes = torch.tensor([0, 2])
    expected = torch.nn.functional.cross_entropy(logits, classes, label_smoothing=0.1)
    assert torch.isclose(SingleLabel().loss(0.1)((logits,), classes), expected)
    rows = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weight = torch.tensor([1.0, 3.0, 0.5])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, rows, pos_weight=weight)
    assert torch.isclose(MultiLabel().loss(0.0, weight)((logits,), rows), expected)

    args = ResNetTrainingArguments(output_dir="unused", class_weights="balanced")
    single_weights, _ = SingleLabel().balance([0, 0, 0, 1], ["a", "b"], args)
    assert single_weights.tolist() == pytest.approx([4 / 6, 2.0])  # n / (C * n_c)
    multi_weights, _ = MultiLabel().balance(
        np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]), ["a", "b"], args
    )
    assert multi_weights.tolist() == pytest.approx([1 / 3, 3.0])  # images without / with the class


def test_mixing_gives_soft_one_hot_targets_for_classes_and_mixed_rows_for_label_sets():
    torch.manual_seed(0)
    images = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    mix = SingleLabel().batch_mix(3, DataArguments(mixup_alpha=1.0))
    _, soft = mix(images, torch.tensor([0, 2]))
    assert soft.shape == (2, 3) and torch.allclose(soft.sum(dim=1), torch.ones(2)) and soft[:, 1].eq(0).all()
    mix = MultiLabel().batch_mix(3, DataArguments(cutmix_alpha=1.0))
    _, soft = mix(images, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert torch.allclose(soft[0, 0], soft[0, 1]) and torch.isclose(soft[0, 0] + soft[0, 2], torch.tensor(1.0))
    assert SingleLabel().batch_mix(3, DataArguments()) is None and MultiLabel().batch_mix(3, DataArguments()) is None


def test_fitting_stores_a_temperature_or_one_threshold_per_class_in_the_config():
    single = _Model(_config())
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    figures = SingleLabel().fit(single, logits, torch.tensor([0, 1, 1, 2]))  # one confident mistake in four
    assert single.config.calibration_temperature == figures["eval_temperature"] == 1.0  # four images: too few
    assert (
        figures["eval_ece_calibrated"] == figures["eval_ece"]
        and "4 validation images" in figures["calibration"]["reason"]
    )
    many = SingleLabel().fit(single, logits.repeat(25, 1), torch.tensor([0, 1, 1, 2]).repeat(25))
    assert single.config.calibration_temperature == many["eval_temperature"] > 1.0
    assert many["eval_ece_calibrated"] < many["eval_ece"]

    multi = _Model(_config(problem_type=MULTI_LABEL))
    rows = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    figures = MultiLabel().fit(multi, torch.tensor([[2.0, -1.0, 0.0]] * 4) * rows - 1.0, rows)
    assert len(multi.config.thresholds) == 3 and multi.config.thresholds[2] == 0.5  # no positives: the sigmoid's cut
    assert figures["eval_mean_threshold"] == pytest.approx(sum(multi.config.thresholds) / 3)


def test_a_multi_label_run_keeps_its_best_model_by_map_unless_it_asked_for_a_multi_label_metric():
    args = ResNetTrainingArguments(output_dir="unused", metric_for_best_model="accuracy")
    assert MultiLabel().best_model_args(args).metric_for_best_model == "map"
    assert SingleLabel().best_model_args(args).metric_for_best_model == "accuracy"
    exact = ResNetTrainingArguments(output_dir="unused", metric_for_best_model="exact_match")
    assert MultiLabel().best_model_args(exact).metric_for_best_model == "exact_match"


def test_each_task_knows_its_metric_names_and_refuses_the_others_naming_its_own():
    assert SingleLabel().metric_names("accuracy,f1_macro") == ["accuracy", "f1_macro"]
    assert MultiLabel().metric_names(None) == ["map", "f1_micro", "f1_macro", "exact_match"]
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['accuracy'\]; a multi-label model is scored by map"):
        MultiLabel().metric_names("accuracy")
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['map'\]; choose from accuracy"):
        SingleLabel().metric_names("map")


def test_single_label_answers_rank_every_class_by_calibrated_softmax():
    config = _config(calibration_temperature=2.0)
    scores = SingleLabel().scores(torch.tensor([[2.0, 0.0, 4.0]]), config)[0]
    assert torch.allclose(scores, torch.softmax(torch.tensor([1.0, 0.0, 2.0]), dim=0))
    answer = SingleLabel().answer(scores, config, top_k=2)
    assert [entry["label"] for entry in answer] == ["fox", "cat"]
    assert answer[0]["score"] == pytest.approx(float(scores[2]))
    assert SingleLabel().label_set(scores, config) == [2]


def test_multi_label_answers_hold_every_label_at_or_above_its_stored_threshold():
    config = _config(problem_type=MULTI_LABEL, thresholds={"dog": 0.3})  # cat and fox: the default 0.5
    scores = MultiLabel().scores(torch.tensor([[1.0, -1.0, 0.5]]), config)[0]  # sigmoids 0.73, 0.27, 0.62
    assert torch.allclose(scores, torch.sigmoid(torch.tensor([1.0, -1.0, 0.5])))
    assert [entry["label"] for entry in MultiLabel().answer(scores, config, top_k=None)] == ["cat", "fox"]
    assert [entry["label"] for entry in MultiLabel().answer(scores, config, top_k=1)] == ["cat"]
    assert MultiLabel().label_set(scores, config) == [0, 2]
    nothing = MultiLabel().scores(torch.tensor([[-5.0, -5.0, -4.0]]), config)[0]
    assert MultiLabel().answer(nothing, config, top_k=None) == []
    assert MultiLabel().label_set(nothing, config) == [2]  # explain still draws the top label


def test_a_label_over_its_own_threshold_is_answered_before_a_higher_score_under_its_threshold():
    config = _config(problem_type=MULTI_LABEL, thresholds={"dog": 0.2, "fox": 0.9})  # cat: the default 0.5
    scores = MultiLabel().scores(torch.tensor([[0.5, -1.0, 1.0]]), config)[0]  # sigmoids 0.62, 0.27, 0.73
    answer = MultiLabel().answer(scores, config, top_k=None)
    assert [entry["label"] for entry in answer] == ["cat", "dog"]  # fox scores highest but misses its 0.9
    assert answer[1]["score"] == pytest.approx(float(torch.sigmoid(torch.tensor(-1.0))))
    assert MultiLabel().label_set(scores, config) == [0, 1]


def test_stored_thresholds_read_every_form_a_config_may_hold():
    assert stored_thresholds(_config()) is None
    assert stored_thresholds(_config(thresholds=0.3)) == [0.3] * 3
    assert stored_thresholds(_config(thresholds=[0.1, 0.2, 0.3])) == [0.1, 0.2, 0.3]
    assert stored_thresholds(_config(thresholds={"fox": 0.7})) == [0.5, 0.5, 0.7]
    with pytest.raises(ValueError, match="one probability per label \\(3\\)"):
        MultiLabel().check(_config(thresholds=[0.1, 0.2]))


def test_each_task_reports_per_class_with_its_own_figure_and_card_table():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    single = SingleLabel().per_class_report(logits, np.array([0, 1, 1]), LABELS)
    assert single["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    table = "\n".join(SingleLabel().card_per_class(single))
    assert "| dog | 1.000 | 0.500 | 0.667 | 2 |" in table and "(confusion_matrix.png)" in table
    assert "- Most frequent confusion: dog taken for cat (1 of 2 images)." in SingleLabel().card_limitations(single)

    rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    multi = MultiLabel().per_class_report(logits, rows, LABELS)
    assert multi["support"] == [2, 2, 0] and multi["average_precision"][2] is None
    table = "\n".join(MultiLabel().card_per_class(multi))
    assert "| fox | n/a | 0 |" in table and "(average_precision.png)" in table
    assert MultiLabel().card_limitations(multi) == [] and not SingleLabel().has_per_class(multi)


def test_evaluation_numbers_and_mistakes_follow_the_task():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    classes = torch.tensor([0, 2, 2])
    report = SingleLabel().per_class_report(logits.numpy(), classes.numpy(), LABELS)
    measured = SingleLabel().measure(logits, classes, ["accuracy"], report, _config())
    assert measured["accuracy"] == pytest.approx(2 / 3) and measured["recall/fox"] == 0.5 and measured["samples"] == 3
    assert [i for i, _ in SingleLabel().mistakes(logits, classes, _config(), LABELS, shown=5)] == [1]

    config = _config(problem_type=MULTI_LABEL, thresholds=[0.6, 0.6, 0.6])
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    measured = MultiLabel().measure(logits, rows, ["exact_match"], {}, config)
    assert measured["exact_match"] == pytest.approx(2 / 3) and measured["mean_threshold"] == 0.6
    (index, caption), *rest = MultiLabel().mistakes(logits, rows, config, LABELS, shown=5)
    assert not rest and index == 1 and caption.endswith("missed fox (50%)")


def test_export_compares_label_sets_for_multi_label_models_only():
    reference = torch.tensor([[3.0, -3.0, 0.1], [1.0, -1.0, -2.0]])
    candidate = torch.tensor([[3.0, -3.0, -0.1], [1.0, -1.0, -2.0]])
    assert SingleLabel().compare(reference, candidate, _config()) == {}
    compared = MultiLabel().compare(reference, candidate, _config(problem_type=MULTI_LABEL))
    assert compared["top1_agreement"] is None and compared["label_set_agreement"] == 0.5
    assert compared["max_score_diff"] == pytest.approx(float(2 * torch.sigmoid(torch.tensor(0.1)) - 1), abs=1e-6)


def test_the_demo_shows_the_top_k_or_the_label_set():
    answer = [{"label": "fox", "score": 0.8}, {"label": "cat", "score": 0.4}, {"label": "dog", "score": 0.1}]
    assert SingleLabel().shown(answer, {}, top_k=2) == answer[:2]
    assert MultiLabel().shown(answer, {"fox": 0.9, "cat": 0.3, "dog": 0.05}, top_k=1) == answer[1:]


def test_only_the_multi_label_task_marks_a_model_config():
    config = _config()
    SingleLabel().configure(config)
    assert config.problem_type is None
    MultiLabel().configure(config)
    assert config.problem_type == MULTI_LABEL and isinstance(task_for(config), MultiLabel)
