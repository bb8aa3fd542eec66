"""Where a run's images come from and how they are augmented; parsed by `HfArgumentParser`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..flags import flag

#: `--resize` policies (data/transforms.py), written out here: config must load without torch.
RESIZE_POLICIES = ("crop", "squash", "pad")

#: `--auto_augment` policies (data/transforms.py).
AUTO_AUGMENTS = ("none", "trivial", "rand")
#: `--image_cache` modes (data/image_cache.py).
IMAGE_CACHE_MODES = ("off", "memory", "disk")
#: `--problem_type`: the values transformers' configs use.
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")


@dataclass
class DataArguments:
    """Where the images come from and how they are augmented."""

    dataset_name: str | None = flag(
        None,
        "Hub dataset id, e.g. beans or food101.",
        result=True,
        section="data",
    )
    # Aliases: the transformers image-classification example's names for the same flags.
    dataset_config: str | None = flag(
        None,
        "Configuration name of the Hub dataset.",
        result=True,
        aliases=["--dataset_config_name"],
        section="data",
    )
    image_column: str | None = flag(
        None,
        "Image column (default: image or img).",
        result=True,
        aliases=["--image_column_name"],
        section="data",
    )
    label_column: str | None = flag(
        None,
        "Label column (default: label or labels).",
        result=True,
        aliases=["--label_column_name"],
        section="data",
    )
    train_dir: str | None = flag(
        None,
        "Folder with one sub-folder of images per class.",
        result=True,
        section="data",
    )
    validation_dir: str | None = flag(
        None,
        "Held-out folder laid out like train_dir.",
        result=True,
        section="data",
    )
    data_root: str | None = flag(
        None,
        "Folder that relative --train_dir/--validation_dir (and a local --dataset_name) are under. A "
        "recipe.json records local data paths relative to such a root, so `hf-resnet train --recipe R "
        "--data_root MY_DATA` reruns it on your own data.",
        section="data",
    )
    problem_type: str | None = flag(
        None,
        "multi_label_classification to treat each image's labels as a set (sigmoid scores, BCE loss, "
        "per-class thresholds), even for one-label-per-image data. Detected without it from a metadata.jsonl/"
        "metadata.csv in --train_dir or a dataset whose label column is a list.",
        result=True,
        choices=PROBLEM_TYPES,
        section="data",
    )
    validation_split: float = flag(
        0.15,
        "Fraction of train carved out (stratified by label) when no validation split exists.",
        result=True,
        bounds="(0, 1)",
        aliases=["--train_val_split"],
        section="data",
    )
    streaming: bool = flag(
        False,
        "Read the Hub dataset as a stream (nothing downloaded up front; needs --max_steps and a "
        "validation split). Local folders never need it: they are indexed without decoding.",
        result=True,
        section="data",
    )
    max_train_samples: int | None = flag(
        None,
        "Truncate train (quick experiments).",
        result=True,
        bounds="[1, inf)",
        section="data",
    )
    max_eval_samples: int | None = flag(
        None,
        "Truncate validation (quick experiments).",
        bounds="[1, inf)",
        section="data",
    )
    verify_images: bool = flag(
        True,
        "Decode every image once before training, so a bad file fails in seconds instead of mid-epoch. "
        "Turn off for datasets too large to scan.",
        section="data",
    )
    image_cache: str | None = flag(
        None,
        "Decode each training image once, shrunk a little above the model's size: disk, memory or off. Each step "
        "then only crops, flips and normalises (the same random crops and flips): disk (a file under "
        "~/.cache/hf_resnet/images, or $HF_RESNET_CACHE/images, checked and reused by later runs on the same images "
        "and size; hf-resnet cache list|clear), memory (rebuilt each run), or off (decode every sample). Default: "
        "disk where the decoded copy takes at most a quarter of the memory available and of the disk free there, "
        "memory where it fits the memory only, else off.",
        result=True,
        resumable=True,
        machine=True,
        choices=IMAGE_CACHE_MODES,
        section="speed",
    )
    skip_bad_images: bool = flag(
        False,
        "Leave out undecodable/non-image files with a warning listing them, instead of failing.",
        result=True,
        section="data",
    )
    keep_examples: bool = flag(
        True,
        "Save one small validation image per class in OUTPUT_DIR/examples/, for `hf-resnet demo` and "
        "the Hub widget. They are your own images: turn off if they must not be shared.",
        section="output",
    )
    resize: str | None = flag(
        None,
        "How an image is framed at the model's size: crop, squash or pad. It is saved in preprocessor_config.json "
        "so the transformers pipeline, classify, evaluate, the demo and the ONNX export frame it the same way: crop "
        "(shortest edge, "
        "then centre crop: the sides of a wide image are never seen), squash (the whole image, stretched) or pad "
        "(the whole image, aspect kept, letterboxed with the mean colour at the top left, as transformers' "
        "do_pad does). Default: the checkpoint's own (crop for microsoft/resnet-* and from scratch) for "
        "single-label, squash for multi-label, whose labels may be about objects anywhere in the image.",
        result=True,
        choices=RESIZE_POLICIES,
        card="augmentation",
        section="augmentation",
    )
    # Augmentation. Single-label defaults are the torchvision/timm ImageNet fine-tuning recipe; multi-label
    # defaults keep what the labels are about in the crop (tasks/: each task's `data_defaults`).
    crop_scale_min: float | None = flag(
        None,
        "RandomResizedCrop's smallest area fraction. Default: 0.08 for single-label (torchvision's), 1 (no crop) "
        "for multi-label, where a crop can lose an object at the edge that its labels still name; lower it (e.g. "
        "0.5) when the labelled objects sit well inside the images.",
        result=True,
        bounds="(0, 1]",
        card="augmentation",
        section="augmentation",
    )
    hflip: float | None = flag(
        None,
        "Horizontal flip probability (0 for text, digits, etc.). Default: 0.5 for single-label, 0 for multi-label, "
        "whose labels may not survive a mirror (left/right, text); set it when they do.",
        result=True,
        bounds="[0, 1]",
        card="augmentation",
        section="augmentation",
    )
    vflip: float = flag(
        0.0,
        "Vertical flip probability: for images without an up and down (aerial, satellite, microscopy, textures).",
        result=True,
        bounds="[0, 1]",
        card="augmentation",
        section="augmentation",
    )
    auto_augment: str = flag(
        "none",
        "none, trivial (TrivialAugmentWide) or rand.",
        result=True,
        choices=AUTO_AUGMENTS,
        card="augmentation",
        section="augmentation",
    )
    random_erasing: float = flag(
        0.0,
        "Random erasing probability (0.25 in timm).",
        result=True,
        bounds="[0, 1]",
        card="augmentation",
        section="augmentation",
        aliases=["--reprob"],
    )
    mixup_alpha: float = flag(
        0.0,
        "Mixup Beta(alpha, alpha); 0 disables (0.2 typical).",
        result=True,
        bounds="[0, inf)",
        hint="(0 turns it off)",
        card="augmentation",
        section="augmentation",
        aliases=["--mixup"],
    )
    cutmix_alpha: float = flag(
        0.0,
        "CutMix Beta(alpha, alpha); 0 disables (1.0 typical).",
        result=True,
        bounds="[0, inf)",
        hint="(0 turns it off)",
        card="augmentation",
        section="augmentation",
        aliases=["--cutmix"],
    )

    def __post_init__(self):
        if self.data_root:
            self.train_dir, self.validation_dir = (
                under_root(self.data_root, p) for p in (self.train_dir, self.validation_dir)
            )
            # A Hub id ("beans") stays one unless the root holds a folder of that name.
            local = under_root(self.data_root, self.dataset_name)
            self.dataset_name = local if local and os.path.exists(local) else self.dataset_name


#: What the framing and augmentation flags left unset mean for single-label data: the checkpoint's own framing and
#: the ImageNet recipe (torchvision's crop scale, a coin-flip mirror). Each task says its own (hf_resnet/tasks).
SINGLE_LABEL_DEFAULTS = {"resize": None, "crop_scale_min": 0.08, "hflip": 0.5}


def fill_unset(data_args: DataArguments, defaults: dict) -> DataArguments:
    """`data_args` with `defaults` in place of the flags left unset (None)."""
    unset = {key: value for key, value in defaults.items() if getattr(data_args, key) is None}
    return dataclasses.replace(data_args, **unset) if unset else data_args


def under_root(root: str, path: str | None) -> str | None:
    """`path` joined to `root` when relative; absolute paths and None are kept.

    >>> under_root("/data/pets", "train")
    '/data/pets/train'
    """
    return path if path is None or os.path.isabs(path) else os.path.join(root, path)
