"""Pixels in: the checkpoint's own preprocessing for evaluation, augmentation around it for training.

Evaluation calls the checkpoint's `AutoImageProcessor` itself, so validation numbers are
measured on exactly the tensors the model will see in `transformers.pipeline` or
`hf_resnet.classify`. Training replaces the processor's resize + centre crop with a random
resized crop to the same output size and keeps its mean/std, so train and eval statistics agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from .config import DataArguments

_RESAMPLE_TO_INTERPOLATION = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}


@dataclass(frozen=True)
class Geometry:
    """What a processor produces: output size, normalisation and interpolation."""

    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode


def _size_value(size, key_options):
    if size is None:
        return None
    if isinstance(size, int):
        return size
    getter = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    for key in key_options:
        value = getter(key)
        if value:
            return value
    return None


def processor_geometry(processor) -> Geometry:
    """Read the output size, mean/std and interpolation of an image processor.

    Handles the three conventions in transformers: `crop_size` (most CNN processors),
    `size={"height", "width"}` (ViT-style) and `size={"shortest_edge"}` (ConvNext/ResNet, which
    centre-crops to a square of that edge below 384 px).

    >>> from transformers import ConvNextImageProcessor
    >>> processor_geometry(ConvNextImageProcessor(size={"shortest_edge": 224})).height
    224
    """
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    height = _size_value(crop, ("height",)) or _size_value(processor.size, ("height", "shortest_edge"))
    width = _size_value(crop, ("width",)) or _size_value(processor.size, ("width", "shortest_edge"))
    resample = getattr(processor, "resample", 3)
    interpolation = _RESAMPLE_TO_INTERPOLATION.get(
        int(getattr(resample, "value", resample) or 3), InterpolationMode.BICUBIC
    )
    return Geometry(
        height=int(height),
        width=int(width),
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        interpolation=interpolation,
    )


def set_processor_size(processor, size: int) -> None:
    """Make `processor` produce `size` x `size` crops, keeping its resize-to-crop ratio."""
    if isinstance(processor.size, dict) and "shortest_edge" in processor.size or hasattr(processor, "crop_pct"):
        processor.size = {"shortest_edge": size}
    else:
        processor.size = {"height": size, "width": size}
    if getattr(processor, "crop_size", None):
        processor.crop_size = {"height": size, "width": size}


def build_train_transform(processor, data_args: DataArguments) -> Callable[[Image.Image], torch.Tensor]:
    """Per-image training augmentation producing the processor's output size and normalisation."""
    geometry = processor_geometry(processor)
    steps: list = [
        T.PILToTensor(),
        T.RandomResizedCrop(
            (geometry.height, geometry.width),
            scale=(data_args.crop_scale_min, 1.0),
            interpolation=geometry.interpolation,
            antialias=True,
        ),
    ]
    if data_args.hflip > 0:
        steps.append(T.RandomHorizontalFlip(data_args.hflip))
    if data_args.auto_augment == "trivial":
        steps.append(T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR))
    elif data_args.auto_augment == "rand":
        steps.append(T.RandAugment(interpolation=InterpolationMode.BILINEAR))
    elif data_args.auto_augment != "none":
        raise ValueError(f"--auto_augment {data_args.auto_augment!r}: choose none, trivial or rand")
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(geometry.mean, geometry.std)]
    if data_args.random_erasing > 0:
        steps.append(T.RandomErasing(p=data_args.random_erasing, value=0))
    return T.Compose(steps)


def build_eval_transform(processor) -> Callable[[list[Image.Image]], torch.Tensor]:
    """The processor itself: evaluation sees exactly what inference will see."""

    def transform(images: list[Image.Image]) -> torch.Tensor:
        return processor(images, return_tensors="pt")["pixel_values"]

    return transform


def build_batch_mix(num_labels: int, data_args: DataArguments) -> Callable | None:
    """Mixup and/or CutMix on a whole batch (one of the two per batch when both are on), or None."""
    mixes = []
    if data_args.mixup_alpha > 0:
        mixes.append(T.MixUp(alpha=data_args.mixup_alpha, num_classes=num_labels))
    if data_args.cutmix_alpha > 0:
        mixes.append(T.CutMix(alpha=data_args.cutmix_alpha, num_classes=num_labels))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else T.RandomChoice(mixes)
