"""Threads and precision: what the machine has, what the user told `accelerate launch`, and who wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint

from hf_resnet.runtime import hardware
from hf_resnet.runtime.hardware import native_bf16_cpu, physical_cores
from hf_resnet.runtime.launcher import LauncherChoices, decide_threads, launcher_choices
from hf_resnet.runtime.precision import default_precision

PYTHON = "/usr/bin/python3"
LAUNCH = [PYTHON, "-m", "accelerate.commands.launch"]
SCRIPT = ["recipes/finetune.py", "--train_dir", "photos"]


@pytest.fixture
def no_config(tmp_path):
    """An empty accelerate config file, so a developer's own default config cannot decide the test."""
    path = tmp_path / "accelerate.yaml"
    path.write_text("{}\n")
    return ["--config_file", str(path)]


def test_accelerate_launch_defaults_are_not_user_choices(no_config):
    choices = launcher_choices([*LAUNCH, *no_config, "--num_processes", "1", *SCRIPT], environ={})
    assert choices == LauncherChoices(launched=True)
    threads, why = decide_threads(choices, {"OMP_NUM_THREADS": "1"}, cores=4, processes=2)
    assert threads == 2 and why == "4 physical cores / 2 processes; accelerate launch had set 1"


def test_what_the_user_told_the_launcher_wins(no_config, tmp_path):
    told = [*LAUNCH, *no_config, "--num_cpu_threads_per_process", "3", "--mixed_precision", "no", *SCRIPT]
    choices = launcher_choices(told, environ={})
    assert decide_threads(choices, {"OMP_NUM_THREADS": "3"}, cores=8, processes=1) == (
        3,
        "accelerate launch --num_cpu_threads_per_process=3",
    )
    assert default_precision(False, False, "amx_bf16", choices) == (
        False,
        False,
        "accelerate launch --mixed_precision=no",
    )
    by_environment = launcher_choices(
        ["/venv/bin/accelerate", "launch", *no_config, *SCRIPT], {"OMP_NUM_THREADS": "5"}
    )
    assert decide_threads(by_environment, {}, cores=8, processes=1)[0] == 5
    config = tmp_path / "bf16.yaml"
    config.write_text("mixed_precision: bf16\n")
    by_config = launcher_choices([*LAUNCH, "--config_file", str(config), *SCRIPT], environ={})
    assert default_precision(False, False, None, by_config)[:2] == (True, False)


def test_without_a_launcher_omp_num_threads_is_the_users_choice():
    assert launcher_choices(["bash"], environ={}) == LauncherChoices()
    assert decide_threads(LauncherChoices(), {"OMP_NUM_THREADS": "1"}, cores=8, processes=1)[0] == 1
    assert decide_threads(LauncherChoices(), {}, cores=8, processes=1) == (8, "8 physical cores / 1 process")


def test_default_precision_follows_the_hardware():
    nobody = LauncherChoices()
    assert default_precision(False, False, "avx512_bf16", nobody) == (
        True,
        False,
        "CPU with native bf16 (avx512_bf16)",
    )
    assert default_precision(False, False, None, nobody) == (False, False, "CPU without native bf16 instructions")
    assert default_precision(True, True, None, nobody)[:2] == (True, False)
    assert default_precision(True, False, None, nobody)[:2] == (False, True)
    assert native_bf16_cpu({"avx2", "fma"}) is None and native_bf16_cpu({"amx_bf16", "avx512f"}) == "amx_bf16"
    # Native instructions are not enough: bf16 must also have measured faster on the CPU itself.
    assert default_precision(False, False, "avx512_bf16", nobody, cpu_speedup=1.6)[:2] == (True, False)
    assert default_precision(False, False, "avx512_bf16", nobody, cpu_speedup=0.87) == (
        False,
        False,
        "CPU has avx512_bf16, but bf16 measured 0.87x fp32's speed here",
    )


def test_the_bf16_speed_probe_is_measured_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "CACHE_FILE", tmp_path / "cpu_precision.json")
    first = hardware.cpu_bf16_speedup(1)
    assert first > 0 and json.loads(hardware.CACHE_FILE.read_text()) == {
        f"{hardware.cpu_model()} | torch {torch.__version__} | 1 threads": first
    }
    monkeypatch.setattr(hardware, "_probe_seconds", lambda bf16: pytest.fail("measured again"))
    assert hardware.cpu_bf16_speedup(1) == first


def _launch_tiny(tmp_path, launcher_flags: list[str]) -> dict:
    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    photos = make_image_folder(tmp_path / "photos", per_class=8)
    out = tmp_path / f"out{len(launcher_flags)}"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ACCELERATE_MIXED_PRECISION")}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # no accelerate config file: the launcher's own defaults apply
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher_flags]
    flags = ["--model_name_or_path", str(checkpoint), "--train_dir", str(photos), "--output_dir", str(out)]
    result = subprocess.run(
        [*command, str(ROOT / "recipes" / "finetune.py"), *flags, "--num_train_epochs", "1"],
        env={**env, "PYTHONPATH": TEST_PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    recipe = json.loads((out / "recipe.json").read_text())["recipe"]
    assert recipe["threads"] in result.stdout + result.stderr  # said in the start-up summary too
    return recipe


def test_a_launched_run_trains_on_every_core_in_the_precision_the_cpu_runs_natively(tmp_path):
    recipe = _launch_tiny(tmp_path, ["--num_processes", "1"])
    cores = physical_cores()
    assert recipe["threads"].startswith(f"threads: {cores} ({cores} physical cores / 1 process")
    cpu_bf16 = native_bf16_cpu()
    speedup = hardware.cpu_bf16_speedup(cores) if cpu_bf16 else None
    bf16, _, why = default_precision(False, False, cpu_bf16, LauncherChoices(launched=True), speedup)
    assert recipe["precision"] == f"{'bf16 autocast' if bf16 else 'fp32'} ({why})"


def test_a_launched_run_keeps_the_users_threads_and_precision(tmp_path):
    recipe = _launch_tiny(
        tmp_path, ["--num_processes", "1", "--num_cpu_threads_per_process", "1", "--mixed_precision", "no"]
    )
    assert recipe["threads"] == "threads: 1 (accelerate launch --num_cpu_threads_per_process=1)"
    assert recipe["precision"] == "fp32 (accelerate launch --mixed_precision=no)"
