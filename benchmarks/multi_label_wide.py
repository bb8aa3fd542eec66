"""Multi-label on wide pictures with the labelled objects at the edges: `--resize` policies against a plain loop.

    python benchmarks/multi_label_wide.py [--train 1200] [--epochs 6] [--batch 32] [--seeds 0 1 2]

Each picture is 2:1 (PAIR_SIZE x 2*PAIR_SIZE) with two scikit-learn digit scans, one in the left
quarter and one in the right quarter, labelled with the digits present; every split draws from its
own scans. For each seed it trains the same small ResNet from scratch with `hf_resnet.finetune`:

- `crop`: `--resize crop --crop_scale_min 0.08 --hflip 0.5`, the single-label ImageNet recipe (what
  multi-label runs used before they had their own defaults);
- `default`: the multi-label defaults (`squash`, no random crop, no flip);
- `default, crop 0.5`: the same with `--crop_scale_min 0.5`, crops that keep at least half the area;
- `pad`: the multi-label defaults with `--resize pad`;

and a plain PyTorch loop (the whole picture resized to the model's size, AdamW, BCE, no
augmentation, threshold 0.5). All are scored on the same held-out test pictures by micro-F1
(hf_resnet models through `hf_resnet.classify`, at the thresholds tuned on validation).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import f1_score
from torchvision.transforms.v2 import functional as TF
from transformers import ResNetConfig, ResNetForImageClassification

import hf_resnet
from hf_resnet.data.embedded import PAIR_DIGIT, PAIR_SIZE

#: One block per stage at a quarter of resnet-18's width: enough for 48 px digits, fast on CPU.
SMALL_RESNET = dict(layer_type="basic", embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])
POLICIES = {
    "crop": {"resize": "crop", "crop_scale_min": 0.08, "hflip": 0.5},
    "default": {},
    "default, crop 0.5": {"crop_scale_min": 0.5},
    "pad": {"resize": "pad"},
}
LABELS = [str(digit) for digit in range(10)]


def wide_folders(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Train/validation/test folders of 2:1 pictures with a digit near each edge, and their metadata.jsonl."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    shares = np.array_split(rng.permutation(len(digits.target)), len(sizes))
    height, width = PAIR_SIZE, 2 * PAIR_SIZE
    quarter = width // 4 - PAIR_DIGIT  # the slack left in each outer quarter once a digit is in it
    folders = {}
    for (name, count), scans in zip(sizes.items(), shares):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            canvas = Image.new("L", (width, height))
            chosen = rng.choice(scans, size=2)
            for scan, x in zip(
                chosen, (int(rng.integers(0, quarter + 1)), width - PAIR_DIGIT - int(rng.integers(0, quarter + 1)))
            ):
                digit = Image.fromarray((digits.images[scan] * (255.0 / 16.0)).astype(np.uint8), mode="L")
                y = int(rng.integers(0, height - PAIR_DIGIT + 1))
                canvas.paste(digit.resize((PAIR_DIGIT, PAIR_DIGIT), Image.BICUBIC), (x, y))
            canvas.convert("RGB").save(folder / f"{i:05d}.png")
            present = sorted({str(digits.target[scan]) for scan in chosen})
            rows.append(json.dumps({"file_name": f"{i:05d}.png", "labels": present}))
        (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
        folders[name] = folder
    return folders


def _truth(folder: Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    paths = [str(folder / row["file_name"]) for row in rows]
    return paths, np.array([[label in row["labels"] for label in LABELS] for row in rows])


def _hf_resnet(folders, flags: dict, epochs: float, batch: int, seed: int, out: Path) -> float:
    result = hf_resnet.finetune(
        train_dir=str(folders["train"]),
        validation_dir=str(folders["validation"]),
        config=ResNetConfig(**SMALL_RESNET),
        image_size=PAIR_SIZE,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,
        learning_rate=3e-3,
        seed=seed,
        output_dir=str(out),
        report_to="none",
        disable_tqdm=True,
        keep_examples=False,
        **flags,
    )
    paths, truth = _truth(folders["test"])
    answers = hf_resnet.classify(paths, model=result.output_dir, top_k=None, device="cpu", precision="fp32")
    order = result.labels
    predicted = np.array([[label in {a["label"] for a in answer} for label in LABELS] for answer in answers])
    assert sorted(order) == LABELS
    return float(f1_score(truth, predicted, average="micro"))


def _pixels(paths: list[str]) -> torch.Tensor:
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = [
        TF.resize(TF.pil_to_tensor(Image.open(p).convert("RGB")), [PAIR_SIZE, PAIR_SIZE], antialias=True)
        for p in paths
    ]
    return (torch.stack(images) / 255 - mean) / std


def _plain_loop(folders, epochs: float, batch: int, seed: int) -> float:
    """The whole picture resized to the model's size, nothing else: the baseline a user would write."""
    torch.manual_seed(seed)
    paths, truth = _truth(folders["train"])
    x, y = _pixels(paths), torch.tensor(truth, dtype=torch.float32)
    model = ResNetForImageClassification(ResNetConfig(**SMALL_RESNET, num_labels=len(LABELS)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(int(epochs)):
        for rows in torch.randperm(len(x)).split(batch):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(pixel_values=x[rows]).logits, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_paths, test_truth = _truth(folders["test"])
    model.eval()
    with torch.no_grad():
        predicted = torch.sigmoid(model(pixel_values=_pixels(test_paths)).logits).numpy() >= 0.5
    return float(f1_score(test_truth, predicted, average="micro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="wide-pairs-"))
    folders = wide_folders(scratch, {"train": args.train, "validation": 300, "test": 500})
    scores: dict[str, list[float]] = {name: [] for name in [*POLICIES, "plain loop"]}
    start = time.perf_counter()
    for seed in args.seeds:
        for name, flags in POLICIES.items():
            scores[name].append(_hf_resnet(folders, flags, args.epochs, args.batch, seed, scratch / f"{name}-{seed}"))
        scores["plain loop"].append(_plain_loop(folders, args.epochs, args.batch, seed))
        print(f"seed {seed}: " + ", ".join(f"{name} {values[-1]:.3f}" for name, values in scores.items()), flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    took = time.perf_counter() - start
    print(f"{args.train} train / 300 validation / 500 test pictures, {args.epochs:g} epochs, batch {args.batch}")
    print(f"wall time: {took:.0f} s")
    print("| Run | Test micro-F1, mean | per seed |")
    print("| --- | --- | --- |")
    for name, values in scores.items():
        print(f"| {name} | {statistics.mean(values):.3f} | {' / '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
