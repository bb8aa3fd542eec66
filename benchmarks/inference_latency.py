"""ResNet-50 on CPU: transformers pipeline vs `classify` (eager, ONNX, int8), and ResNet v1 vs v1.5.

    python benchmarks/inference_latency.py [--repeats 30] [--json results.json]

The Hub is out of reach, so no trained ResNet-50 exists here. A model with random weights
answers the same class for every image with near-tied logits, which makes any agreement
figure meaningless. Instead the benchmark model is a *linear probe*: ResNet-50 v1.5
(microsoft/resnet-50's layout and image processor) with random convolutions, BatchNorm
statistics measured on real images, and a 10-class head fitted by logistic regression on
its pooled features of scikit-learn's handwritten digits (real 8x8 scans, upscaled by the
processor). Its answers depend on the image, are right about two times in three on held-out
digits, and have logit margins of a trained network's size, so int8 agreement means something.
Agreement is measured on held-out digits and on crops of scikit-learn's two sample photos.

Latencies are end to end (a 427x640 photo in, answer out, preprocessing included), except
the v1/v1.5 rows, which time the forward pass alone on 1000-class models.
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

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images
from sklearn.linear_model import LogisticRegression
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification, pipeline
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_resnet.export import export, reference_photos
from hf_resnet.inference import classify, load_classifier

#: Digits used to fit the probe's BatchNorm statistics and head; the rest (1797 - 900) are
#: held out. 900 keeps feature extraction under a minute on two cores.
TRAIN_DIGITS = 900


def resnet50_processor() -> ConvNextImageProcessor:
    """microsoft/resnet-50's preprocessor_config.json, written out (the Hub is unreachable)."""
    return ConvNextImageProcessor(
        size={"shortest_edge": 224},
        crop_pct=0.875,
        resample=3,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )


def digit_images() -> tuple[list[Image.Image], np.ndarray]:
    """scikit-learn's 1797 handwritten digits as RGB images (ink bright on dark, 0-16 scaled to 0-255)."""
    digits = load_digits()
    images = [Image.fromarray(np.rint(d * 255 / 16).astype(np.uint8)).convert("RGB") for d in digits.images]
    return images, digits.target


