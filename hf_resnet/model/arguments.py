"""Which network a run starts from, and the names of its parts; parsed by `HfArgumentParser`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..families.resnet import ARCHITECTURES, VARIANTS
from ..flags import flag

#: A loaded checkpoint's stem and first stage detect edges and textures that transfer to any photo;
#: freezing them saves a third of the backward pass and guards small datasets against overfitting.
DEFAULT_FREEZE_PRETRAINED = "embedder,stage1"
#: Test-time augmentation modes (model/tta.py), here so that command-line parsers need no torch import.
TTA_MODES = ("none", "flip", "crops", "flip+crops")


@dataclass
class ModelArguments:
    """Which network to start from."""

    model_name_or_path: str | None = flag(
        None,
        "Hub id (e.g. microsoft/resnet-50) or local checkpoint directory to fine-tune.",
        result=True,
    )
    arch: str | None = flag(
        None,
        f"Build a randomly initialised model instead: one of {', '.join(ARCHITECTURES)}.",
        result=True,
        choices=tuple(ARCHITECTURES),
    )
    variant: str = flag(
        "v1.5",
        "With --arch: v1 (stride in the bottleneck's first 1x1 conv, as in the 2015 paper) or v1.5 "
        "(stride in the 3x3, as torchvision and microsoft/resnet-*: slightly slower, about 0.5%% more accurate).",
        result=True,
        choices=VARIANTS,
    )
    freeze: str | None = flag(
        None,
        "Comma list of embedder,stage1..stage4 to freeze (weights and BatchNorm statistics), or 'none'. "
        f"Default: '{DEFAULT_FREEZE_PRETRAINED}' for a loaded checkpoint, 'none' from scratch.",
        result=True,
    )
    image_size: int | None = flag(
        None,
        "Override the processor's crop size (e.g. 224); the resize keeps its ratio.",
        result=True,
        bounds="(0, inf)",
        allowed="must be a positive number of pixels (e.g. 224)",
    )
    revision: str = flag(
        "main",
        "Hub revision (branch, tag or commit) of the model.",
        result=True,
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
