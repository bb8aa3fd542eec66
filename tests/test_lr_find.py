"""The learning-rate range test: real sweeps of the run on tiny data, one and two processes."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_PYTHONPATH, launch_command, make_image_folder, save_tiny_checkpoint

import hf_resnet
from hf_resnet.cli import main as cli
from hf_resnet.tuning.lr_find import NO_VALLEY, chosen_rate, read_curve, smoothed

RATES = re.compile(r"Rates: head (\S+) \((\w+)\), backbone (\S+) \((\w+)\)")
#: 100 steps from fastai's 1e-7 to 10, as the default sweep.
SWEEP = [1e-7 * 1e8 ** (i / 99) for i in range(100)]


def noisy(curve, spread=0.05, seed=0):
    rng = random.Random(seed)
    return [value + rng.gauss(0, spread) for value in curve]


def clean_valley(rate: float) -> float:
    """Flat to 1e-4, falling to a third by 1e-2, exploding after."""
    decade = math.log10(rate)
    if decade < -4:
        return 1.0
    return 1.0 - 0.35 * (decade + 4) if decade < -2 else 0.3 * 10 ** (1.2 * (decade + 2))


def run_flags(tmp_path: Path) -> list[str]:
    train = make_image_folder(tmp_path / "photos", per_class=12)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny-resnet")
    return ["--train_dir", str(train), "--model_name_or_path", str(checkpoint), "--per_device_train_batch_size", "8"]


def test_a_clean_valley_is_read_by_fastais_three_rules_inside_the_descent_before_the_divergence():
    sweep = read_curve(SWEEP, noisy([clean_valley(rate) for rate in SWEEP]), "valley")
    assert sweep.clear and sweep.drop > 2 * sweep.noise
    assert SWEEP[sweep.cut] > 1e-2 and sweep.cut < len(SWEEP)  # cut where the smoothed loss passed 4x its lowest
    assert 1e-4 < sweep.suggestion < 1e-2 and sweep.suggestion == sweep.suggestions["valley"]
    lowest = SWEEP[min(range(sweep.cut), key=sweep.losses.__getitem__)]
    assert sweep.suggestions["minimum"] == pytest.approx(lowest / 10)
    assert 1e-4 < sweep.suggestions["steep"] < 1e-1
    assert read_curve(SWEEP, sweep.raw, "steep").suggestion == sweep.suggestions["steep"]


def test_a_flat_start_then_an_explosion_has_no_clear_valley_and_the_explosion_does_not_leak_back():
    raw = noisy([0.7 if rate < 0.1 else 0.7 * (rate / 0.1) ** 2 for rate in SWEEP])
    sweep = read_curve(SWEEP, raw, "valley")
    assert sweep.suggestion is None and sweep.drop <= 2 * sweep.noise
    flat = [i for i, rate in enumerate(SWEEP) if rate < 0.1]
    assert sweep.losses[: len(flat)] == smoothed(raw[: len(flat)])  # forward only: the future changes nothing
    assert max(sweep.losses[: len(flat)]) < 0.8
    rate, source, notes = chosen_rate(sweep, 1e-3, 1.0, "head", "--learning_rate")
    assert (rate, source) == (1e-3, "kept") and notes[0].startswith(f"head: {NO_VALLEY} (--learning_rate 0.001)")


def test_a_backbone_rate_above_the_heads_is_capped_at_the_heads_and_said():
    sweep = read_curve(SWEEP, noisy([clean_valley(rate) for rate in SWEEP]), "valley")
    rate, source, notes = chosen_rate(sweep, 1e-5, 1.0, "backbone", "--backbone_learning_rate", sweep.suggestion / 2)
    assert (rate, source) == (sweep.suggestion / 2, "capped") and "capped at the head's rate" in notes[0]
    unscaled = chosen_rate(sweep, 1e-5, 2.0, "backbone", "--backbone_learning_rate", 1.0)
    assert unscaled == (sweep.suggestion / 2, "suggested", [])  # the flag's rate, before --lr_scaling's x2


def test_lr_find_on_a_tiny_random_resnet_suggests_near_the_defaults_or_keeps_them_and_leaves_the_output_dir_alone(
    tmp_path, capsys, caplog
):
    flags = run_flags(tmp_path) + ["--freeze", "embedder", "--output_dir", str(tmp_path / "real_run")]
    caplog.set_level(logging.INFO)
    assert cli(["lr-find", "--num_steps", "40", "--plot", str(tmp_path / "lr.png"), *flags]) == 0
    printed = capsys.readouterr().out
    said = [record.getMessage() for record in caplog.records if record.name.startswith("hf_resnet")]
    assert [line.split(":")[0] for line in said] == [
        "Sweep of the head (every part in the run's ratio)",
        "Sweep of the backbone (head held)",
    ], said  # one line per sweep: the sweeps' own plans stay quiet
    assert "Evaluation at" not in printed and "{'loss'" not in printed
    head, head_source, backbone, backbone_source = RATES.search(printed).groups()
    head, backbone = float(head), float(backbone)
    if head_source == "kept":
        assert head == 1e-3 and f"head: {NO_VALLEY} (--learning_rate 0.001)" in printed
    else:
        assert head_source == "suggested" and 1e-4 <= head <= 1e-2  # within 10x of the default 1e-3
    assert backbone <= head
    if backbone_source == "kept":
        assert f"backbone: {NO_VALLEY} (--backbone_learning_rate 1e-05)" in printed
    assert "Rule: minimum, fastai's minimum" in printed  # auto: the default cosine schedule anneals from the rate
    command = printed.split("Train with them:\n")[1].strip()
    assert command.startswith("hf-resnet train --train_dir") and f"--learning_rate {head:.2g}" in command
    assert f"--backbone_learning_rate {backbone:.2g}" in command
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = json.loads((tmp_path / "lr.json").read_text())
    assert len(curves["head"]["rates"]) == len(curves["head"]["losses"]) > 2
    assert set(curves["head"]["suggestions"]) == {"valley", "minimum", "steep"}
    assert curves["sources"] == {"head": head_source, "backbone": backbone_source}
    assert curves["backbone"]["rates"][0] == 1e-7
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
    assert len(RATES.findall(done.stdout)) == 1  # printed by rank 0 only
    curves = json.loads((tmp_path / "lr.json").read_text())
    assert 1e-4 <= curves["head_learning_rate"] <= 1
