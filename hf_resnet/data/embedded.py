"""The embedded default: a run that works offline, on any machine, in a few minutes.

Data: scikit-learn's 1,797 handwritten digits (real scans from 43 writers, shipped inside the
scikit-learn wheel), written once as 32 px RGB PNG files in class sub-folders, so the default
run goes through exactly the folder path a user's photos take. Model: the resnet-18 layout
from scratch (there is no pretrained checkpoint offline), at 32 px.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

#: Where the generated digit folders live; override with HF_RESNET_CACHE.
CACHE = Path(os.environ.get("HF_RESNET_CACHE") or Path.home() / ".cache" / "hf_resnet")  # empty: unset
#: Pixels per side: the 8x8 scans upscaled 4x, the smallest size at which resnet-18's stride-32 stack works.
DIGIT_SIZE = 32
#: Held-out share, fixed so every run of the default is scored on the same 360 images.
VALIDATION_FRACTION = 0.2

#: Arguments of the embedded run, as a user would type them. Flags given on the command line win.
EMBEDDED_ARGS: dict[str, object] = {
    "arch": "resnet-18",
    "image_size": DIGIT_SIZE,
    "hflip": 0.0,  # a mirrored 2 is not a 2
    "crop_scale_min": 0.5,  # digits fill the frame; tiny crops would cut them apart
    "num_train_epochs": 8,  # well inside the 5-minute budget on 2 CPU cores (docs/benchmarks.md, Quick start)
    "per_device_train_batch_size": 64,
    "learning_rate": 2e-3,
    "output_dir": "outputs/digits-resnet18",
}

#: Arguments that select data or a model; when none is given, the embedded default is used.
DATA_OR_MODEL_ARGS = ("model_name_or_path", "arch", "dataset_name", "train_dir")

DESCRIPTION = "scikit-learn handwritten digits (1,797 8x8 scans, upscaled to 32 px RGB) with a resnet-18 from scratch"

HOW_TO_USE_YOUR_OWN = (
    "To fine-tune a real checkpoint on your data instead:\n"
    "  accelerate launch recipes/finetune.py --model_name_or_path microsoft/resnet-50 --dataset_name beans "
    "--output_dir outputs/beans\n"
    "  accelerate launch recipes/finetune.py --model_name_or_path microsoft/resnet-50 "
    "--train_dir photos/train --validation_dir photos/val --output_dir outputs/photos"
)


def digits_folders(root: Path | None = None) -> tuple[Path, Path]:
    """Write (once) and return the train and validation folders of the digits dataset."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = Path(root or CACHE / "digits-32px")
    done = root / ".complete"
    train_dir, validation_dir = root / "train", root / "validation"
    if done.is_file():
        return train_dir, validation_dir
    if problem := _unwritable(root):
        setting = f"HF_RESNET_CACHE {CACHE}" if os.environ.get("HF_RESNET_CACHE") else f"the cache folder {CACHE}"
        raise ValueError(
            f"{setting}: {problem}; the embedded digits are written there once: "
            "set HF_RESNET_CACHE to a folder you can write"
        )
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(
        indices, test_size=VALIDATION_FRACTION, stratify=digits.target, random_state=0
    )
    for folder, split in ((train_dir, train_idx), (validation_dir, val_idx)):
        for index in split:
            label = int(digits.target[index])
            pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)  # scans are 0..16
            image = Image.fromarray(pixels, mode="L").resize((DIGIT_SIZE, DIGIT_SIZE), Image.BICUBIC).convert("RGB")
            (folder / str(label)).mkdir(parents=True, exist_ok=True)
            image.save(folder / str(label) / f"digit_{index:04d}.png")
    done.write_text(f"{len(train_idx)} train, {len(val_idx)} validation\n")
    return train_dir, validation_dir


def _unwritable(folder: Path) -> str | None:
    """Why the digits cannot be written under `folder` (a file in its path, no write access), or None.

    Asked of the nearest part of the path that exists, so checking creates nothing.
    """
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} cannot be written"
    return None


def embedded_defaults() -> dict[str, object]:
    """All arguments of the embedded run, data folders included."""
    train_dir, validation_dir = digits_folders()
    return {**EMBEDDED_ARGS, "train_dir": str(train_dir), "validation_dir": str(validation_dir)}


#: Side of a two-digit picture: two 20 px digits side by side with a 4 px margin, inside the centre crop that the
#: image processor keeps (crop_pct 0.875 trims 3 px a side at 48 px).
PAIR_SIZE = 48
PAIR_DIGIT = 20


def _pair_image(left: np.ndarray, right: np.ndarray) -> Image.Image:
    canvas = Image.new("L", (PAIR_SIZE, PAIR_SIZE))
    top = (PAIR_SIZE - PAIR_DIGIT) // 2
    for x, pixels in ((4, left), (4 + PAIR_DIGIT, right)):
        digit = Image.fromarray((pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
        canvas.paste(digit.resize((PAIR_DIGIT, PAIR_DIGIT), Image.BICUBIC), (x, top))
    return canvas.convert("RGB")


def digit_pair_folders(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Write a multi-label image set: two real digit scans side by side, labelled with the digits present.

    Each split (`sizes` maps split name to image count, e.g. train/validation/test) pairs scans
    drawn only from its own share of scikit-learn's 1,797 digits, so no scan seen in training
    appears in a held-out picture. A picture of two equal digits has one label. Each folder
    holds PNG files and the `metadata.jsonl` that makes it multi-label.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    shares = np.array_split(order, len(sizes))
    folders = {}
    for (name, count), scans in zip(sizes.items(), shares):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            left, right = rng.choice(scans, size=2)
            _pair_image(digits.images[left], digits.images[right]).save(folder / f"pair_{i:05d}.png")
            present = sorted({str(digits.target[left]), str(digits.target[right])})
            rows.append(json.dumps({"file_name": f"pair_{i:05d}.png", "labels": present}))
        (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
        folders[name] = folder
    return folders
