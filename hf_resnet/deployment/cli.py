"""`hf-resnet deploy-report`: the parser only; torch and the runtimes load when the command runs."""

from __future__ import annotations

import argparse
import sys


def _deploy_report(args: argparse.Namespace) -> int:
    from .report import deploy_report

    try:
        report = deploy_report(
            args.runs,
            test_dir=args.test_dir,
            output_dir=args.output_dir,
            max_latency_ms=args.max_latency_ms,
            max_size_mb=args.max_size_mb,
            min_accuracy=args.min_accuracy,
            calibration_dir=args.calibration_dir,
            repeats=args.repeats,
            batch_repeats=args.batch_repeats,
            batch_size=args.batch_size,
            fresh_process=not args.no_fresh_process,
        )
    except ValueError as error:  # DeploymentError, DataError, ModelLoadError: the user's input, named
        print(f"hf-resnet deploy-report: {error}", file=sys.stderr)
        return 2
    from .report import markdown_table

    for run in dict.fromkeys(result.run for result in report.results):
        print(run)
        print(markdown_table([vars(r) for r in report.results if r.run == run]))
        for note in report.notes.get(run, []):
            print(f"  {note}")
    print(f"Report, JSON and plot: {report.output_dir}/")
    if report.miss:
        print(report.miss, file=sys.stderr)
        return 1
    if report.choice is not None:
        print(f"chosen: {report.choice.run} {report.choice.form} {report.choice.path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `deploy-report`.

    >>> parser = argparse.ArgumentParser(prog="hf-resnet")
    >>> register(parser.add_subparsers(required=True))
    >>> parser.parse_args(["deploy-report", "runs/a", "runs/b", "--test_dir", "photos/test"]).runs
    ['runs/a', 'runs/b']
    """
    parser = subparsers.add_parser(
        "deploy-report",
        help="every deployable form of some runs side by side: accuracy, agreement, size, memory, latency",
        description="For each run and each form it can take here (PyTorch fp32, bf16 where the CPU has native "
        "bf16, ONNX fp32 and int8, OpenVINO fp32 and int8 with the openvino extra, CUDA fp16 and bf16 with a GPU), "
        "measure accuracy on the test images, agreement with the run's fp32 answers, file size, peak memory and "
        "time to the first answer of a fresh serving process, latency p50/p95 at batch 1 and images/s at a batch. "
        "Writes report.md, report.json and accuracy_latency.png. With a budget, names the most accurate form "
        "that fits, or exits 1 naming the closest.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="model folders written by hf-resnet train")
    parser.add_argument(
        "--test_dir", "--test-dir", required=True, help="held-out images, one sub-folder per class (as evaluate)"
    )
    parser.add_argument(
        "--output_dir", "--output-dir", default="deploy_report", help="where the report goes (default: deploy_report)"
    )
    parser.add_argument(
        "--max_latency_ms", "--max-latency-ms", type=float, default=None, help="budget: batch-1 p50 latency, ms"
    )
    parser.add_argument("--max_size_mb", "--max-size-mb", type=float, default=None, help="budget: file size, MB")
    parser.add_argument(
        "--min_accuracy", "--min-accuracy", type=float, default=None, help="budget: accuracy on the test images (0-1)"
    )
    parser.add_argument(
        "--calibration_dir",
        "--calibration-dir",
        default=None,
        help="images to calibrate int8 on (default: some of the run's training images, else the test images)",
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed batch-1 runs per latency figure (default: 50)")
    parser.add_argument(
        "--batch_repeats", "--batch-repeats", type=int, default=5, help="timed batches per throughput (default: 5)"
    )
    parser.add_argument("--batch_size", "--batch-size", type=int, default=32, help="throughput batch (default: 32)")
    parser.add_argument(
        "--no_fresh_process",
        "--no-fresh-process",
        action="store_true",
        help="skip the fresh serving process per form (no first-answer time or peak memory)",
    )
    parser.set_defaults(func=_deploy_report)
