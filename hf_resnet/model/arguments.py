"""Which network a run starts from, and the names of its parts; parsed by `HfArgumentParser`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..families.resnet import ARCHITECTURES, VARIANTS
from ..families.timm_resnet import timm_architectures
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
        f"Build a randomly initialised model instead: a transformers layout ({', '.join(ARCHITECTURES)}) or an "
        "architecture of timm's resnet module (resnet50, resnet50d, seresnext26d_32x4d, ...), built through "
        "transformers' TimmWrapper so the output loads in both.",
        result=True,
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
    teacher: str | None = flag(
        None,
        "Knowledge distillation: a trained classifier (an hf_resnet run folder or Hub id, any supported family) whose "
        "temperature-softened outputs on each training batch the model also learns from; its classes must be the "
        "data's. hf-resnet distill is train with this flag required. See --distill_alpha, --distill_temperature.",
        result=True,
        section="model",
    )
    # timm's ResNet recipes regularise inside the network (`timm.create_model(drop_path_rate=..., drop_rate=...)`).
    drop_path_rate: float = flag(
        0.0,
        "Stochastic depth: the last residual block's branch is skipped with this probability in training, "
        "earlier ones linearly less (timm's rule; 0.05 to 0.1 in timm's ResNet recipes). Both families.",
        result=True,
        bounds="[0, 1)",
        card="augmentation",
        aliases=["--drop-path"],
        section="recipe",
    )
    drop_rate: float = flag(
        0.0,
        "Dropout on the pooled features before the classifier, in training (timm's drop_rate). Both families.",
        result=True,
        bounds="[0, 1)",
        card="augmentation",
        aliases=["--drop"],
        section="recipe",
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
        aliases=["--img-size"],
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

    def drop_rates(self):
        """The network's own regularisation, as the families take it."""
        from ..families import DropRates

        return DropRates(self.drop_path_rate, self.drop_rate)

    def frozen_parts(self) -> list[str]:
        """The parts a run freezes: `--freeze`, else the default for a loaded checkpoint, none from scratch.

        >>> ModelArguments(model_name_or_path="microsoft/resnet-50").frozen_parts()
        ['embedder', 'stage1']
        """
        from .parts import parse_parts

        default = DEFAULT_FREEZE_PRETRAINED if self.model_name_or_path else "none"
        return parse_parts(self.freeze if self.freeze is not None else default)


def arch_problem(arch: str) -> str | None:
    """Why `--arch` cannot be built (the end of its one-line refusal), or None; needs no torch.

    >>> arch_problem("resnet-50") is None, arch_problem("resnet50d") is None
    (True, True)
    """
    if arch in ARCHITECTURES or arch in timm_architectures():
        return None
    close = difflib.get_close_matches(arch, [*ARCHITECTURES, *timm_architectures()], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return (
        f"choose a transformers layout ({', '.join(ARCHITECTURES)}) or an architecture of timm's resnet module "
        f"(resnet50, resnet50d, seresnext26d_32x4d, ...){hint}"
    )
