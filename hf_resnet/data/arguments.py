"""Where a run's images come from and how they are augmented; parsed by `HfArgumentParser`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class DataArguments:
    """Where the images come from and how they are augmented."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id, e.g. beans or food101."})
    # Aliases: the transformers image-classification example's names for the same flags.
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "Configuration name of the Hub dataset.", "aliases": ["--dataset_config_name"]},
    )
    image_column: str | None = field(
        default=None,
        metadata={"help": "Image column (default: image or img).", "aliases": ["--image_column_name"]},
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Label column (default: label or labels).", "aliases": ["--label_column_name"]},
    )
    train_dir: str | None = field(default=None, metadata={"help": "Folder with one sub-folder of images per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "Held-out folder laid out like train_dir."})
    data_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder that relative --train_dir/--validation_dir (and a local --dataset_name) are under. A "
            "recipe.json records local data paths relative to such a root, so `hf-resnet train --recipe R "
            "--data_root MY_DATA` reruns it on your own data."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "multi_label_classification to treat each image's labels as a set (sigmoid scores, BCE loss, "
            "per-class thresholds), even for one-label-per-image data. Detected without it from a metadata.jsonl/"
            "metadata.csv in --train_dir or a dataset whose label column is a list."
        },
    )
    validation_split: float = field(
        default=0.15,
        metadata={
            "help": "Fraction of train carved out (stratified by label) when no validation split exists.",
            "aliases": ["--train_val_split"],
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the Hub dataset as a stream (nothing downloaded up front; needs --max_steps and a "
            "validation split). Local folders never need it: they are indexed without decoding."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (quick experiments)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation (quick experiments)."})
    verify_images: bool = field(
        default=True,
        metadata={
            "help": "Decode every image once before training, so a bad file fails in seconds instead of mid-epoch. "
            "Turn off for datasets too large to scan."
        },
    )
    skip_bad_images: bool = field(
        default=False,
        metadata={"help": "Leave out undecodable/non-image files with a warning listing them, instead of failing."},
    )
    keep_examples: bool = field(
        default=True,
        metadata={
            "help": "Save one small validation image per class in OUTPUT_DIR/examples/, for `hf-resnet demo` and "
            "the Hub widget (they are your own images: turn off if they must not be shared)."
        },
    )
    # Augmentation. Defaults are the torchvision/timm ImageNet fine-tuning recipe.
    crop_scale_min: float = field(
        default=0.08, metadata={"help": "RandomResizedCrop's smallest area fraction (torchvision's default)."}
    )
    hflip: float = field(default=0.5, metadata={"help": "Horizontal flip probability (0 for text, digits, etc.)."})
    auto_augment: str = field(default="none", metadata={"help": "none, trivial (TrivialAugmentWide) or rand."})
    random_erasing: float = field(default=0.0, metadata={"help": "Random erasing probability (0.25 in timm)."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta(alpha, alpha); 0 disables (0.2 typical)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix Beta(alpha, alpha); 0 disables (1.0 typical)."})

    def __post_init__(self):
        if self.problem_type not in (None, "single_label_classification", "multi_label_classification"):
            raise ValueError(
                f"--problem_type {self.problem_type}: choose single_label_classification or multi_label_classification"
            )
        if self.data_root:
            self.train_dir, self.validation_dir = (
                under_root(self.data_root, p) for p in (self.train_dir, self.validation_dir)
            )
            # A Hub id ("beans") stays one unless the root holds a folder of that name.
            local = under_root(self.data_root, self.dataset_name)
            self.dataset_name = local if local and os.path.exists(local) else self.dataset_name


def under_root(root: str, path: str | None) -> str | None:
    """`path` joined to `root` when relative; absolute paths and None are kept.

    >>> under_root("/data/pets", "train")
    '/data/pets/train'
    """
    return path if path is None or os.path.isabs(path) else os.path.join(root, path)
