"""Does a student distilled from a larger teacher beat the same student trained on the labels alone?

    python benchmarks/distill.py [--data digits photos] [--teacher_epochs N] [--epochs N] [--seeds 0 1 2]
                                 [--alpha 0.5] [--temperature 4] [--json distill.json]

For each data set, the splits of benchmarks/tuning.py (train and validation for every run, a test split that
nothing sees until the end), then:

- teacher: trained once (seed 0) for `--teacher_epochs`, a bigger network than the student;
- student: the student's recipe on the labels alone, every seed;
- distilled: the same recipe, epochs and seeds, with the teacher (`hf_resnet.distill`).

Every model is scored on the test split with `hf_resnet.evaluate`.

Data sets:

- digits: the embedded run's flags (32 px, its augmentation and rates); the teacher a resnet-50 layout from
  scratch, the student a resnet-18 layout from scratch.
- photos: the photo patches of benchmarks/tuning.py. The student is its checkpoint (the resnet-18 layout
  trained on the digits for `--pretrain_epochs`) fine-tuned with the default recipe for a checkpoint, as
  tuning.py's defaults arm; the teacher a resnet-50 layout pretrained the same way, fine-tuned with every part
  trained at the rates lr-find suggested for the photos (docs/benchmarks.md: head 3.4e-3, backbone 3.6e-4).

Prints a Markdown table per data set (test accuracy, mean and per seed, and the students' share of the
teacher's) and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import hf_resnet

sys.path.insert(0, str(Path(__file__).parent))
from tuning import QUIET, digits_data, photos_data  # noqa: E402

from hf_resnet.data.embedded import embedded_defaults  # noqa: E402

#: Teacher epochs, and the students' (fewer: a student at the data's ceiling could not show a difference).
TEACHER_EPOCHS = {"digits": 8, "photos": 6}
STUDENT_EPOCHS = {"digits": 3, "photos": 6}


def score(folder: Path, test: Path) -> float:
    scored = hf_resnet.evaluate(model=str(folder), test_dir=str(test), output_dir=str(folder / "test"))
    return scored.metrics["test_accuracy"]


def setups(name: str, scratch: Path, args) -> tuple[dict, dict, Path]:
    """(teacher's flags, student's flags, test folder) of a data set."""
    if name == "digits":
        flags, test = digits_data(scratch, args)
        return flags | {"arch": "resnet-50"}, flags | {"arch": "resnet-18"}, test
    flags, test = photos_data(scratch, args)
    checkpoint = scratch / "digits-checkpoint-resnet-50"
    pretrain = embedded_defaults() | {"arch": "resnet-50", "num_train_epochs": args.pretrain_epochs, "seed": 0}
    started = time.perf_counter()
    hf_resnet.finetune(**pretrain | QUIET | {"output_dir": str(checkpoint), "save_strategy": "no"})
    print(
        f"Checkpoint: resnet-50 layout, digits, {args.pretrain_epochs} epochs, {time.perf_counter() - started:.0f} s"
    )
    teacher = {"model_name_or_path": str(checkpoint), "freeze": "none"}
    teacher |= {"learning_rate": 3.4e-3, "backbone_learning_rate": 3.6e-4}
    return flags | teacher, flags, test


def benchmark(name: str, scratch: Path, args) -> dict:
    teacher_flags, student_flags, test = setups(name, scratch, args)
    teacher = scratch / f"{name}-teacher"
    started = time.perf_counter()
    epochs = args.teacher_epochs or TEACHER_EPOCHS[name]
    hf_resnet.finetune(
        **teacher_flags | QUIET | {"num_train_epochs": epochs, "seed": 0, "output_dir": str(teacher)},
        save_strategy="no",
    )
    report = {
        "teacher": {
            "flags": {k: v for k, v in teacher_flags.items() if "dir" not in k and k != "model_name_or_path"},
            "from": "resnet-50 layout pretrained on digits" if "model_name_or_path" in teacher_flags else "scratch",
            "epochs": epochs,
            "test": score(teacher, test),
            "seconds": round(time.perf_counter() - started),
        }
    }
    print(f"[{name}] teacher: test {report['teacher']['test']:.4f} ({report['teacher']['seconds']} s)", flush=True)
    student_flags |= {"num_train_epochs": args.epochs or STUDENT_EPOCHS[name]}
    report["student_flags"] = {k: v for k, v in student_flags.items() if "dir" not in k}
    report["distillation"] = {"alpha": args.alpha, "temperature": args.temperature}
    report["arms"] = {"student": {}, "distilled": {}}
    for seed in args.seeds:
        for arm in ("student", "distilled"):
            folder = scratch / f"{name}-{arm}-{seed}"
            flags = student_flags | QUIET | {"seed": seed, "output_dir": str(folder), "save_strategy": "no"}
            started = time.perf_counter()
            if arm == "distilled":
                hf_resnet.distill(
                    teacher=str(teacher), distill_alpha=args.alpha, distill_temperature=args.temperature, **flags
                )
            else:
                hf_resnet.finetune(**flags)
            tested = score(folder, test)
            report["arms"][arm][seed] = {"test": tested, "seconds": round(time.perf_counter() - started)}
            print(f"[{name}] {arm} seed {seed}: test {tested:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return report


def table(name: str, report: dict, seeds: list[int]) -> str:
    teacher = report["teacher"]["test"]
    model = report["teacher"]["flags"].get("arch", "resnet-50 checkpoint")
    lines = [
        f"\n{name}: test accuracy, {len(seeds)} seeds",
        f"| model | test accuracy, mean | per seed ({', '.join(map(str, seeds))}) | share of the teacher's |",
        "| --- | --- | --- | --- |",
        f"| teacher ({model}, {report['teacher']['epochs']:g} epochs) | {teacher:.4f} | seed 0 only | 100% |",
    ]
    for arm, runs in report["arms"].items():
        tests = [runs[seed]["test"] for seed in seeds]
        mean = statistics.mean(tests)
        per_seed = ", ".join(f"{v:.4f}" for v in tests)
        lines.append(f"| {arm} | {mean:.4f} | {per_seed} | {100 * mean / teacher:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=("digits", "photos"), default=["digits"])
    parser.add_argument("--teacher_epochs", type=float, default=None, help="teacher's epochs (default: per data)")
    parser.add_argument("--epochs", type=float, default=None, help="every student's epochs (default: per data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alpha", type=float, default=0.5, help="--distill_alpha")
    parser.add_argument("--temperature", type=float, default=4.0, help="--distill_temperature")
    parser.add_argument(
        "--pretrain_epochs", type=float, default=2, help="photos: digits epochs of the checkpoints (as tuning.py)"
    )
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.data:
            results[name] = benchmark(name, Path(scratch), args)
            print(table(name, results[name], args.seeds), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    print(f"\nMachine: {machine}")
    for name in args.data:
        print(table(name, results[name], args.seeds))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, **results}, indent=2, default=str))


if __name__ == "__main__":
    main()
