"""Which network a run starts from, and the names of its parts; parsed by `HfArgumentParser`."""

from __future__ import annotations

from dataclasses import dataclass

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
        section="model",
    )
    arch: str | None = flag(
        None,
        f"Build a randomly initialised model instead: one of {', '.join(ARCHITECTURES)}.",
        result=True,
        choices=tuple(ARCHITECTURES),
        section="model",
    )
    variant: str = flag(
        "v1.5",
        "With --arch: the ResNet variant, v1.5 or v1. v1.5 strides in the bottleneck's 3x3 (as torchvision and "
        "microsoft/resnet-*: slightly slower, about 0.5%% more accurate), v1 in its first 1x1 (the 2015 paper).",
        result=True,
        choices=VARIANTS,
        section="model",
    )
    freeze: str | None = flag(
        None,
        "Comma list of embedder,stage1..stage4 to freeze (weights and BatchNorm statistics), or 'none'. "
        f"Default: '{DEFAULT_FREEZE_PRETRAINED}' for a loaded checkpoint, 'none' from scratch.",
        result=True,
        section="model",
    )
    image_size: int | None = flag(
        None,
        "Override the processor's crop size (e.g. 224); the resize keeps its ratio. Default: the checkpoint's; "
        "from scratch, the median training image's side (the shorter for --resize crop, else the longer) as a "
        "multiple of 32 within 32..224.",
        result=True,
        bounds="(0, inf)",
        allowed="must be a positive number of pixels (e.g. 224)",
        section="model",
    )
    revision: str = flag(
        "main",
        "Hub revision (branch, tag or commit) of the model.",
        result=True,
        aliases=["--model_revision"],
        section="model",
    )
    cache_dir: str | None = flag(
        None,
        "Where Hub downloads are cached.",
        section="model",
    )
    image_processor_name: str | None = flag(
        None,
        "Hub id or folder of the image processor (preprocessor_config.json), if not the model's.",
        result=True,
        section="model",
    )
    # The transformers image-classification example's model flags, so its command lines run unchanged; which change
    # nothing here, and which cannot apply, is in config/example_flags.py.
    model_type: str | None = flag(
        None,
        "As in the transformers example: resnet is accepted (and changes nothing); any other type is "
        "refused. From scratch, name the layout with --arch.",
        section="example",
    )
    config_name: str | None = flag(
        None,
        "As in the transformers example; refused: the layout is --model_name_or_path's own config.json "
        "(or --arch from scratch).",
        section="example",
    )
    ignore_mismatched_sizes: bool = flag(
        False,
        "As in the transformers example; always so here: the head is sized for the data's classes.",
        section="example",
    )
    trust_remote_code: bool = flag(
        False,
        "As in the transformers example; no Hub code is ever needed: ResNets are built into transformers.",
        section="example",
    )

    def frozen_parts(self) -> list[str]:
        """The parts a run freezes: `--freeze`, else the default for a loaded checkpoint, none from scratch.

        >>> ModelArguments(model_name_or_path="microsoft/resnet-50").frozen_parts()
        ['embedder', 'stage1']
        """
        from .parts import parse_parts

        default = DEFAULT_FREEZE_PRETRAINED if self.model_name_or_path else "none"
        return parse_parts(self.freeze if self.freeze is not None else default)
