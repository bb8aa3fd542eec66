"""Hyperparameter search on tiny data: pruning, the trials' table and plot, the best config, resuming."""

from __future__ import annotations

import csv
import json
import sys

import optuna
import pytest
from conftest import make_image_folder, save_tiny_checkpoint

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config.parsing import parse_args
from hf_resnet.training.recipe import main as train
from hf_resnet.tuning.search import _flags_of, default_space, space_for, typed


class PruneTrial(optuna.pruners.BasePruner):
    """Prunes the trials of the given numbers at their first report."""

    def __init__(self, *numbers: int):
        self.numbers = numbers

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers


def run_flags(tmp_path) -> dict:
    train = make_image_folder(tmp_path / "photos", per_class=12)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    return dict(train_dir=str(train), model_name_or_path=str(checkpoint), per_device_train_batch_size=8)


def trials_table(folder) -> list[dict]:
    return list(csv.DictReader((folder / "trials.csv").open()))


def test_search_prunes_tabulates_plots_and_its_best_config_reruns_to_the_same_metric(tmp_path):
    folder = tmp_path / "search"
    result = hf_resnet.search(
        n_trials=2,
        pruner=PruneTrial(1),
        num_train_epochs=2,
        learning_rate=2e-3,
        output_dir=str(folder),
        **run_flags(tmp_path),
    )
    study = optuna.load_study(study_name="hf_resnet", storage=f"sqlite:///{folder / 'study.db'}")
    states = [trial.state.name for trial in study.trials]
    assert states == ["COMPLETE", "PRUNED"]
    # The run as given comes first, at its place in the space: the given head rate, the defaults for the rest.
    start = study.trials[0]
    assert start.user_attrs["starting_recipe"] and start.user_attrs["flags"] == {"learning_rate": 2e-3}
    assert start.params == {
        "learning_rate": 2e-3,
        "backbone_ratio": pytest.approx(1e-5 / 2e-3),
        "freeze_depth": 2,
        "unfreeze_at_epoch": None,
        "augmentation": 0.5,
        "label_smoothing_factor": 0.0,
    }
    assert len(study.trials[0].intermediate_values) == 2 and len(study.trials[1].intermediate_values) == 1
    rows = trials_table(folder)
    assert [row["state"] for row in rows] == ["complete", "pruned"]
    assert float(rows[0]["eval_accuracy"]) == pytest.approx(result.best_value, rel=1e-5)
    assert (folder / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert train(["--config", str(result.config)]) == 0
    rerun = json.loads((folder / "best" / "eval_results.json").read_text())
    assert rerun["eval_accuracy"] == result.best_value


def test_a_search_run_again_resumes_its_study_instead_of_starting_over(tmp_path):
    flags = run_flags(tmp_path) | dict(num_train_epochs=1, output_dir=str(tmp_path / "search"))
    first = hf_resnet.search(n_trials=1, **flags)
    before = trials_table(tmp_path / "search")
    second = hf_resnet.search(n_trials=2, **flags)
    after = trials_table(tmp_path / "search")
    assert (first.trials, second.trials) == (1, 2)
    assert after[0] == before[0]  # the first trial was kept, not run again
    assert after[1]["learning_rate"] != before[0]["learning_rate"]


def test_search_without_optuna_says_how_to_install_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    code = cli(["search", "--n_trials", "1", "--output_dir", str(tmp_path / "s"), "--train_dir", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error == [
        'hf-resnet search: error: hyperparameter search needs Optuna: pip install "hf_resnet[search]"'
    ]


def sampled_recipes(argv: list[str], trials: int = 120) -> list[dict]:
    """The recipes the default space gives for a run (random sampling, no training)."""
    model_args, _, training_args = parse_args(argv)
    space = space_for(model_args, training_args)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    recipes = []
    study.optimize(lambda trial: recipes.append(default_space(trial, space)) or 0.0, n_trials=trials)
    return recipes


@pytest.mark.parametrize("epochs", [1, 2, 10])
@pytest.mark.parametrize("freeze", [None, "none"], ids=["frozen-by-default", "nothing-frozen"])
def test_the_space_never_samples_a_setting_the_run_cannot_apply(tmp_path, epochs, freeze):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    argv = ["--train_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--num_train_epochs", str(epochs)]
    given = ["--freeze", freeze] if freeze else []
    recipes = sampled_recipes([*argv, *given, "--model_name_or_path", str(checkpoint)])
    for recipe in recipes:
        assert 1e-4 <= recipe["learning_rate"] <= 1e-2  # a decade either side of the run's 1e-3
        assert recipe["backbone_learning_rate"] <= recipe["learning_rate"] * (1 + 1e-9)
        if "unfreeze_at_epoch" in recipe:
            assert recipe["freeze"] != "none"  # something to thaw
            assert recipe["unfreeze_at_epoch"] is None or recipe["unfreeze_at_epoch"] < epochs  # before the last epoch
        else:
            assert recipe["freeze"] == "none" or epochs == 1
    unfreezing = {recipe["unfreeze_at_epoch"] for recipe in recipes if "unfreeze_at_epoch" in recipe}
    assert unfreezing == {1: set(), 2: {None, 1}, 10: {None, 1, 2}}[epochs]
    assert {recipe["freeze"] for recipe in recipes} >= {"none", "embedder,stage1,stage2"}
    scratch = sampled_recipes([*argv, "--arch", "resnet-18"], trials=5)
    assert all(set(recipe) == set(scratch[0]) and "freeze" not in recipe for recipe in scratch)


def test_best_yaml_numbers_from_the_command_line_are_numbers(tmp_path):
    argv = ["--train_dir", str(tmp_path), "--num_train_epochs", "1", "--learning_rate", "2e-3", "--freeze", "none"]
    flags = typed(_flags_of(argv), *parse_args([*argv, "--output_dir", str(tmp_path / "out")]))
    assert flags == {"train_dir": str(tmp_path), "num_train_epochs": 1.0, "learning_rate": 2e-3, "freeze": "none"}
