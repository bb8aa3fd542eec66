"""Multi-label from scratch on CPU: two real digit scans side by side, labels = the digits present.

    python benchmarks/multi_label_digits.py [--train 3000] [--epochs 8] [--out outputs/digit-pairs]

Writes train/validation/test folders of two-digit pictures (scikit-learn's scans, each split from
its own scans; `hf_resnet.data.embedded.digit_pair_folders`), trains a small ResNet from scratch
with `hf_resnet.finetune`, then scores the held-out test pictures with `hf_resnet.classify` (the
label sets at the thresholds tuned on validation) and prints wall time, micro/macro F1, exact
match and whether transformers' own pipeline gives the same sigmoid scores. Target: micro-F1 >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import ResNetConfig, pipeline

import hf_resnet
from hf_resnet.data.embedded import PAIR_SIZE, digit_pair_folders

TARGET_MICRO_F1 = 0.90
#: A resnet-18-like stack at a quarter of its width and one block per stage: enough for 48 px digits, fast on CPU.
SMALL_RESNET = dict(layer_type="basic", embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])


def _truth(folder: Path) -> tuple[list[str], list[set[str]]]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    return [str(folder / row["file_name"]) for row in rows], [set(row["labels"]) for row in rows]


def _multi_hot(sets: list[set[str]], labels: list[str]) -> np.ndarray:
    return np.array([[label in present for label in labels] for present in sets])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--out", default=None, help="Model folder (default: a temporary one).")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="digit-pairs-")
    folders = digit_pair_folders(Path(scratch), {"train": args.train, "validation": 600, "test": 1000})
    output_dir = args.out or os.path.join(scratch, "model")
    start = time.perf_counter()
    result = hf_resnet.finetune(
        train_dir=str(folders["train"]),
        validation_dir=str(folders["validation"]),
        config=ResNetConfig(**SMALL_RESNET),
        image_size=PAIR_SIZE,
        hflip=0.0,  # a mirrored digit is not a digit
        crop_scale_min=0.6,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=64,
        learning_rate=3e-3,
        output_dir=output_dir,
        report_to="none",
        disable_tqdm=True,
        keep_examples=False,
    )
    train_s = time.perf_counter() - start
    labels = result.labels
    paths, sets = _truth(folders["test"])
    answers = hf_resnet.classify(paths, model=output_dir, top_k=None, device="cpu", precision="fp32")
    predicted = _multi_hot([{item["label"] for item in answer} for answer in answers], labels)
    truth = _multi_hot(sets, labels)
    micro = f1_score(truth, predicted, average="micro")
    macro = f1_score(truth, predicted, average="macro")
    exact = float(np.mean(np.all(predicted == truth, axis=1)))
    # transformers' own pipeline reads problem_type from config.json and applies a sigmoid.
    scores = pipeline("image-classification", model=output_dir, device="cpu")(paths[:20], top_k=len(labels))
    ours = hf_resnet.classify(paths[:20], model=output_dir, top_k=len(labels), device="cpu", precision="fp32")
    thresholds = json.loads(Path(output_dir, "config.json").read_text())["thresholds"]
    over = [[s for s in answer if s["score"] >= thresholds[labels.index(s["label"])]] for answer in scores]
    agree = all([a["label"] for a in mine] == [b["label"] for b in theirs] for mine, theirs in zip(ours, over))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"train: {args.train} pictures, {args.epochs:g} epochs, {train_s:.0f} s")
    print(
        f"validation (thresholds tuned on it): micro-F1 {result.metrics['eval_f1_micro']:.3f}, "
        f"mAP {result.metrics['eval_map']:.3f}"
    )
    print(
        f"test ({len(paths)} held-out pictures): micro-F1 {micro:.3f}, macro-F1 {macro:.3f}, exact match {exact:.3f}"
    )
    print(f"target micro-F1 >= {TARGET_MICRO_F1}: {'met' if micro >= TARGET_MICRO_F1 else 'NOT met'}")
    print(f"transformers pipeline label sets at the saved thresholds match classify: {agree}")


if __name__ == "__main__":
    main()
