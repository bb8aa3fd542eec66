"""Does the weight average (`--ema_decay`) or test-time augmentation (`tta`) help on a small real task?

    python benchmarks/ema_tta.py [--seeds 0 1 2] [--epochs 12] [--ema_decay 0.98]

scikit-learn's 1,797 handwritten digit scans, split 60/20/20 (stratified) into train, validation
and test folders of 32 px pictures. For each seed, one run from scratch (a small ResNet, no flips:
a mirrored digit is another glyph) trains with `--ema_decay`, so the trained and the averaged
weights come from the same trajectory; both are taken from the last checkpoint and scored on the
held-out test pictures by `hf_resnet.evaluate`, with each test-time augmentation mode. Prints the
test accuracy and loss of every pair, per seed and averaged, and which weights the run kept by
its validation accuracy. The baseline is the trained weights scored in one pass, same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import ResNetConfig

import hf_resnet
from hf_resnet.data.embedded import DIGIT_SIZE
from hf_resnet.runtime.hardware import cpu_model
from hf_resnet.training.ema import EMA_FILE

#: A resnet-18-like stack at a quarter of its width and one block per stage: trains in seconds per epoch on 2 cores.
SMALL_RESNET = dict(layer_type="basic", embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])
MODES = ("none", "flip", "crops")


def digit_splits(root: Path) -> dict[str, Path]:
    """Train/validation/test class folders of the digit scans, 60/20/20, stratified, written once."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, rest = train_test_split(indices, test_size=0.4, stratify=digits.target, random_state=0)
    validation, test = train_test_split(rest, test_size=0.5, stratify=digits.target[rest], random_state=0)
    folders = {}
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        for index in split:
            pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
            image = Image.fromarray(pixels, mode="L").resize((DIGIT_SIZE, DIGIT_SIZE), Image.BICUBIC).convert("RGB")
            folder = root / name / str(int(digits.target[index]))
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"digit_{index:04d}.png")
        folders[name] = root / name
    return folders


def averaged_model_folder(checkpoint: Path, target: Path) -> Path:
    """The checkpoint's model with its weight average in place of the trained weights."""
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("*.pt", "*.pth", "*.bin", "optimizer*"))
    averaged = load_file(str(checkpoint / EMA_FILE))
    weights = {name.removeprefix("module."): tensor for name, tensor in averaged.items() if name != "n_averaged"}
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def one_seed(seed: int, folders: dict[str, Path], scratch: Path, args) -> dict:
    output_dir = scratch / f"seed{seed}"
    result = hf_resnet.finetune(
        train_dir=str(folders["train"]),
        validation_dir=str(folders["validation"]),
        config=ResNetConfig(**SMALL_RESNET),
        image_size=DIGIT_SIZE,
        hflip=0.0,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        ema_decay=args.ema_decay,
        seed=seed,
        output_dir=str(output_dir),
        report_to="none",
        disable_tqdm=True,
        keep_examples=False,
    )
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    models = {"trained": last, "ema": averaged_model_folder(last, scratch / f"seed{seed}-ema")}
    scores = {}
    for weights, model in models.items():
        for mode in MODES:
            metrics = hf_resnet.evaluate(
                str(model),
                test_dir=str(folders["test"]),
                output_dir=str(scratch / "eval"),
                tta=mode,
                metrics="accuracy",
            ).metrics
            scores[weights, mode] = (metrics["test_accuracy"], metrics["test_loss"])
    kept = "ema" if result.metrics["eval_ema_accuracy"] > result.metrics["eval_trained_accuracy"] else "trained"
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    curve = [(e["eval_accuracy"], e["eval_ema_accuracy"]) for e in history if "eval_ema_accuracy" in e]
    return {"scores": scores, "kept": kept, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--ema_decay", type=float, default=0.98)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ema-tta-"))
    folders = digit_splits(scratch / "digits")
    runs = [one_seed(seed, folders, scratch, args) for seed in args.seeds]
    test = len(list(folders["test"].rglob("*.png")))
    print(f"machine: {cpu_model()}, {platform.machine()}, {torch.get_num_threads()} threads")
    print(f"digits: {test} test pictures; {args.epochs:g} epochs, ema_decay {args.ema_decay}, seeds {args.seeds}")
    print("| weights | TTA | test accuracy per seed | mean | mean test loss | vs trained, one pass |")
    print("| --- | --- | --- | --- | --- | --- |")
    baseline = statistics.mean(run["scores"]["trained", "none"][0] for run in runs)
    for weights in ("trained", "ema"):
        for mode in MODES:
            accuracies = [run["scores"][weights, mode][0] for run in runs]
            losses = [run["scores"][weights, mode][1] for run in runs]
            mean = statistics.mean(accuracies)
            print(
                f"| {weights} | {mode} | {' / '.join(f'{a:.4f}' for a in accuracies)} | {mean:.4f} | "
                f"{statistics.mean(losses):.4f} | {mean - baseline:+.4f} |"
            )
    print("kept by validation accuracy:", ", ".join(run["kept"] for run in runs))
    print("validation accuracy after each epoch, mean over seeds (trained / averaged):")
    for epoch, pairs in enumerate(zip(*(run["curve"] for run in runs)), start=1):
        trained, averaged = (statistics.mean(values) for values in zip(*pairs))
        print(f"  epoch {epoch:2d}: {trained:.4f} / {averaged:.4f} ({averaged - trained:+.4f})")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
