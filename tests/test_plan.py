"""A run is a plan: what `--dry_run` shows is what the run then does and records, and a dry run leaves nothing.

One tiny fine-tuning setup (a local checkpoint, three shape classes) is dry-run and then trained for real by the
command line in this process; lr-find and search dry-run the same setup; a multi-label dry run counts its classes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import label_sets, make_image_folder, make_multi_label_folder, save_tiny_checkpoint, tiny_config

import hf_resnet
from hf_resnet.cli import main as cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("plan")
    train = make_image_folder(root / "train", per_class=6, seed=1)
    # Unequal classes, so a count taken from the wrong split or class cannot match.
    validation = make_image_folder(root / "val", per_class=3, seed=2)
    (validation / "vbar" / "vbar_000.png").unlink()
    flags = [
        "--model_name_or_path",
        str(save_tiny_checkpoint(root / "ckpt")),
        "--train_dir",
        str(train),
        "--validation_dir",
        str(validation),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "2",
        # Scaled rates and a decayed backbone: the plan must show the rates after both, as the run applies them.
        "--lr_scaling",
        "linear",
        "--backbone_learning_rate",
        "1e-3",
        "--backbone_lr_decay",
        "0.5",
        "--freeze",
        "embedder",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]
    return {"root": root, "flags": flags}


def test_a_dry_run_shows_what_the_real_run_records_and_writes_nothing(setup, capsys):
    out = setup["root"] / "out"
    flags = [*setup["flags"], "--output_dir", str(out)]
    assert cli(["train", *flags, "--dry_run"]) == 0
    shown = capsys.readouterr().out
    assert not out.exists()  # not created, not even empty
    assert shown.startswith("Dry run: nothing was trained or written.")

    assert cli(["train", *flags]) == 0
    capsys.readouterr()
    recorded = json.loads((out / "recipe.json").read_text())
    recipe = recorded["recipe"]
    rates = recipe["learning_rates"]
    assert rates["head"] == pytest.approx(1e-3 * 8 / 256) and rates["backbone"] == pytest.approx(1e-3 * 8 / 256)
    by_part = {"head": rates["head"], "stage4": rates["backbone"], "stage3": rates["backbone"] * 0.5}
    by_part |= {"stage2": rates["backbone"] * 0.25, "stage1": rates["backbone"] * 0.125}
    assert recipe["frozen"] == ["embedder"]
    assert f"frozen: embedder; learning rates: {', '.join(f'{p} {r:g}' for p, r in by_part.items())}\n" in shown
    height, width = recipe["image_size"]
    assert f"\nimages: {height}x{width} (crop)\n" in shown
    assert f"\nprecision: {recipe['precision']}\n" in shown
    assert recorded["images"] == {"train": 18, "validation": 8}
    assert recorded["images_per_class"] == {
        "train": {"circle": 6, "hbar": 6, "vbar": 6},
        "validation": {"circle": 3, "hbar": 3, "vbar": 2},
    }
    for split, counts in recorded["images_per_class"].items():
        assert f"\n  {split}: {', '.join(f'{label} {count}' for label, count in counts.items())}\n" in shown
    assert f"{recorded['images']['train']} train / {recorded['images']['validation']} validation images" in shown
    assert f"batch: 4 per device x 2 accumulation x 1 processes = {recipe['batch_size']} per optimizer step" in shown
    assert f"output: {out} (new run)" in shown and "\nafter training: fits a calibration temperature\n" in shown
    seconds = float(shown.split("time per epoch: about ")[1].split(" s ")[0])
    assert 0 < seconds < 60  # 18 images of 32 px on a few thousand parameters

    # The folder now holds that run: a second dry run says what the real one would, in the same words.
    assert cli(["train", *flags, "--dry_run"]) == 2
    refused = capsys.readouterr().err
    assert cli(["train", *flags]) == 2
    assert capsys.readouterr().err == refused and refused.count("\n") == 1 and "holds a previous run" in refused
    assert cli(["train", *flags, "--overwrite_output_dir", "--dry_run"]) == 0
    assert "(replaces the previous run there (--overwrite_output_dir))" in capsys.readouterr().out
    assert json.loads((out / "recipe.json").read_text()) == recorded  # the dry run replaced nothing


def test_lr_find_and_search_dry_runs_plan_their_first_run_and_write_nothing(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["lr-find", *setup["flags"], "--num_steps", "5", "--plot", "sweep.png", "--dry_run"]) == 0
    shown = capsys.readouterr().out
    assert "frozen: embedder; learning rates: head " in shown and "time per epoch: about " in shown
    assert "lr-find would sweep 5 steps from 1e-07 to 10 in a temporary folder (above) and write sweep.png" in shown
    search = tmp_path / "search"
    assert cli(["search", *setup["flags"], "--n_trials", "2", "--output_dir", str(search), "--dry_run"]) == 0
    shown = capsys.readouterr().out
    assert "\n  validation: circle 3, hbar 3, vbar 2\n" in shown and "The search would run 2 trials" in shown
    assert not search.exists() and list(Path(tmp_path).iterdir()) == []


def test_a_multi_label_dry_run_counts_each_image_once_and_each_class_it_holds(tmp_path):
    train = make_multi_label_folder(tmp_path / "train", count=24)
    out = tmp_path / "out"
    result = hf_resnet.finetune(
        config=tiny_config(), train_dir=str(train), output_dir=str(out), dry_run=True, report_to="none"
    )
    data = result.plan.data
    assert not out.exists() and data.task.multi_hot
    assert data.sizes["train"] + data.sizes["validation"] == 24  # every image once, the empty label set too
    every = Counter(label for labels in label_sets(24) for label in labels)
    assert Counter(data.counts["train"]) + Counter(data.counts["validation"]) == every
    assert result.metrics["train_epoch_seconds_estimate"] > 0
    assert "\nafter training: fits a decision threshold per class\n" in result.plan.summary()
