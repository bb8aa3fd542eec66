"""Time the embedded default exactly as the Quick start runs it, and check its figures.

    python benchmarks/embedded_default.py [--runs 2]

Runs `accelerate launch recipes/finetune.py` with no arguments in a scratch folder (fresh
digits cache included, so the one-off PNG generation is timed too), and prints wall time,
its share of the 5-minute budget, and the held-out accuracy against the 0.90 target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 300.0
TARGET_ACCURACY = 0.90


def run_once() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(ROOT / "recipes" / "finetune.py"),
        ]
        env = {**os.environ, "HF_RESNET_CACHE": os.path.join(scratch, "cache"), "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(command, cwd=scratch, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        results = json.loads((Path(scratch) / "outputs" / "digits-resnet18" / "eval_results.json").read_text())
    return seconds, results["eval_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    for index in range(args.runs):
        seconds, accuracy = run_once()
        print(
            f"run {index + 1}: {seconds:.1f} s ({seconds / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget), "
            f"held-out accuracy {accuracy:.4f} (target {TARGET_ACCURACY})"
        )


if __name__ == "__main__":
    main()
