"""transformers' `ResNetForImageClassification` (microsoft/resnet-*, and what `--arch` builds from scratch).

Its modules name the parts already (`transformers.models.resnet.modeling_resnet`):
`resnet.embedder` is the stem, `resnet.encoder.stages[i]` is stage i+1, `classifier` is the head.
"""

from __future__ import annotations

import logging
import re

from . import HEAD, DropRates, Family, model_type
from .loading import load_errors

logger = logging.getLogger(__name__)

#: Architectures that can be built from scratch with `--arch`; values are the layouts of the
#: microsoft/resnet-* checkpoints (which are all v1.5), so a scratch model matches its Hub sibling.
ARCHITECTURES: dict[str, dict] = {
    "resnet-18": dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]),
    "resnet-34": dict(layer_type="basic", depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 256, 512]),
    "resnet-50": dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048]),
    "resnet-101": dict(layer_type="bottleneck", depths=[3, 4, 23, 3], hidden_sizes=[256, 512, 1024, 2048]),
    "resnet-152": dict(layer_type="bottleneck", depths=[3, 8, 36, 3], hidden_sizes=[256, 512, 1024, 2048]),
}

#: `--variant`: where a bottleneck block strides (see `resnet_config`).
VARIANTS = ("v1", "v1.5")

_STAGE = re.compile(r"^resnet\.encoder\.stages\.(\d+)\.")


def default_image_processor(size: int = 224):
    """The preprocessing of microsoft/resnet-50 (resize to size/0.875, centre crop, ImageNet mean/std)."""
    from transformers import ConvNextImageProcessor
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return ConvNextImageProcessor(
        size={"shortest_edge": size},
        crop_pct=0.875,
        resample=3,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )


def resnet_config(arch: str, variant: str = "v1.5", **overrides):
    """The config of a named architecture; v1 puts the stride in the bottleneck's first 1x1 conv.

    >>> resnet_config("resnet-50", "v1").downsample_in_bottleneck
    True
    """
    from transformers import ResNetConfig

    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if variant not in ("v1", "v1.5"):
        raise ValueError(f"--variant {variant!r}: choose v1 or v1.5")
    return ResNetConfig(**{**ARCHITECTURES[arch], "downsample_in_bottleneck": variant == "v1", **overrides})


def label_fields(labels: list[str]) -> dict:
    """The config fields that name a head's classes (transformers' spelling)."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def same_classes(config, labels: list[str]) -> bool:
    """Whether a checkpoint's head already predicts exactly `labels`, in that order (its weights then still apply)."""
    return [config.id2label.get(i) for i in range(config.num_labels)] == list(labels)


def add_drop_layers(model, drop_rates: DropRates | None):
    """timm's stochastic depth and dropout, added to transformers' ResNet, which has neither.

    Each residual layer's branch is an `nn.Sequential` (`layer.layer`) whose output is added to the
    shortcut: timm's `DropPath` appended to it drops the branch exactly where timm's blocks do, at timm's
    per-block rate. Dropout joins the head's `Flatten` (`classifier[0]`), before the `Linear`, as in timm's
    `forward_head`. Neither holds weights, so parameter names, the saved weights and what loads them are
    unchanged; in evaluation both are identities.
    """
    if drop_rates is None or not (drop_rates.drop_path_rate or drop_rates.drop_rate):
        return model
    from timm.layers import DropPath
    from torch import nn

    layers = [layer for stage in model.resnet.encoder.stages for layer in stage.layers]
    for index, layer in enumerate(layers):
        rate = drop_rates.drop_path_rate * index / max(len(layers) - 1, 1)
        if rate > 0:
            layer.layer.append(DropPath(rate))
    if drop_rates.drop_rate:
        model.classifier[0] = nn.Sequential(model.classifier[0], nn.Dropout(drop_rates.drop_rate))
    return model


class TransformersResNet(Family):
    name = "transformers ResNet"
    layout_keys = ("embedding_size", "hidden_sizes", "depths", "layer_type", "downsample_in_bottleneck")

    def matches(self, config) -> bool:
        return model_type(config) == "resnet"

    def part_of(self, name: str) -> str:
        """
        >>> FAMILY.part_of("resnet.encoder.stages.3.layers.0.shortcut.convolution.weight")
        'stage4'
        """
        name = name.removeprefix("module.")  # names seen through a DistributedDataParallel wrapper
        if name.startswith("resnet.embedder."):
            return "embedder"
        if match := _STAGE.match(name):
            return f"stage{int(match.group(1)) + 1}"
        if name.startswith("classifier."):
            return HEAD
        raise ValueError(f"{name!r} is not part of a transformers ResNetForImageClassification")

    def load(self, path: str, labels: list[str], drop_rates: DropRates | None = None, **hub):
        from transformers import AutoConfig, AutoModelForImageClassification

        with load_errors(path, "--model_name_or_path"):
            config = AutoConfig.from_pretrained(path, **hub)
            model = AutoModelForImageClassification.from_pretrained(
                path, **label_fields(labels), ignore_mismatched_sizes=True, **hub
            )
        if not same_classes(config, labels):
            # Same class count but other classes (or a resized head): the old weights mean nothing here.
            model.classifier[-1].reset_parameters()
            logger.info("New %d-class head on %s (its %d-class head is dropped)", len(labels), path, config.num_labels)
        return add_drop_layers(model, drop_rates)

    def build(self, config, labels: list[str], drop_rates: DropRates | None = None):
        from transformers import ResNetForImageClassification

        for key, value in label_fields(labels).items():
            setattr(config, key, value)
        return add_drop_layers(ResNetForImageClassification(config), drop_rates)

    def image_processor(self, path: str | None, model, image_size: int | None = None, **hub):
        """The checkpoint's `AutoImageProcessor`; microsoft/resnet-50's preprocessing where it has none."""
        from transformers import AutoImageProcessor

        from ..data.transforms import set_processor_size

        processor = None
        if path:
            try:
                processor = AutoImageProcessor.from_pretrained(path, **hub)
            except OSError:
                logger.warning("%s has no preprocessor_config.json: using microsoft/resnet-50's preprocessing", path)
        processor = processor or default_image_processor()
        if image_size:
            set_processor_size(processor, image_size)
        return processor

    def gradcam_layer(self, model):
        return model.resnet.encoder.stages[-1]

    def feature_front(self, model) -> list[list]:
        resnet = model.resnet
        return [[resnet.embedder], *([stage] for stage in resnet.encoder.stages)]

    def feature_pool(self, model):
        return model.resnet.pooler

    def describe(self, config) -> str:
        return "ResNet"


FAMILY = TransformersResNet()
