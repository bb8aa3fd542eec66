"""Do the rates `hf-resnet lr-find` suggests (and the search's best) train as well as the defaults? Digits, 3 seeds.

    python benchmarks/tuning_digits.py [--epochs 3] [--seeds 0 1 2] [--num_steps 100] [--search_trials 0]

The embedded digits run (resnet-18 layout from scratch, 32 px) with its own flags, shortened to
`--epochs` so the comparison is not made at the accuracy ceiling: first with the default rates,
then with the rates one range test suggests (run once, with the first seed), and with
`--search_trials N`, the best recipe of a search of N trials (seed 0), every seed alike.
Prints a Markdown table of held-out accuracy (mean and each seed) and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch

import hf_resnet
from hf_resnet.data.embedded import embedded_defaults


def accuracy(seed: int, epochs: float, folder: str, **rates) -> float:
    flags = embedded_defaults() | {"num_train_epochs": epochs, "seed": seed, "output_dir": folder}
    result = hf_resnet.finetune(**flags | rates, keep_examples=False, report_to="none")
    return result.metrics["eval_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_steps", type=int, default=100)
    parser.add_argument("--search_trials", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        found = hf_resnet.lr_find(
            **embedded_defaults() | {"seed": args.seeds[0]}, num_steps=args.num_steps, plot=f"{scratch}/lr.png"
        )
        find_s = time.perf_counter() - started
        suggested = {"learning_rate": found.head_learning_rate}
        if found.backbone_learning_rate is not None:
            suggested["backbone_learning_rate"] = found.backbone_learning_rate
        arms = {"defaults": {}, "lr-find suggestion": suggested}
        if args.search_trials:
            flags = embedded_defaults() | {"num_train_epochs": args.epochs, "output_dir": f"{scratch}/search"}
            found_best = hf_resnet.search(n_trials=args.search_trials, **flags)
            arms[f"search best of {args.search_trials}"] = found_best.best_flags
            print(f"Search best: {found_best.best_flags}")
        results = {
            name: [accuracy(seed, args.epochs, f"{scratch}/{name}-{seed}", **rates) for seed in args.seeds]
            for name, rates in arms.items()
        }
    defaults = embedded_defaults()
    cpu = platform.processor() or platform.machine()
    print(f"\nCPU: {cpu}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"Range test: {args.num_steps} steps per sweep, {find_s:.0f} s; suggested {suggested}")
    print(f"Default rates: learning_rate {defaults['learning_rate']} (backbone: the same, from scratch)\n")
    print(f"| rates | accuracy, mean of {len(args.seeds)} seeds | per seed ({', '.join(map(str, args.seeds))}) |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        print(f"| {name} | {statistics.mean(values):.4f} | {', '.join(f'{v:.4f}' for v in values)} |")
    print(json.dumps({"suggested": suggested, "results": results, "epochs": args.epochs}))


if __name__ == "__main__":
    main()
