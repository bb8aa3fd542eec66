"""Batch-1 latency of `classify` vs the transformers pipeline alone, on a model folder.

    python benchmarks/inference_pipeline_check.py --model /tmp/hfbench/resnet50-probe [--repeats 30]

The full benchmark (inference_latency.py) times four runtimes after minutes of batch work; on a
shared machine that mixes in the neighbours' load. This times only the two PyTorch paths,
interleaved, on a fresh process, and checks that they give the same answer.
"""

from __future__ import annotations

import argparse
import os

from PIL import Image
from sklearn.datasets import load_sample_images
from transformers import pipeline

from hf_resnet.inference.classifier import classify, load_classifier


def main() -> None:
    from inference_latency import interleaved_latency  # same timing loop as the full benchmark

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. the full benchmark's --workdir probe)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    photo = Image.fromarray(load_sample_images().images[0])  # china.jpg, 427x640
    pipe = pipeline("image-classification", model=args.model, device="cpu")
    load_classifier(args.model, precision="fp32")  # the pipeline's numerics, on any CPU
    assert pipe(photo)[0]["label"] == classify(photo, model=args.model, precision="fp32")[0]["label"]
    load_before = os.getloadavg()[0]
    times = interleaved_latency(
        {"pipeline": lambda: pipe(photo), "classify": lambda: classify(photo, model=args.model, precision="fp32")},
        args.repeats,
    )
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; same top-1: yes")
    for name, entry in times.items():
        print(f"{name:<9} median {entry['median']:.1f} ms, best {entry['best']:.1f} ms")


if __name__ == "__main__":
    main()
