"""Start-up cost: what `import hf_resnet`, `hf-resnet --help` and the public functions pay, against torch+transformers.

    python benchmarks/import_time.py [--rounds 7] [--markdown]

Each case is a fresh interpreter (`python -c ...`, bytecode already cached), timed from launch to exit;
rounds are interleaved (baseline, case 1, case 2, ..., baseline, ...) so load from other processes hits all
alike, and the median of the rounds is reported. The baseline is `import torch, transformers`: what any
transformers-based tool pays before doing anything.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

BASELINE = ("import torch, transformers", "import torch, transformers")
CASES = (
    ("import hf_resnet", "import hf_resnet"),
    ("hf-resnet --help", "import sys; from hf_resnet.cli import main; sys.argv = ['hf-resnet', '--help']; main()"),
    ("hf-resnet train --help", "from hf_resnet.cli import main; main(['train', '--help'])"),
    ("hf_resnet.classify (inference stack)", "import hf_resnet; hf_resnet.classify"),
    ("hf_resnet.finetune (training stack)", "import hf_resnet; hf_resnet.finetune"),
)


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    return time.perf_counter() - start


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print a table for docs/benchmarks.md")
    args = parser.parse_args()
    for _, code in (BASELINE, *CASES):  # warm the bytecode and page caches
        seconds(code)
    times: dict[str, list[float]] = {name: [] for name, _ in (BASELINE, *CASES)}
    for _ in range(args.rounds):
        for name, code in (BASELINE, *CASES):
            times[name].append(seconds(code))
    base = statistics.median(times[BASELINE[0]])
    print(f"CPU: {cpu_model()}; Python {platform.python_version()}; {args.rounds} rounds, median\n")
    print("| what | seconds | x `import torch, transformers` |\n| --- | --- | --- |")
    for name, _ in (BASELINE, *CASES):
        median = statistics.median(times[name])
        print(f"| `{name}` | {median:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