@torch.no_grad()
def build_probe_resnet50(folder: Path, images: list[Image.Image], labels: np.ndarray) -> tuple[Path, float]:
    """Save a ResNet-50 v1.5 linear probe fitted on `images`; return its folder and training accuracy."""
    torch.manual_seed(0)
    names = [str(i) for i in range(10)]
    config = ResNetConfig(num_labels=10, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = ResNetForImageClassification(config)
    processor = resnet50_processor()
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    for module in model.modules():  # BatchNorm statistics of real activations, as training would leave them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all batches
    model.train()
    for chunk in pixels[:256].split(32):
        model(pixel_values=chunk)
    model.eval()
    features = torch.cat([model.resnet(chunk).pooler_output.flatten(1) for chunk in pixels.split(32)]).numpy()
    mean, std = features.mean(0), features.std(0) + 1e-6
    probe = LogisticRegression(max_iter=3000).fit((features - mean) / std, labels)
    # Fold the standardisation into the head: logits = W (f - mean) / std + b.
    weight = probe.coef_ / std
    model.classifier[1].weight.copy_(torch.from_numpy(weight).float())
    model.classifier[1].bias.copy_(torch.from_numpy(probe.intercept_ - weight @ mean).float())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, float(probe.score((features - mean) / std, labels))


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


def compare_backends(folder: Path, digits: tuple[list, np.ndarray], calibration: list, repeats: int) -> dict:
    """Batch-1 latency, batch-32 throughput, accuracy and top-1 agreement: pipeline vs classify backends."""
    test_images, test_labels = digits
    report = export(
        folder, quantize="int8", calibration_images=calibration, sample_images=test_images, min_agreement=0
    )
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    backends = {
        "eager": {"model": folder},
        "onnx": {"model": folder, "backend": "onnx"},
        "int8": {"model": Path(report.out_dir) / "model_int8.onnx", "backend": "onnx"},
    }
    for options in backends.values():  # load outside the timings: classify caches its models
        load_classifier(options["model"], backend=options.get("backend", "torch"))
    photo = Image.fromarray(load_sample_images().images[0])  # china.jpg, 427x640
    runs = {"pipeline": lambda: pipe(photo)}
    runs.update({name: (lambda o=options: classify(photo, **o)) for name, options in backends.items()})
    photos = reference_photos(64, seed=0)
    answers = {"pipeline": (_top1(pipe(test_images, batch_size=32)), _top1(pipe(photos, batch_size=32)))}
    for name, options in backends.items():
        answers[name] = tuple(_top1(classify(batch, batch_size=32, **options)) for batch in (test_images, photos))
    digits_ref, photos_ref = answers["pipeline"]
    truth = [str(label) for label in test_labels]
    rates = {"pipeline": throughput(lambda: pipe(photos, batch_size=32), len(photos))}
    for name, options in backends.items():
        rates[name] = throughput(lambda o=options: classify(photos, batch_size=32, **o), len(photos))
    return {
        "batch1_ms": interleaved_latency(runs, repeats),
        "images_per_s_batch32": rates,
        "digit_accuracy": {name: _share(a[0], truth) for name, a in answers.items()},
        "agreement_digits": {name: _share(a[0], digits_ref) for name, a in answers.items()},
        "agreement_photos": {name: _share(a[1], photos_ref) for name, a in answers.items()},
        "distinct_top1": {"digits": len(set(digits_ref)), "photos": len(set(photos_ref))},
        "median_top1_margin": _median_margin(folder, test_images),
        "export_report": json.loads(report.to_json()),
    }


def _share(answers: list[str], reference: list[str]) -> float:
    return sum(a == b for a, b in zip(answers, reference)) / len(reference)


def _median_margin(folder: Path, images: list) -> float:
    classifier = load_classifier(folder)
    logits = torch.cat(
        [classifier.forward(classifier.preprocess(images[i : i + 32])) for i in range(0, len(images), 32)]
    )
    top2 = logits.topk(2).values
    return float((top2[:, 0] - top2[:, 1]).median())


def compare_v1_v15(repeats: int) -> dict:
    """Multiply-adds and forward latency of 1000-class ResNet-50 v1 (stride in the 1x1) and v1.5 (in the 3x3)."""
    from torch.utils.flop_counter import FlopCounterMode

    one = torch.randn(1, 3, 224, 224)
    batch = one.repeat(32, 1, 1, 1)
    results, runs1, runs32 = {}, {}, {}
    for name, v1 in (("v1", True), ("v1.5", False)):
        torch.manual_seed(0)
        model = ResNetForImageClassification(ResNetConfig(num_labels=1000, downsample_in_bottleneck=v1))
        classifier = load_classifier(model, device="cpu", processor=resnet50_processor())
        with FlopCounterMode(display=False) as counter:
            classifier.forward(one)
        results[name] = {"gmacs": counter.get_total_flops() / 2e9}
        runs1[name] = lambda c=classifier: c.forward(one)
        runs32[name] = lambda c=classifier: c.forward(batch)
    batch1 = interleaved_latency(runs1, repeats)
    batch32 = interleaved_latency(runs32, max(3, repeats // 6))
    for name, entry in results.items():
        entry["forward_ms_batch1"], entry["forward_ms_batch32"] = batch1[name], batch32[name]
    return results


def _print(results: dict) -> None:
    main = results["resnet50"]
    print(f"load average before: {results['load_before']}, after: {results['load_after']}")
    print(
        f"torch threads: {results['torch_threads']}; probe accuracy on its training digits {results['probe_fit']:.1%}"
    )
    print(
        "\n| runtime | batch 1 ms | vs pipeline | images/s @32 | digit accuracy | top-1 = pipeline (digits / photos) |"
    )
    print("|---|---|---|---|---|---|")
    base = main["batch1_ms"]["pipeline"]
    for name, ms in main["batch1_ms"].items():
        print(
            f"| {name} | {ms:.1f} | {base / ms:.2f}x | {main['images_per_s_batch32'][name]:.1f} | "
            f"{main['digit_accuracy'][name]:.1%} | {main['agreement_digits'][name]:.1%} / "
            f"{main['agreement_photos'][name]:.1%} |"
        )
    exported = main["export_report"]
    print(f"\ndistinct top-1: {main['distinct_top1']}; median top-1 margin (logits): {main['median_top1_margin']:.2f}")
    print("| file | MB | model-only ms @1 | ms @32 | max abs logit diff vs eager | top-1 vs eager |")
    print("|---|---|---|---|---|---|")
    for name in ("eager", "onnx", "int8"):
        v = exported[name]
        print(
            f"| {name} | {v['size_mb'] or '-'} | {v['latency_ms_batch1']} | {v['latency_ms_batch32']} | "
            f"{v['max_logit_diff']} | {v['top1_agreement']:.1%} |"
        )
    print(f"BatchNorm nodes left after fusion: {exported['batchnorm_nodes_after_fusion']}")
    print("\n| ResNet-50 | GMACs | forward ms @1 | forward ms @32 |")
    print("|---|---|---|---|")
    for name, entry in results["v1_vs_v1.5"].items():
        print(
            f"| {name} | {entry['gmacs']:.2f} | {entry['forward_ms_batch1']:.1f} | {entry['forward_ms_batch32']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch-1 figure")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = parser.parse_args()
    results = {"load_before": os.getloadavg(), "torch_threads": torch.get_num_threads()}
    images, labels = digit_images()
    train, test = (images[:TRAIN_DIGITS], labels[:TRAIN_DIGITS]), (images[TRAIN_DIGITS:], labels[TRAIN_DIGITS:])
    with tempfile.TemporaryDirectory() as tmp:
        folder, results["probe_fit"] = build_probe_resnet50(Path(tmp) / "resnet50-probe", *train)
        results["resnet50"] = compare_backends(folder, test, calibration=train[0][:64], repeats=args.repeats)
    results["v1_vs_v1.5"] = compare_v1_v15(args.repeats)
    results["load_after"] = os.getloadavg()
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
