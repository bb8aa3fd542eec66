"""Do `hf-resnet lr-find`'s rates and `hf-resnet search`'s best recipe train at least as well as the defaults?

    python benchmarks/tuning.py [--data digits photos] [--epochs N] [--seeds 0 1 2] [--num_steps 100]
                                [--suggest auto] [--search_trials 4] [--arms defaults lr-find search]
                                [--plots DIR] [--json tuning.json]

For each data set, three splits: train, validation (what the range test's run, the search and
every run evaluate on, as a user's would) and test, which nothing sees until the end. One range
test and one search (each with the first seed), then every arm trained with every seed for the
same epochs (`--epochs`; by default 3 for the digits, 6 for the photos) and scored on the test split:

- defaults: the run's own flags, nothing tuned;
- lr-find: the same with the rates the range test suggests (`--learning_rate`, and for a
  checkpoint `--backbone_learning_rate`);
- search: the same with the best trial's flags (its first trial is the defaults themselves).

Data sets:

- digits: the embedded run (resnet-18 layout from scratch, 32 px, its own flags); its 1,437
  training scans are split 80/20 (stratified, fixed) into train and validation, and its 360
  validation scans are the test split.
- photos: patches of the three photos shipped in installed wheels (`photo_folder` of
  benchmarks/train_throughput.py; 8-20% of each side, so sky, foliage and plain dark cloth must
  be told apart), one class per photo, 40/30/100 per class for train/validation/test, each drawn
  with its own seed, at 32 px, batch 32, fine-tuned from a checkpoint: the resnet-18 layout trained
  on the digits for `--pretrain_epochs`, the only checkpoint there is offline. Its features were not
  learned on photos, so the default recipe for a checkpoint (stem and stage1 frozen, backbone at
  1e-5) is a guess to improve on.

Prints a Markdown table per data set (test accuracy, mean and per seed) and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import hf_resnet
from hf_resnet.data.embedded import digits_folders, embedded_defaults

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import photo_folder  # noqa: E402

#: Patch sides for the photos: small enough that a patch is often only sky, leaves or cloth.
PATCH_SIDE = (0.08, 0.2)
PHOTO_SPLITS = {"train": (40, 11), "validation": (30, 12), "test": (100, 13)}  # patches per class, seed
PHOTO_SIZE = 32
EPOCHS = {"digits": 3, "photos": 6}
QUIET = dict(report_to="none", disable_tqdm=True, keep_examples=False, logging_strategy="no")


def split_folder(source: Path, root: Path, share: float, seed: int = 0) -> tuple[Path, Path]:
    """Link `share` of each class's images into `root/validation` and the rest into `root/train`."""
    rng = random.Random(seed)
    for label in sorted(p.name for p in source.iterdir() if p.is_dir()):
        files = sorted((source / label).iterdir())
        rng.shuffle(files)
        cut = round(len(files) * share)
        for split, chosen in (("validation", files[:cut]), ("train", files[cut:])):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for file in chosen:
                (root / split / label / file.name).symlink_to(file)
    return root / "train", root / "validation"


def digits_data(scratch: Path, args) -> tuple[dict, Path]:
    """The embedded run's flags on train/validation carved from its training scans; its validation scans as test."""
    train_all, test = digits_folders(scratch / "digits")
    train, validation = split_folder(train_all, scratch / "digits_split", 0.2)
    flags = embedded_defaults() | {"train_dir": str(train), "validation_dir": str(validation)}
    flags.pop("output_dir")
    return flags, test


def photos_data(scratch: Path, args) -> tuple[dict, Path]:
    """Photo patches, and the digits-trained checkpoint to fine-tune from."""
    folders = {
        name: photo_folder(scratch / "photos" / name, per_class, seed=seed, crop_side=PATCH_SIDE)
        for name, (per_class, seed) in PHOTO_SPLITS.items()
    }
    checkpoint = scratch / "digits-checkpoint"
    pretrain = embedded_defaults() | {"num_train_epochs": args.pretrain_epochs, "seed": 0}
    started = time.perf_counter()
    hf_resnet.finetune(**pretrain | QUIET | {"output_dir": str(checkpoint), "save_strategy": "no"})
    seconds = time.perf_counter() - started
    print(f"Checkpoint: resnet-18 layout, digits, {args.pretrain_epochs} epochs, {seconds:.0f} s", flush=True)
    flags = {
        "model_name_or_path": str(checkpoint),
        "train_dir": str(folders["train"]),
        "validation_dir": str(folders["validation"]),
        "image_size": PHOTO_SIZE,
        "per_device_train_batch_size": 32,
    }
    return flags, folders["test"]


DATA = {"digits": digits_data, "photos": photos_data}


