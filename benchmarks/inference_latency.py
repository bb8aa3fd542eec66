"""ResNet-50 on CPU: transformers pipeline vs `classify` (eager, ONNX, int8), and ResNet v1 vs v1.5.

    python benchmarks/inference_latency.py [--repeats 30] [--workdir DIR] [--json results.json]

The Hub is out of reach, so no trained ResNet-50 exists here. A model with random weights
answers the same class for every image with near-tied logits, which makes agreement figures
trivially 100%. Instead the benchmark model is a *linear probe*: ResNet-50 v1.5
(microsoft/resnet-50's layout and image processor) with random convolutions, BatchNorm
statistics measured on real images, and a 10-class head fitted by logistic regression on its
pooled features of scikit-learn's handwritten digits (real 8x8 scans, upscaled by the
processor). Its answers depend on the image and are right about two times in three on
held-out digits. Agreement is measured on held-out digits and on crops of scikit-learn's two
sample photos; `int8_feature_noise` says how far int8 figures on random convolutions can be
trusted (see docs/benchmarks.md).

Latencies are end to end (a 427x640 photo in, answer out, preprocessing included), except the
export report's model-only figures and the v1/v1.5 rows (forward pass of 1000-class models).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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

from hf_resnet.inference.classifier import classify, load_classifier
from hf_resnet.inference.onnx_export import export, reference_photos

#: Digits used to fit the probe's BatchNorm statistics and head, then held out for measuring.
#: 900 + 300 keep feature extraction and the agreement runs to a few minutes on two cores.
TRAIN_DIGITS, TEST_DIGITS = 900, 300


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
def build_probe_resnet50(folder: Path, images: list[Image.Image], labels: np.ndarray) -> Path:
    """Save a ResNet-50 v1.5 linear probe fitted on `images` (training accuracy in `probe.json`)."""
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
    # Fitted on the raw pooled features, as a trained head sees them. (Standardising first would
    # divide by near-zero spreads of dead channels and give the head weights no trained net has.)
    probe = LogisticRegression(max_iter=5000).fit(features, labels)
    model.classifier[1].weight.copy_(torch.from_numpy(probe.coef_).float())
    model.classifier[1].bias.copy_(torch.from_numpy(probe.intercept_).float())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "probe.json").write_text(json.dumps({"train_accuracy": float(probe.score(features, labels))}))
    return folder


def interleaved_latency(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Median and best ms per call of each runner, timed round-robin so load changes hit all alike.

    On a shared machine the median also measures the neighbours; the best call is the cost of
    the work itself, so both are reported.
    """
    for run in runs.values():
        run()  # warm-up: lazy initialisation, caches, oneDNN primitive creation
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: {"median": statistics.median(v), "best": min(v)} for name, v in times.items()}


