"""Datasets too large to download or index: `--streaming` reads a Hub dataset as a `datasets.IterableDataset`.

Sharding is left to the libraries, which do it without duplicates when the stream has at
least as many shards as readers: Accelerate gives each rank its own shards
(`IterableDataset.shard`, with `dispatch_batches=False`), and `datasets` splits a rank's
shards among its DataLoader workers. Augmentation is seeded per (seed, epoch, sample key),
the key being the image's path or a hash of its bytes, as for indexed data. The validation
split is read into memory once (cap it with --max_eval_samples), so evaluation is exact.
A label column holding a list of `ClassLabel`s streams as multi-label data: each example's list
becomes a multi-hot row as it is read, the form the rest of a multi-label run takes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import datasets
import torch
from datasets import Features
from datasets import Image as ImageFeature

from ..data.arguments import DataArguments
from ..data.image_datasets import sample_seed
from ..data.images import open_image
from ..data.multilabel import MULTI_LABEL, SINGLE_LABEL, feature_class_names
from ..data.prefetch import seeded
from ..data.sources import (
    VALIDATION_SPLIT_NAMES,
    DataError,
    ImageData,
    check_class_count,
    pick_column,
    select_image_and_label,
)

logger = logging.getLogger(__name__)

#: Shuffle buffer: large enough to mix neighbouring shards' classes, small enough for RAM (about 1 GB of JPEGs).
SHUFFLE_BUFFER = 10_000


def sample_key(image: dict) -> int:
    """A stable 63-bit id for a streamed image: its path, or its bytes when it has none."""
    raw = image.get("path") or image.get("bytes") or b""
    digest = hashlib.blake2b(raw.encode() if isinstance(raw, str) else raw, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class StreamTransform:
    """Decode and transform one streamed example; the epoch lives in shared memory for forked workers."""

    def __init__(self, transform: Callable, seed: int):
        self.transform, self.seed = transform, seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(int(epoch))

    def __call__(self, example: dict) -> dict:
        image = example["image"]
        name = image.get("path") or "streamed image"
        picture = open_image(image["bytes"] if image.get("bytes") else image["path"], name=name)
        seed = sample_seed(self.seed, int(self.epoch), sample_key(image))
        with seeded(seed):
            pixels = self.transform(picture)
        return {"pixel_values": pixels, "labels": example["label"], "sample_seed": seed}


def _canonical_stream(split: datasets.IterableDataset, image_column: str, label_column: str, where: str):
    """The stream with `image` (undecoded) and `label` columns, its class names, and whether it is multi-label."""
    split = select_image_and_label(split, image_column, label_column)
    known = feature_class_names(split.features["label"])
    if known is None:
        raise DataError(
            f"{where}: streaming needs a ClassLabel label column, or a list of ClassLabels for multi-label data (the "
            f"classes must be known before reading the stream); {label_column!r} is {split.features['label']}. "
            "Drop --streaming or use a dataset with one."
        )
    return split.cast_column("image", ImageFeature(decode=False)), *known


def _multi_hot(split: datasets.IterableDataset, num_labels: int, is_list: bool) -> datasets.IterableDataset:
    """Each example's class indices (a list, or one class read as a one-label set) as a multi-hot row, on the fly."""

    def row(example: dict) -> dict:
        hot = [0.0] * num_labels
        for index in example["label"] if is_list else [example["label"]]:
            hot[index] = 1.0
        return {"label": hot}

    features = Features(
        {"image": ImageFeature(decode=False), "label": datasets.Sequence(datasets.Value("float32"), length=num_labels)}
    )
    return split.map(row, features=features)


def load_stream(data_args: DataArguments, seed: int, data=None) -> ImageData:
    """Open train and validation splits as streams, with the labels from the dataset's features."""
    where = f"--dataset_name {data_args.dataset_name}" if data is None else "the streamed dataset"
    if data is None:
        if not data_args.dataset_name:
            raise DataError("--streaming reads a Hub dataset: pass --dataset_name (local folders are indexed instead)")
        data = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config, streaming=True)
    if "train" not in data:
        raise DataError(f"{where}: no 'train' split (splits: {list(data)})")
    val_name = next((name for name in VALIDATION_SPLIT_NAMES if name in data), None)
    if val_name is None:
        raise DataError(f"{where}: a stream cannot be split stratified; it needs a validation or test split")
    train = data["train"]
    first = next(iter(train.take(1)))
    fake = datasets.Dataset.from_dict({key: [] for key in first}, features=train.features)
    image_column = pick_column(fake, data_args.image_column, ("image", "img"), "--image_column")
    label_column = pick_column(fake, data_args.label_column, ("label", "labels", "fine_label"), "--label_column")
    train, labels, listed = _canonical_stream(train, image_column, label_column, where)
    val_where = f"{where} split {val_name!r}"
    validation, val_labels, val_listed = _canonical_stream(data[val_name], image_column, label_column, val_where)
    if (val_labels, val_listed) != (labels, listed):
        raise DataError(
            f"{val_where}: its labels {val_labels}{' (lists)' if val_listed else ''} differ from train's "
            f"{labels}{' (lists)' if listed else ''}; both splits need the same label feature"
        )
    check_class_count(labels, where)
    problem_type = MULTI_LABEL if listed else data_args.problem_type or SINGLE_LABEL
    if problem_type == MULTI_LABEL:
        train, validation = (_multi_hot(split, len(labels), listed) for split in (train, validation))
    if data_args.max_eval_samples is not None:
        validation = validation.take(data_args.max_eval_samples)
    # The held-out split is read once into an indexed dataset: distributed evaluation then pads and gathers
    # it like any other, each image counted once (uneven streamed shards would desynchronise the ranks).
    validation = datasets.Dataset.from_list(list(validation), features=validation.features)
    train = train.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    name = data_args.dataset_name or "streamed dataset"
    return ImageData(train, validation, labels, name, problem_type, {"split": val_name})
