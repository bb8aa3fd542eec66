"""What a run folder says about itself: base model, license, data, precision, status, and nothing stale or local.

One run shares most assertions: fine-tuned from a local checkpoint on a `DatasetDict` with its own validation
split, under bf16 autocast, stopped by Ctrl-C after its second step, scored by `hf-resnet evaluate` into its own
folder, then resumed to its end with `--license`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import save_tiny_checkpoint, shape_image
from huggingface_hub import HfApi
from test_card import make_run_folder, read_card
from test_hub import TOKEN, hub  # noqa: F401  (the local Hub fixture)
from transformers import AutoConfig, TrainerCallback

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.config import run_folder
from hf_resnet.config.recipe_file import portable_description
from hf_resnet.data.arguments import DataArguments
from hf_resnet.hub.card import inherited_license, write_model_card
from hf_resnet.hub.push import files_to_push, portable_files, push
from hf_resnet.inference.demo import read_facts

CLASSES = ["circle", "hbar", "vbar"]
#: Keys every evaluation measures anew (timings), so they cannot agree between two of them.
TIMINGS = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def _split(count: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    labels = [i % len(CLASSES) for i in range(count)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": [shape_image(c, rng) for c in labels], "label": labels}, features)


class CtrlCAtStep(TrainerCallback):
    """Ctrl-C to this very process once training reaches `step`, as a user's terminal sends it."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The run folder at its end ("run"), a copy of it as the stop left it ("stopped"), its data and their root."""
    root = tmp_path_factory.mktemp("records")
    base = save_tiny_checkpoint(root / "my-ckpt")
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A base model\n")
    data = datasets.DatasetDict({"train": _split(18, seed=1), "validation": _split(12, seed=2)})
    run = root / "run"
    flags = dict(
        dataset=data,
        model_name_or_path=str(base),
        output_dir=str(run),
        num_train_epochs=2,
        per_device_train_batch_size=6,
        per_device_eval_batch_size=8,
        bf16=True,  # the autocast a CPU with native bf16 trains in by default
        report_to="none",
        disable_tqdm=True,
    )
    stopped = hf_resnet.finetune(**flags, callbacks=[CtrlCAtStep(1)])
    assert stopped.interrupted_at == 2  # the step that saw the request finishes first
    # The stopped weights, scored into the run folder as `hf-resnet evaluate --model RUN` does by default.
    hf_resnet.evaluate(str(run), dataset=data["validation"], batch_size=8)
    assert (run / "test_results.json").is_file()
    stopped_copy = shutil.copytree(run, root / "stopped")  # the folder as the stop left it
    finished = hf_resnet.finetune(**flags, resume_from_checkpoint="last", license="cc-by-4.0")
    assert finished.interrupted_at is None
    return {"root": root, "run": run, "stopped": stopped_copy, "data": data}


def _recipe(folder: Path) -> dict:
    return json.loads((folder / "recipe.json").read_text())


def test_a_fine_tune_of_a_local_checkpoint_names_it_by_its_folder_and_never_says_from_scratch(runs):
    run = runs["run"]
    metadata, body = read_card(run / "README.md")
    assert "from scratch" not in body and "fine-tuned from local checkpoint my-ckpt" in body
    assert "It inherits the biases of the data its base model was pretrained on." in body
    facts = read_facts(run, AutoConfig.from_pretrained(run))  # the demo page's facts
    assert facts.base_model == "fine-tuned from local checkpoint my-ckpt"
    assert _recipe(run)["base_model"] == "local checkpoint my-ckpt"
    assert str(runs["root"]) not in (run / "recipe.json").read_text()  # its path is not recorded


def test_the_license_comes_from_the_base_models_card_and_license_sets_it(runs):
    stopped = _recipe(runs["stopped"])  # before --license: the local checkpoint's README front matter
    assert (stopped["license"], stopped["license_from"]) == (
        "apache-2.0",
        "inherited from the card of local checkpoint my-ckpt",
    )
    recipe = _recipe(runs["run"])
    assert (recipe["license"], recipe["license_from"]) == ("cc-by-4.0", "--license")
    metadata, body = read_card(runs["run"] / "README.md")
    assert metadata["license"] == "cc-by-4.0" and "- License: cc-by-4.0 (--license)" in body


def test_a_hub_base_models_license_is_read_from_its_card_on_the_hub(hub, tmp_path):  # noqa: F811
    api = HfApi(token=TOKEN)
    api.create_repo("user/base-resnet")
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n# Base\n", path_in_repo="README.md", repo_id="user/base-resnet"
    )
    assert inherited_license("user/base-resnet") == ("mit", "inherited from the card of user/base-resnet")
    license, why = inherited_license("user/no-such-model")
    assert license == "other" and why.startswith("the card of user/no-such-model could not be read")
    folder = make_run_folder(tmp_path / "run", checkpoint=False)  # a recipe of before licenses were recorded
    recipe = _recipe(folder)
    recipe["model"]["model_name_or_path"] = "user/base-resnet"
    (folder / "recipe.json").write_text(json.dumps(recipe))
    metadata, _ = read_card(write_model_card(folder))
    assert metadata["license"] == "mit"


