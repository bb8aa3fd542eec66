"""Hyperparameter search on tiny data: pruning, the trials' table and plot, the best config, resuming."""

from __future__ import annotations

import csv
import json
import logging
import sys

import optuna
import pytest
from conftest import make_image_folder, save_tiny_checkpoint

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.training.recipe import main as train


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


def test_search_prunes_tabulates_plots_and_its_best_config_reruns_to_the_same_metric(tmp_path, caplog):
    folder = tmp_path / "search"
    caplog.set_level(logging.INFO)
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
        "backbone_learning_rate": 1e-5,
        "freeze_depth": 2,
        "unfreeze_at_epoch": None,
        "augmentation": 0.5,
        "label_smoothing_factor": 0.0,
    }
    assert len(study.trials[0].intermediate_values) == 2 and len(study.trials[1].intermediate_values) == 1
    # One line per trial on the console: the trials' own plans and evaluation lines stay quiet.
    said = [record.getMessage() for record in caplog.records if record.name.startswith("hf_resnet")]
    assert [line.split(":")[0] for line in said] == ["Trial 0 (1 of 2)", "Trial 1 (2 of 2)"], said
    assert "learning_rate=0.002" in said[0] and "pruned at step" in said[1]
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
