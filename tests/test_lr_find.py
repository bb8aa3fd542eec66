"""The learning-rate range test: real sweeps of the run on tiny data, one and two processes."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_PYTHONPATH, launch_command, make_image_folder, save_tiny_checkpoint

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.tuning.lr_find import rule_for, suggest, valley

SUGGESTION = re.compile(r"Suggested rates: head (\S+), backbone (\S+)")


def run_flags(tmp_path: Path) -> list[str]:
    train = make_image_folder(tmp_path / "photos", per_class=12)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    return ["--train_dir", str(train), "--model_name_or_path", str(checkpoint), "--per_device_train_batch_size", "8"]


def test_valley_is_inside_the_longest_descent_and_the_peak_of_a_schedule_where_the_loss_stops_falling():
    rates = [10.0**e for e in range(-6, 2)]
    losses = [2.0, 1.9, 1.5, 1.0, 0.6, 0.5, 3.0, 9.0]
    assert rates[1] <= valley(rates, losses) < rates[5]  # inside the descent, below the minimum's rate
    assert suggest(rates, losses, rule_for("constant")) == valley(rates, losses)
    assert suggest(rates, losses, rule_for("cosine")) == rates[5]


def test_lr_find_plots_suggests_rates_inside_the_sweep_and_leaves_the_output_dir_alone(tmp_path, capsys, caplog):
    flags = run_flags(tmp_path) + ["--freeze", "embedder", "--output_dir", str(tmp_path / "real_run")]
    sweep = ["--num_steps", "12", "--start_lr", "1e-5", "--end_lr", "1", "--plot", str(tmp_path / "lr.png")]
    caplog.set_level(logging.INFO)
    assert cli(["lr-find", *sweep, *flags]) == 0
    printed = capsys.readouterr().out
    said = [record.getMessage() for record in caplog.records if record.name.startswith("hf_resnet")]
    assert [line.split(":")[0] for line in said] == [
        "Sweep of the head (every part in the run's ratio)",
        "Sweep of the backbone (head held)",
    ], said  # one line per sweep: the sweeps' own plans stay quiet
    assert "Evaluation at" not in printed and "{'loss'" not in printed
    head, backbone = (float(x) for x in SUGGESTION.search(printed).groups())
    assert 1e-5 <= head <= 1 and 1e-5 <= backbone <= 1
    command = printed.split("Train with them:\n")[1].strip()
    assert command.startswith("hf-resnet train --train_dir") and f"--learning_rate {head:.2g}" in command
    assert f"--backbone_learning_rate {backbone:.2g}" in command
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((tmp_path / "lr.json").read_text())
    assert len(curves["head"]["rates"]) == len(curves["head"]["losses"]) > 2
    assert curves["backbone"]["rates"][0] == 1e-5
    assert not (tmp_path / "real_run").exists()


def test_the_sweep_stops_once_the_loss_diverges_and_a_frozen_backbone_is_not_swept(tmp_path):
    train = make_image_folder(tmp_path / "photos", per_class=12)
    result = hf_resnet.lr_find(
        train_dir=str(train),
        model_name_or_path=str(save_tiny_checkpoint(tmp_path / "tiny-resnet")),
        freeze="embedder,stage1,stage2,stage3,stage4",
        per_device_train_batch_size=8,
        num_steps=40,
        start_lr=1e-3,
        end_lr=1e6,
        plot=None,
    )
    assert len(result.head.rates) < 40  # stopped when the smoothed loss passed 4x its minimum
    assert result.backbone is None and result.backbone_learning_rate is None
    assert 1e-3 <= result.head_learning_rate <= 1e6


@pytest.mark.parametrize(("command", "own_flag"), [("lr-find", "--num_steps"), ("search", "--n_trials")])
def test_lr_find_and_search_help_answer_without_torch(command, own_flag):
    code = (
        f"import sys; from hf_resnet.cli import main; main([{command!r}, '--help']); assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert own_flag in text and "train --help lists them" in text


def test_two_processes_agree_on_one_suggestion_from_the_averaged_loss(tmp_path):
    script = tmp_path / "lr_find_script.py"
    script.write_text("import sys\nfrom hf_resnet.cli import main\nsys.exit(main(['lr-find', *sys.argv[1:]]))\n")
    sweep = ["--num_steps", "8", "--start_lr", "1e-4", "--end_lr", "1", "--plot", str(tmp_path / "lr.png")]
    command, env = launch_command(script, [*sweep, *run_flags(tmp_path)], processes=2)
    done = subprocess.run(command, env=env | {"PYTHONPATH": TEST_PYTHONPATH}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(SUGGESTION.findall(done.stdout)) == 1  # printed by rank 0 only
    curves = json.loads((tmp_path / "lr.json").read_text())
    assert 1e-4 <= curves["head_learning_rate"] <= 1