def throughput(run: Callable[[], object], count: int, repeats: int = 2) -> float:
    """Images per second of `run` (which classifies `count` images), best of `repeats`."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return count / best


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def _top1(answers: list[list[dict]]) -> list[str]:
    return [answer[0]["label"] for answer in answers]


def compare_backends(folder: Path, digits: tuple[list, np.ndarray], calibration: list, repeats: int) -> dict:
    """Batch-1 latency, batch-32 throughput, accuracy and top-1 agreement: pipeline vs classify backends."""
    test_images, test_labels = digits
    report_file = folder / "onnx" / "export_report.json"
    if report_file.is_file() and (folder / "onnx" / "model_int8.onnx").is_file():
        report = json.loads(report_file.read_text())  # --workdir from an earlier run: keep its export
    else:
        _progress("exporting to ONNX and int8")
        exported = export(
            folder, quantize="int8", calibration_images=calibration, sample_images=test_images, min_agreement=0
        )
        report = json.loads(exported.to_json())
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    backends = {
        "eager": {"model": folder, "precision": "fp32"},  # the pipeline's numerics, on any CPU
        "onnx": {"model": folder, "backend": "onnx"},
        "int8": {"model": folder / "onnx" / "model_int8.onnx", "backend": "onnx"},
    }
    for options in backends.values():  # load outside the timings: classify caches its models
        load_classifier(**options)
    photo = Image.fromarray(load_sample_images().images[0])  # china.jpg, 427x640
    runs = {"pipeline": lambda: pipe(photo)}
    runs.update({name: (lambda o=options: classify(photo, **o)) for name, options in backends.items()})
    photos = reference_photos(64, seed=0)
    _progress("agreement runs")
    answers = {"pipeline": (_top1(pipe(test_images, batch_size=32)), _top1(pipe(photos, batch_size=32)))}
    for name, options in backends.items():
        answers[name] = tuple(_top1(classify(batch, batch_size=32, **options)) for batch in (test_images, photos))
    digits_ref, photos_ref = answers["pipeline"]
    truth = [str(label) for label in test_labels]
    _progress("throughput at batch 32")
    rates = {"pipeline": throughput(lambda: pipe(photos, batch_size=32), len(photos))}
    for name, options in backends.items():
        rates[name] = throughput(lambda o=options: classify(photos, batch_size=32, **o), len(photos))
    _progress("batch-1 latency")
    batch1 = interleaved_latency(runs, repeats)
    return {
        "batch1_ms": batch1,
        "images_per_s_batch32": rates,
        "digit_accuracy": {name: _share(a[0], truth) for name, a in answers.items()},
        "agreement_digits": {name: _share(a[0], digits_ref) for name, a in answers.items()},
        "agreement_photos": {name: _share(a[1], photos_ref) for name, a in answers.items()},
        "distinct_top1": {"digits": len(set(digits_ref)), "photos": len(set(photos_ref))},
        "median_top1_margin": _median_margin(folder, test_images),
        "int8_feature_noise": int8_feature_noise(folder / "onnx", test_images),
        "export_report": report,
    }


def _share(answers: list[str], reference: list[str]) -> float:
    return sum(a == b for a, b in zip(answers, reference)) / len(reference)


def _median_margin(folder: Path, images: list) -> float:
    classifier = load_classifier(folder, precision="fp32")
    logits = torch.cat(
        [classifier.forward(classifier.preprocess(images[i : i + 32])) for i in range(0, len(images), 32)]
    )
    top2 = logits.topk(2).values
    return float((top2[:, 0] - top2[:, 1]).median())


def int8_feature_noise(onnx_dir: Path, images: list) -> dict[str, float]:
    """How large the int8 rounding error in the pooled features is next to how much they vary between images.

    Above 1, the image-dependent part of the features drowns in int8 noise and agreement is luck.
    """
    import onnx

    from hf_resnet.inference.classifier import onnx_session

    pixels = resnet50_processor()(images=images, return_tensors="pt")["pixel_values"].numpy()
    features = {}
    for name in ("model.onnx", "model_int8.onnx"):
        graph = onnx.load(str(onnx_dir / name))
        pooled = next(node for node in graph.graph.node if node.op_type == "Gemm").input[0]
        graph.graph.output.append(onnx.helper.make_tensor_value_info(pooled, onnx.TensorProto.FLOAT, None))
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(graph, f"{tmp}/{name}")
            session = onnx_session(f"{tmp}/{name}")
        features[name] = np.concatenate(
            [session.run(None, {"pixel_values": pixels[i : i + 32]})[1] for i in range(0, len(pixels), 32)]
        )
    exact, rounded = features["model.onnx"], features["model_int8.onnx"]
    error = np.linalg.norm(rounded - exact, axis=1)
    spread = np.linalg.norm(exact - exact.mean(0), axis=1)
    cosine = (exact * rounded).sum(1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(rounded, axis=1)
    return {"error_over_spread": float(np.median(error / spread)), "cosine": float(np.median(cosine))}


def compare_v1_v15(repeats: int) -> dict:
    """Multiply-adds and forward latency of 1000-class ResNet-50 v1 (stride in the 1x1) and v1.5 (in the 3x3)."""
    from torch.utils.flop_counter import FlopCounterMode

    one = torch.randn(1, 3, 224, 224)
    batch = one.repeat(32, 1, 1, 1)
    _progress("v1 vs v1.5")
    results, runs1, runs32 = {}, {}, {}
    for name, v1 in (("v1", True), ("v1.5", False)):
        torch.manual_seed(0)
        model = ResNetForImageClassification(ResNetConfig(num_labels=1000, downsample_in_bottleneck=v1))
        classifier = load_classifier(model, device="cpu", processor=resnet50_processor(), precision="fp32")
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


def _ms(entry: dict[str, float], digits: int = 1) -> str:
    return f"{entry['median']:.{digits}f} / {entry['best']:.{digits}f}"


def _print(results: dict) -> None:
    main = results["resnet50"]
    print(f"load average before: {results['load_before']}, after: {results['load_after']}")
    print(
        f"torch threads: {results['torch_threads']}; probe accuracy on its fitting digits {results['probe_fit']:.1%}"
    )
    print("\n| runtime | batch 1 ms, median / best | vs pipeline (best) | images/s @32 | digit accuracy |", end="")
    print(" top-1 = pipeline (digits / photos) |\n|---|---|---|---|---|---|")
    base = main["batch1_ms"]["pipeline"]["best"]
    for name, ms in main["batch1_ms"].items():
        print(
            f"| {name} | {_ms(ms)} | {base / ms['best']:.2f}x | {main['images_per_s_batch32'][name]:.1f} | "
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
    noise = main["int8_feature_noise"]
    print(
        f"int8 pooled-feature error / between-image spread: {noise['error_over_spread']:.2f}, "
        f"cosine {noise['cosine']:.3f}"
    )
    print("\n| ResNet-50 | GMACs | forward ms @1, median / best | forward ms @32, median / best |\n|---|---|---|---|")
    for name, entry in results["v1_vs_v1.5"].items():
        print(
            f"| {name} | {entry['gmacs']:.2f} | {_ms(entry['forward_ms_batch1'])} | "
            f"{_ms(entry['forward_ms_batch32'], 0)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch-1 figure")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the model and export here, reuse next time")
    args = parser.parse_args()
    results = {"load_before": os.getloadavg(), "torch_threads": torch.get_num_threads()}
    images, labels = digit_images()
    held_out = slice(TRAIN_DIGITS, TRAIN_DIGITS + TEST_DIGITS)
    train, test = (images[:TRAIN_DIGITS], labels[:TRAIN_DIGITS]), (images[held_out], labels[held_out])
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.workdir or Path(tmp)) / "resnet50-probe"
        if not (folder / "probe.json").is_file():
            _progress("building the ResNet-50 linear probe")
            build_probe_resnet50(folder, *train)
        results["probe_fit"] = json.loads((folder / "probe.json").read_text())["train_accuracy"]
        results["resnet50"] = compare_backends(folder, test, calibration=train[0][:64], repeats=args.repeats)
    results["v1_vs_v1.5"] = compare_v1_v15(args.repeats)
    results["load_after"] = os.getloadavg()
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