def test_the_card_names_the_data_and_the_validation_split_actually_used(runs, tmp_path):
    metadata, body = read_card(runs["run"] / "README.md")
    assert "held out" not in (runs["run"] / "README.md").read_text() and "threads: threads" not in body
    validation = metadata["model-index"][0]["results"][0]["dataset"]["name"]
    assert validation == "a DatasetDict passed to finetune() (splits: train, validation), split 'validation'"
    recipe = _recipe(runs["run"])
    assert recipe["validation"] == {"split": "validation"}
    assert f"- threads: {recipe['recipe']['threads']}" in body
    # Folders are named under their data root's name: "train" and "val" alone say nothing.
    train, val = tmp_path / "photos" / "train", tmp_path / "photos" / "val"
    train.mkdir(parents=True), val.mkdir()
    folders = DataArguments(train_dir=str(train), validation_dir=str(val))
    assert portable_description(str(train), folders) == "photos/train"


def test_final_metrics_are_the_saved_models_as_hf_resnet_evaluate_gives_them_exactly(runs, tmp_path):
    run = runs["run"]
    assert _recipe(run)["recipe"]["precision"].startswith("bf16 autocast")  # trained under bf16 autocast
    eval_results = json.loads((run / "eval_results.json").read_text())
    scored = hf_resnet.evaluate(str(run), dataset=runs["data"]["validation"], output_dir=str(tmp_path), batch_size=8)
    expected = {key.removeprefix("eval_"): value for key, value in eval_results.items()}
    got = {key.removeprefix("test_"): value for key, value in scored.metrics.items()}
    shared = set(expected) & set(got) - set(TIMINGS)
    assert {"accuracy", "loss", "ece", "ece_calibrated", "f1_macro", "samples"} <= shared
    assert {key: expected[key] for key in shared} == {key: got[key] for key in shared}  # exactly, not approximately
    assert _recipe(run)["recipe"]["final_metrics_precision"] == "fp32"


def test_what_was_made_from_earlier_weights_is_gone_once_the_weights_change(runs):
    assert (runs["stopped"] / "test_results.json").is_file()  # scored on the stopped weights
    run = runs["run"]
    left = [
        name
        for name in ("test_results.json", "test_per_class.json", "test_confusion_matrix.png")
        if (run / name).exists()
    ]
    assert left == []
    assert not any(key.startswith("test_") for key in json.loads((run / "all_results.json").read_text()))


def test_pushed_trainer_state_names_its_checkpoints_relative_to_a_moved_run_folder(runs, tmp_path):
    moved = Path(shutil.copytree(runs["run"], tmp_path / "elsewhere" / "run"))
    checkpoint = run_folder.checkpoints(moved)[0]  # pushed whole by `--hub_strategy checkpoint`
    assert os.path.isabs(json.loads((checkpoint / "trainer_state.json").read_text())["best_model_checkpoint"])
    pushed = portable_files(files_to_push(moved), moved)
    in_checkpoint = portable_files({"last-checkpoint/trainer_state.json": checkpoint / "trainer_state.json"}, moved)
    for state in (pushed["trainer_state.json"], in_checkpoint["last-checkpoint/trainer_state.json"]):
        content = state if isinstance(state, bytes) else state.read_bytes()
        assert str(runs["root"]).encode() not in content and str(tmp_path).encode() not in content
        assert json.loads(content)["best_model_checkpoint"].startswith("checkpoint-")
    written = json.loads((runs["run"] / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert written.startswith("checkpoint-")  # the run folder's own copy is written relative, too


def test_a_stopped_run_is_marked_unfinished_and_push_refuses_it_unless_asked(runs, capsys):
    stopped = runs["stopped"]
    assert _recipe(stopped)["status"].startswith("unfinished: stopped at step 2 of 6 by a signal")
    assert cli(["push", str(stopped), "--repo", "user/partial"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unfinished" in error and "--allow_unfinished" in error
    assert _recipe(runs["run"])["status"] == "finished"  # the resumed run reached its end
    assert run_folder.unfinished(runs["run"]) is None
    killed = runs["root"] / "killed"  # started, then killed before any record: run_args.json alone
    killed.mkdir()
    (killed / run_folder.RUN_ARGS_FILE).write_text("{}")
    assert run_folder.unfinished(killed).startswith("unfinished: training started here and never finished")


def test_an_unfinished_run_pushes_when_asked_and_its_card_says_so(runs, hub):  # noqa: F811
    push(runs["stopped"], "user/partial", allow_unfinished=True)
    card = hub.files("user/partial")["README.md"].decode()
    assert "> **Unfinished run**: stopped at step 2 of 6 by a signal" in card
