"""Output folders: one run writes a folder at a time, and nothing the package did not write is replaced."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from conftest import make_image_folder, save_tiny_checkpoint
from transformers import TrainerCallback

import hf_resnet
from hf_resnet.config.checks import ArgumentError, lock_output_dir, validate
from hf_resnet.config.run_folder import CARD_MARKER, STAGING_DIR, FolderLock, lock_holder
from hf_resnet.hub.card import write_model_card
from hf_resnet.training import recipe

FAST = dict(per_device_train_batch_size=8, report_to="none", disable_tqdm=True, keep_examples=False)


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    """A tiny checkpoint and image folders, and the arguments of a run that would work."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")
    train = make_image_folder(tmp_path / "train", per_class=6)
    val = make_image_folder(tmp_path / "val", per_class=2, seed=1)
    return dict(
        model_name_or_path=str(checkpoint),
        train_dir=str(train),
        validation_dir=str(val),
        output_dir=str(tmp_path / "out"),
        **FAST,
    )


def _validate(**kwargs):
    return validate(*recipe.arguments_from(kwargs))


def test_files_the_package_did_not_write_are_refused_before_any_work_and_kept(setup, tmp_path):
    out = Path(setup["output_dir"])
    out.mkdir()
    (out / "README.md").write_text("# My notes on this folder\n")
    with pytest.raises(ArgumentError, match=r"holds README\.md that hf_resnet did not write.*move it elsewhere"):
        _validate(**setup)
    with pytest.raises(ArgumentError, match="README.md that hf_resnet did not write"):  # replacing a run replaces no
        _validate(**setup, overwrite_output_dir=True)  # file of the user's either
    (out / "README.md").write_text(f"---\nlicense: mit\n---\n{CARD_MARKER}\n\n# A card this package wrote\n")
    _validate(**setup)  # its own card is rewritten

    (out / "config.json").write_text("{}")  # someone's config, in a folder that holds no run of this package
    with pytest.raises(ArgumentError, match=r"holds config\.json that hf_resnet did not write"):
        _validate(**setup)

    # The card's writer keeps a README.md it did not write, wherever it is called from (training's end, a push).
    (out / "README.md").write_text("# My own card\n")
    write_model_card(out)
    assert (out / "README.md").read_text() == "# My own card\n"


def test_a_second_run_into_a_folder_being_written_is_one_line_and_exit_2(setup, tmp_path, capfd):
    out = Path(setup["output_dir"])
    argv = [f"--{key}={value}" for key, value in setup.items()]
    with FolderLock(out):  # what a run's main process holds while it writes the folder
        assert lock_holder(out) == f"process {os.getpid()} on {socket.gethostname()}"
        code = recipe.main(argv)
    errors = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and errors == [
        f"hf-resnet train: error: --output_dir {out}: another run is writing it (process {os.getpid()} on "
        f"{socket.gethostname()}); wait for it to end, or pass another --output_dir"
    ]
    assert lock_holder(out) is None  # released with the process's hold on it; the lock file stays
    assert sorted(path.name for path in out.iterdir()) == [".hf_resnet.lock"]


class SecondRun(TrainerCallback):
    """A second run into the folder while the first trains, tried at validation and at the lock; keeps the answers."""

    def __init__(self, kwargs: dict):
        # Made before training: building TrainingArguments mid-run would reset the running one's accelerator state.
        self.arguments = recipe.arguments_from(kwargs)
        self.arguments[2].device  # noqa: B018  (the device is set up now, not mid-run)
        self.holder, self.refusals = None, []

    def on_step_end(self, args, state, control, **kwargs):
        if self.holder is None:
            self.holder = lock_holder(Path(args.output_dir))
            for attempt in (lambda: validate(*self.arguments), lambda: lock_output_dir(self.arguments[2])):
                with pytest.raises(ArgumentError) as refusal:
                    attempt()
                self.refusals.append(str(refusal.value))


def test_a_run_holds_its_folder_until_it_ends_and_a_resume_clears_a_killed_save(setup):
    out = Path(setup["output_dir"])
    steps = dict(save_strategy="steps", save_steps=2, eval_strategy="no")
    second = SecondRun(setup)

    hf_resnet.finetune(**setup, **steps, max_steps=2, callbacks=[second])

    assert second.holder == f"process {os.getpid()} on {socket.gethostname()}"
    assert len(second.refusals) == 2 and all("another run is writing it" in text for text in second.refusals)
    assert lock_holder(out) is None
    assert CARD_MARKER in (out / "README.md").read_text()
    # Two runs that passed validate at once: the later one to take the lock finds the other's results and stops.
    with pytest.raises(ArgumentError, match="holds a previous run"):
        lock_output_dir(recipe.arguments_from(setup)[2])
    assert lock_holder(out) is None

    (out / STAGING_DIR / "checkpoint-5").mkdir(parents=True)  # a save cut off by a kill, at a step never saved again
    (out / STAGING_DIR / "checkpoint-5" / "model.safetensors").write_bytes(b"cut off")
    hf_resnet.finetune(**setup, **steps, max_steps=3, resume_from_checkpoint="last")

    assert not (out / STAGING_DIR).exists()
    assert sorted(path.name for path in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]


def test_overwrite_says_it_removed_a_previous_run_only_where_there_was_one(tmp_path, caplog):
    from hf_resnet.config import run_folder

    caplog.set_level("WARNING", logger="hf_resnet")
    run_folder.start(tmp_path / "new", {"seed": 1}, replace=True)  # a folder that never held a run
    assert "removed the previous run" not in caplog.text
    previous = tmp_path / "previous"
    (previous / "checkpoint-5").mkdir(parents=True)
    (previous / "all_results.json").write_text("{}")
    run_folder.start(previous, {"seed": 1}, replace=True)
    assert "--overwrite_output_dir: removed the previous run's checkpoints and results in" in caplog.text
    assert not (previous / "checkpoint-5").exists() and not (previous / "all_results.json").exists()
