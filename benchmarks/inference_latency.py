"""ResNet-50 on CPU: transformers pipeline vs `classify` (eager, ONNX, int8), and ResNet v1 vs v1.5.

    python benchmarks/inference_latency.py [--repeats 30] [--images 64] [--json results.json]

The Hub is out of reach here, so the ResNet-50 (microsoft/resnet-50's layout and image
processor) has random weights. To give it a trained network's activation statistics, which
is what int8 calibration ranges depend on, its BatchNorm statistics are re-estimated on real
photos (crops of scikit-learn's two sample photos; a different set from the one measured).
Its predictions still mean nothing, so top-1 margins are small and the int8 agreement measured
here is a pessimistic stand-in for a trained model's. All latencies are end to end (image in,
answer out, preprocessing included) except the v1/v1.5 rows, which time the forward pass alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification, pipeline
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_resnet.export import export, reference_photos
from hf_resnet.inference import classify, load_classifier


def resnet50_processor() -> ConvNextImageProcessor:
    """microsoft/resnet-50's preprocessor_config.json, written out (the Hub is unreachable)."""
    return ConvNextImageProcessor(
        size={"shortest_edge": 224},
        crop_pct=0.875,
        resample=3,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )


def build_resnet50(folder: Path, v1: bool = False, seed: int = 0) -> Path:
    """A 1000-class ResNet-50 (v1.5 unless `v1`) with BatchNorm statistics measured on real photos."""
    torch.manual_seed(seed)
    model = ResNetForImageClassification(ResNetConfig(num_labels=1000, downsample_in_bottleneck=v1))
    processor = resnet50_processor()
    pixels = processor(images=reference_photos(64, seed=100), return_tensors="pt")["pixel_values"]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for chunk in pixels.split(16):
            model(pixel_values=chunk)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def interleaved_latency(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per call of each runner, timed round-robin so load changes hit all of them alike."""
    for run in runs.values():
        run()  # warm-up: lazy initialisation, caches, oneDNN primitive creation
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def throughput(run: Callable[[], object], count: int, repeats: int = 2) -> float:
    """Images per second of `run` (which classifies `count` images), best of `repeats`."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return count / best


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _top1(answers: list[list[dict]]) -> list[str]:
    return [answer[0]["label"] for answer in answers]


def compare_pipeline_and_backends(folder: Path, images: list, repeats: int) -> dict:
    report = export(folder, quantize="int8", calibration_images=reference_photos(64, seed=200), min_agreement=0.0)
    int8 = Path(report.out_dir) / "model_int8.onnx"
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    backends = {
        "eager": {"model": folder},
        "onnx": {"model": folder, "backend": "onnx"},
        "int8": {"model": int8, "backend": "onnx"},
    }
    for options in backends.values():
        load_classifier(options["model"], backend=options.get("backend", "torch"))  # load outside the timing
    image = images[0]
    runs = {"pipeline": lambda: pipe(image)}
    runs.update({name: (lambda o=options: classify(image, **o)) for name, options in backends.items()})
    batch1 = interleaved_latency(runs, repeats)
    reference = _top1(pipe(images))
    agreement = {
        name: sum(a == b for a, b in zip(_top1(classify(images, **o, batch_size=32)), reference)) / len(images)
        for name, o in backends.items()
    }
    rates = {"pipeline": throughput(lambda: pipe(images, batch_size=32), len(images))}
    rates.update(
        {name: throughput(lambda o=o: classify(images, batch_size=32, **o), len(images)) for name, o in backends.items()}
    )
    distinct = len(set(reference))
    return {
        "batch1_ms": batch1,
        "images_per_s_batch32": rates,
        "top1_agreement_with_pipeline": agreement,
        "distinct_top1_classes": distinct,
        "export_report": json.loads(report.to_json()),
    }


def compare_v1_v15(workdir: Path, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    results = {}
    for name, v1 in (("v1", True), ("v1.5", False)):
        classifier = load_classifier(build_resnet50(workdir / name, v1=v1), device="cpu")
        one = torch.randn(1, 3, 224, 224)
        with FlopCounterMode(display=False) as counter:
            classifier.forward(one)
        results[name] = {"gflops": counter.get_total_flops() / 2e9}  # multiply-adds, as papers count them
        results[name]["forward_ms_batch1"] = None
        results[name]["_run1"] = lambda c=classifier, x=one: c.forward(x)
        results[name]["_run32"] = lambda c=classifier, x=one.repeat(32, 1, 1, 1): c.forward(x)
    batch1 = interleaved_latency({k: v["_run1"] for k, v in results.items()}, repeats)
    batch32 = interleaved_latency({k: v["_run32"] for k, v in results.items()}, max(3, repeats // 6))
    for name, entry in results.items():
        entry.pop("_run1"), entry.pop("_run32")
        entry["forward_ms_batch1"], entry["forward_ms_batch32"] = batch1[name], batch32[name]
    return results


def _print(results: dict) -> None:
    main = results["resnet50_v1.5"]
    print(f"load average before: {results['load_before']}, after: {results['load_after']}")
    print(f"torch threads: {results['torch_threads']}, CPU: {results['cpu']}")
    print("\n| runtime | batch 1 ms | vs pipeline | images/s @32 | top-1 = pipeline |")
    print("|---|---|---|---|---|")
    base = main["batch1_ms"]["pipeline"]
    for name, ms in main["batch1_ms"].items():
        agree = main["top1_agreement_with_pipeline"].get(name, 1.0)
        rate = main["images_per_s_batch32"][name]
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}x | {rate:.1f} | {agree:.1%} |")
    exported = main["export_report"]
    print(f"\ndistinct top-1 classes on {results['images']} images: {main['distinct_top1_classes']}")
    for name in ("onnx", "int8"):
        variant = exported[name]
        print(
            f"{name}: {variant['size_mb']} MB, max |dlogit| {variant['max_logit_diff']}, "
            f"top-1 vs eager {variant['top1_agreement']:.1%}"
        )
    print(f"eager: model forward {exported['eager']['latency_ms_batch1']} ms @1")
    print("\n| ResNet-50 | GFLOPs (MACs) | forward ms @1 | forward ms @32 |")
    print("|---|---|---|---|")
    for name, entry in results["v1_vs_v1.5"].items():
        print(f"| {name} | {entry['gflops']:.2f} | {entry['forward_ms_batch1']:.1f} | {entry['forward_ms_batch32']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch-1 figure")
    parser.add_argument("--images", type=int, default=64, help="real-photo crops for agreement and throughput")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = parser.parse_args()
    results = {
        "load_before": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "cpu": os.cpu_count(),
        "images": args.images,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = reference_photos(args.images, seed=0)
        folder = build_resnet50(workdir / "resnet50")
        results["resnet50_v1.5"] = compare_pipeline_and_backends(folder, images, args.repeats)
        results["v1_vs_v1.5"] = compare_v1_v15(workdir, args.repeats)
    results["load_after"] = os.getloadavg()
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
