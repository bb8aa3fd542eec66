"""The weight average (`--ema_decay`): its recurrence, its evaluation beside the trained weights, its checkpoints."""

import json

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file
from transformers import ResNetForImageClassification, TrainerCallback

import hf_resnet
from hf_resnet.training.ema import EMA_FILE, WeightAverage

FAST = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, report_to="none", disable_tqdm=True)


def _set_all(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.fill_(value)


def test_the_average_starts_at_the_weights_and_follows_decay_times_average_plus_the_rest_times_weights():
    model = ResNetForImageClassification(tiny_config())
    average = WeightAverage(model, decay=0.75)
    _set_all(model, 4.0)
    average.on_train_begin(None, None, None)
    average.on_step_end(None, None, None)  # the first update copies
    expected = 4.0
    for value in (8.0, 0.0, 2.0):
        _set_all(model, value)
        average.on_step_end(None, None, None)
        expected = 0.75 * expected + 0.25 * value
    weights = average.weights()
    assert weights["classifier.1.weight"].unique().tolist() == [pytest.approx(expected)]
    # BatchNorm running statistics are averaged with the parameters, so the averaged network stands alone.
    assert weights["resnet.embedder.embedder.normalization.running_mean"].unique().tolist() == [
        pytest.approx(expected)
    ]
    with average.swapped_in():
        assert model.classifier[1].weight.unique().tolist() == [pytest.approx(expected)]
    assert model.classifier[1].weight.unique().tolist() == [2.0]  # the trained weights are back, exactly


class StopAfterFirstEpoch(TrainerCallback):
    """An interruption at the epoch's checkpoint, with the schedule of the whole run."""

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_training_stop = True


@pytest.fixture
def averaged_run(tiny_checkpoint, image_folders, tmp_path):
    train, val = image_folders
    result = hf_resnet.finetune(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "ema"),
        num_train_epochs=2,
        backbone_learning_rate=1e-2,
        ema_decay=0.6,
        **FAST,
    )
    return result.output_dir


def test_every_evaluation_scores_the_average_beside_the_trained_weights(averaged_run):
    state = json.loads((averaged_run / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_accuracy" in entry]
    assert len(evaluations) == 2
    assert all("eval_ema_accuracy" in entry and "eval_ema_loss" in entry for entry in evaluations)
    assert any(entry["eval_ema_loss"] != entry["eval_loss"] for entry in evaluations)


def test_the_run_keeps_the_better_weights_and_says_which_in_the_recipe_results_and_card(averaged_run):
    choice = json.loads((averaged_run / "recipe.json").read_text())["recipe"]["ema"]
    results = json.loads((averaged_run / "eval_results.json").read_text())
    assert choice["decay"] == 0.6 and choice["metric"] == "accuracy"
    assert (choice["trained"], choice["averaged"]) == (results["eval_trained_accuracy"], results["eval_ema_accuracy"])
    assert choice["kept"] == ("ema" if choice["averaged"] > choice["trained"] else "trained")
    assert results["eval_accuracy"] == results[f"eval_{choice['kept']}_accuracy"]
    # The saved model is the kept weights of the last step, as checkpointed.
    last = averaged_run / "checkpoint-18"
    saved = load_file(str(averaged_run / "model.safetensors"))
    if choice["kept"] == "ema":
        kept = {name.removeprefix("module."): t for name, t in load_file(str(last / EMA_FILE)).items()}
    else:
        kept = load_file(str(last / "model.safetensors"))
    assert all(torch.equal(saved[name], kept[name]) for name in saved)
    assert "Weight average (EMA, decay 0.6)" in (averaged_run / "README.md").read_text()


def test_a_resumed_run_averages_exactly_as_an_uninterrupted_one(
    averaged_run, tiny_checkpoint, image_folders, tmp_path
):
    train, val = image_folders
    common = dict(
        model_name_or_path=str(tiny_checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "resumed"),
        backbone_learning_rate=1e-2,
        ema_decay=0.6,
        **FAST,
    )
    hf_resnet.finetune(num_train_epochs=2, callbacks=[StopAfterFirstEpoch()], **common)
    assert not (tmp_path / "resumed" / "checkpoint-18").exists()
    hf_resnet.finetune(num_train_epochs=2, resume_from_checkpoint="last", **common)
    straight = load_file(str(averaged_run / "checkpoint-18" / EMA_FILE))
    resumed = load_file(str(tmp_path / "resumed" / "checkpoint-18" / EMA_FILE))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight), "the average drifted on resume"
    assert int(resumed["n_averaged"]) == 18
