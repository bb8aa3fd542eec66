"""Threads and precision: what the machine has, what the user told `accelerate launch`, and who wins."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TEST_PYTHONPATH, make_image_folder, save_tiny_checkpoint

from hf_resnet.runtime import hardware
from hf_resnet.runtime.hardware import native_bf16_cpu, physical_cores
from hf_resnet.runtime.launcher import LauncherChoices, decide_threads, launcher_choices
from hf_resnet.runtime.precision import cpu_bf16_rule, default_mixed_precision, default_precision

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
    amd = cpu_bf16_rule({"avx512f", "avx512_bf16"}, "AuthenticAMD")
    assert default_precision(False, False, amd, nobody) == (True, False, amd[1])
    assert cpu_bf16_rule({"avx2", "fma"}, "AuthenticAMD") == (False, "CPU without native bf16 instructions")
    assert default_precision(True, True, None, nobody)[:2] == (True, False)
    assert default_precision(True, False, None, nobody)[:2] == (False, True)
    assert native_bf16_cpu({"avx2", "fma"}) is None and native_bf16_cpu({"amx_bf16", "avx512f"}) == "amx_bf16"
    # The rule of docs/benchmarks.md: AMX, and AMD's AVX512-BF16, train faster in bf16; Intel's without AMX slower.
    assert cpu_bf16_rule({"amx_bf16", "avx512_bf16"}, "GenuineIntel")[0]
    assert not cpu_bf16_rule({"avx512_bf16"}, "GenuineIntel")[0]
    assert default_precision(False, False, amd, LauncherChoices(mixed_precision="no", mixed_precision_source="x"))[
        :2
    ] == (False, False)


def test_the_cpu_precision_is_the_same_whatever_the_load(monkeypatch, tmp_path):
    """The decision reads the instruction set alone: a clock running at random speeds (a busy machine) is unread."""
    rng, now = random.Random(0), [0.0]

    def busy_clock() -> float:
        now[0] += rng.choice([1e-4, 1.0])  # each timed step is either instant or stalled by another process
        return now[0]

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(time, "perf_counter", busy_clock)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(hardware, "cpu_vendor", lambda: "AuthenticAMD", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    decisions = set()
    for attempt in range(6):  # as six first runs on six such machines: nothing measured is kept between them
        monkeypatch.setattr(hardware, "CACHE_FILE", tmp_path / f"cache{attempt}.json", raising=False)
        decisions.add(default_mixed_precision())
    assert decisions == {
        (True, False, "AMD CPU with AVX512-BF16: bf16 autocast by rule (whole steps measured faster)")
    }


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
    assert f"threads: {recipe['threads']}\n" in result.stdout + result.stderr  # said once in the start-up summary too
    return recipe


def test_a_launched_run_trains_on_every_core_in_the_precision_the_cpu_runs_natively(tmp_path):
    recipe = _launch_tiny(tmp_path, ["--num_processes", "1"])
    cores = physical_cores()
    assert recipe["threads"].startswith(f"{cores} ({cores} physical cores / 1 process")
    bf16, _, why = default_precision(False, False, cpu_bf16_rule(), LauncherChoices(launched=True))
    assert recipe["precision"] == f"{'bf16 autocast' if bf16 else 'fp32'} ({why})"


def test_a_launched_run_keeps_the_users_threads_and_precision(tmp_path):
    recipe = _launch_tiny(
        tmp_path, ["--num_processes", "1", "--num_cpu_threads_per_process", "1", "--mixed_precision", "no"]
    )
    assert recipe["threads"] == "1 (accelerate launch --num_cpu_threads_per_process=1)"
    assert recipe["precision"] == "fp32 (accelerate launch --mixed_precision=no)"
