"""What the DataLoader indexes: decoded, transformed images whose randomness depends only on (seed, epoch, index).

Augmentation drawn from the global RNG depends on everything drawn before it: how many
batches were skipped on resume, how many workers there are, which rank ran what. Seeding each
sample's augmentation from (seed, epoch, index) makes a run resumed after a crash see exactly
the crops and flips an uninterrupted run would have seen, on any number of workers or ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from transformers import TrainerCallback

from .images import open_image


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing the run seed, the epoch and the sample index (no collisions between neighbours).

    >>> sample_seed(42, 0, 1) != sample_seed(42, 1, 0)
    True
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def _undecoded(dataset: Dataset) -> Dataset:
    # Decoding ourselves (not in datasets) names the file in errors and lets training decode JPEGs at reduced size.
    return dataset.cast_column("image", ImageFeature(decode=False))


def _decode(item: dict, index: int, decode: Callable = open_image):
    """Decode a `datasets.Image(decode=False)` value, naming its path (or index) in errors."""
    return decode(item["bytes"] if item.get("bytes") else item["path"], name=item.get("path") or f"image #{index}")


class TrainImages(torch.utils.data.Dataset):
    """Training split: decode, augment with a per-(seed, epoch, index) RNG, return tensors."""

    def __init__(self, dataset: Dataset, transform: Callable, seed: int, decode: Callable = open_image):
        self.dataset = _undecoded(dataset)
        self.transform, self.seed, self.decode = transform, seed, decode
        # Shared memory, so persistent DataLoader workers see the epoch the main process sets.
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        image = _decode(item["image"], index, self.decode)
        seed = sample_seed(self.seed, int(self.epoch), index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pixels = self.transform(image)
        return {"pixel_values": pixels, "labels": item["label"], "sample_seed": seed}


class EvalImages(torch.utils.data.Dataset):
    """Validation split: full-resolution decode and the processor itself, exactly as at inference."""

    def __init__(self, dataset: Dataset, transform: Callable[[list], torch.Tensor]):
        self.dataset = _undecoded(dataset)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        pixels = self.transform([_decode(item["image"], index)])[0]
        return {"pixel_values": pixels, "labels": item["label"]}


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack examples into a batch; module-level so DataLoader workers can pickle it."""
    batch = {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
    }
    if "sample_seed" in examples[0]:
        batch["sample_seed"] = torch.tensor([example["sample_seed"] for example in examples], dtype=torch.int64)
    return batch


class EpochSetter(TrainerCallback):
    """Tell the training images which epoch starts, before the DataLoader iterator (and its workers) exist.

    `floor(state.epoch)` is the epoch being run, also on a resume mid-epoch (state.epoch = e + k/n).
    """

    def __init__(self, images: TrainImages):
        self.images = images

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.images.set_epoch(math.floor(state.epoch or 0))