def test_accuracy(flags: dict, seed: int, folder: Path, test: Path) -> tuple[float, float]:
    """Train with `flags` and `seed`; (validation accuracy at the end, accuracy on the test split)."""
    result = hf_resnet.finetune(**flags | QUIET | {"seed": seed, "output_dir": str(folder), "save_strategy": "no"})
    scored = hf_resnet.evaluate(model=str(folder), test_dir=str(test), output_dir=str(folder / "test"))
    return result.metrics["eval_accuracy"], scored.metrics["test_accuracy"]


def benchmark(name: str, scratch: Path, args) -> dict:
    flags, test = DATA[name](scratch, args)
    flags |= {"num_train_epochs": args.epochs or EPOCHS[name]}
    report = {"flags": {k: v for k, v in flags.items() if "dir" not in k and k != "model_name_or_path"}}

    started = time.perf_counter()
    found = hf_resnet.lr_find(
        **flags | QUIET | {"seed": args.seeds[0], "output_dir": str(scratch / "unused")},
        num_steps=args.num_steps,
        suggest=args.suggest,
        plot=str(Path(args.plots) / f"lr_find_{name}.png") if args.plots else None,
    )
    suggested = {"learning_rate": found.head_learning_rate}
    if found.backbone is not None:
        suggested["backbone_learning_rate"] = found.backbone_learning_rate
    report["lr_find"] = {
        "suggested": suggested,
        "sources": found.sources,  # suggested, kept (no clear valley: the run's own rate) or capped
        "notes": found.notes,
        "readings": {
            part: sweep.suggestions
            for part, sweep in (("head", found.head), ("backbone", found.backbone))
            if sweep is not None
        },
        "seconds": round(time.perf_counter() - started),
    }
    print(f"[{name}] range test: {report['lr_find']}", flush=True)
    arms = {"defaults": {}}
    if any(source != "kept" for source in found.sources.values()):
        arms["lr-find"] = suggested  # with every rate kept, the lr-find arm would be the defaults again

    if args.search_trials:
        started = time.perf_counter()
        searched = hf_resnet.search(
            n_trials=args.search_trials,
            **flags | QUIET | {"seed": args.seeds[0], "output_dir": str(scratch / f"search_{name}")},
        )
        table = (scratch / f"search_{name}" / "trials.csv").read_text()
        report["search"] = {
            "best_flags": searched.best_flags,
            "best_validation": searched.best_value,
            "trials": table,
            "seconds": round(time.perf_counter() - started),
        }
        print(f"[{name}] search: best {searched.best_value:.4f} with {searched.best_flags}\n{table}", flush=True)
        arms["search"] = searched.best_flags

    report["arms"] = defaultdict(dict)
    for arm, changes in ((arm, changes) for arm, changes in arms.items() if arm in args.arms):
        for seed in args.seeds:
            started = time.perf_counter()
            validation, tested = test_accuracy(flags | changes, seed, scratch / f"{name}-{arm}-{seed}", test)
            report["arms"][arm][seed] = {"validation": validation, "test": tested}
            print(
                f"[{name}] {arm} seed {seed}: validation {validation:.4f}, test {tested:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return report


def table(name: str, report: dict, seeds: list[int]) -> str:
    lines = [
        f"\n{name}: test accuracy, {len(seeds)} seeds",
        f"| arm | test accuracy, mean | per seed ({', '.join(map(str, seeds))}) | validation, mean |",
        "| --- | --- | --- | --- |",
    ]
    for arm, runs in report["arms"].items():
        tests = [runs[seed]["test"] for seed in seeds]
        validations = [runs[seed]["validation"] for seed in seeds]
        per_seed = ", ".join(f"{v:.4f}" for v in tests)
        lines.append(f"| {arm} | {statistics.mean(tests):.4f} | {per_seed} | {statistics.mean(validations):.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["digits", "photos"])
    parser.add_argument("--epochs", type=float, default=None, help="epochs of every run (default: per data set)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_steps", type=int, default=100, help="range test steps per sweep")
    parser.add_argument("--suggest", default="auto", help="lr-find's rule: auto, valley, minimum or steep")
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["defaults", "lr-find", "search"],
        help="arms to train (the defaults are "
        "deterministic per seed: a rerun that changes only the rule can leave them out)",
    )
    parser.add_argument("--search_trials", type=int, default=4, help="trials, the first being the defaults")
    parser.add_argument("--pretrain_epochs", type=float, default=2, help="digits epochs of the photos' checkpoint")
    parser.add_argument("--plots", default=None, help="folder for the range tests' plots and curves")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    reports = {}
    with tempfile.TemporaryDirectory(prefix="tuning_bench_") as scratch:
        for name in args.data:
            reports[name] = benchmark(name, Path(scratch), args)
    print(
        f"\nCPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, ACCELERATE_MIXED_PRECISION={os.environ.get('ACCELERATE_MIXED_PRECISION')}, "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    for name, report in reports.items():
        print(f"{table(name, report, args.seeds)}\nrange test: {report['lr_find']}")
        if "search" in report:
            best = report["search"]
            print(f"search: best validation {best['best_validation']:.4f} with {best['best_flags']}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
