"""Hyperparameter search on tiny data: pruning, the trials' table and plot, the best config, resuming."""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint

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
        "backbone_ratio": pytest.approx(1e-5 / 2e-3),
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


def _wait_for(path, process=None, seconds: float = 240) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process is not None:
            assert process.poll() is None, process.communicate()[1][-3000:]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_search_is_cleaned_up_by_the_next_start_and_ctrl_c_fails_the_running_trial(tmp_path, capsys, caplog):
    folder = tmp_path / "search"
    flags = run_flags(tmp_path) | dict(max_steps=100000, save_strategy="steps", save_steps=2, eval_strategy="no")
    flags["disable_tqdm"] = True
    command = [
        *("search", "--n_trials", "3", "--output_dir", str(folder)),
        *(part for key, value in flags.items() for part in (f"--{key}", str(value))),
    ]
    env = {**os.environ, "PYTHONPATH": TEST_PYTHONPATH}
    killed = subprocess.Popen(
        [sys.executable, "-m", "hf_resnet", *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # Killed while training, with a checkpoint in the trial's folder to leave behind.
    assert _wait_for(folder / "trials" / "trial-0" / "checkpoint-2", killed)
    killed.kill()
    killed.communicate(timeout=60)

    # Started again (in this process), then Ctrl-C while its first trial trains.
    seen = {}

    def interrupt():
        seen["training"] = _wait_for(folder / "trials" / "trial-1" / "checkpoint-2")
        seen["killed trial's folder"] = (folder / "trials" / "trial-0").exists()
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    code = cli(command)
    sender.join()
    out, err = capsys.readouterr()
    assert seen == {"training": True, "killed trial's folder": False}
    assert code == 130 and "Traceback" not in out + err
    assert "Trial 0 was left running by a search that was killed: marked failed, its folder removed" in caplog.messages
    assert err.strip().splitlines()[-1] == (
        "hf-resnet search: stopped by SIGINT; trial 1 marked failed; resume the search with the same command: "
        f"{shlex.join(['hf-resnet', *command])}"
    )
    study = optuna.load_study(study_name="hf_resnet", storage=f"sqlite:///{folder / 'study.db'}")
    assert [trial.state.name for trial in study.trials] == ["FAIL", "FAIL"]
    assert all(trial.user_attrs["starting_recipe"] for trial in study.trials)  # the run as given, tried again
    assert sorted(path.name for path in folder.iterdir()) == ["study.db"]  # no trial folder left


def test_a_damaged_study_is_one_line_naming_the_file(tmp_path, capsys):
    flags = ["--train_dir", str(tmp_path), "--model_name_or_path", str(tmp_path)]
    garbage, truncated = tmp_path / "garbage", tmp_path / "truncated"
    garbage.mkdir()
    (garbage / "study.db").write_text("not a database\n" * 200)
    truncated.mkdir()
    optuna.create_study(study_name="hf_resnet", storage=f"sqlite:///{truncated / 'study.db'}")
    study_file = truncated / "study.db"
    study_file.write_bytes(study_file.read_bytes()[: study_file.stat().st_size // 3])
    for folder in (garbage, truncated):
        code = cli(["search", "--n_trials", "1", "--output_dir", str(folder), *flags])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1, error
        assert error[0].startswith(f"hf-resnet search: error: {folder / 'study.db'}: not a readable Optuna study (")
        assert error[0].endswith("move it away to start the search over, or give another --output_dir")


def test_search_refuses_a_negative_timeout_and_a_missing_output_dir_in_one_line(tmp_path, capsys):
    assert cli(["search", "--timeout", "-1", "--output_dir", str(tmp_path / "s"), "--train_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "hf-resnet search: error: --timeout -1: must be a number of seconds > 0"
    assert cli(["search", "--n_trials", "1", "--train_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "hf-resnet search: error: --output_dir is required: the folder that holds the search's study, trials and "
        "results"
    ]
    assert not (tmp_path / "s").exists() and not Path("search").exists()


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
