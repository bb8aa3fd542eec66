"""Building the network: a checkpoint with a new head, or a fresh v1/v1.5 ResNet; freezing parts of it.

Freezing means two things, and both matter for transfer learning: frozen parameters get no
gradient, and frozen BatchNorm layers stay in eval mode so their running statistics keep
describing the pretraining data instead of drifting towards a small fine-tuning set (which
silently changes what the frozen convolutions compute). A forward pre-hook enforces the eval
mode because `Trainer` calls `model.train()` at every step.
"""

from __future__ import annotations

import logging

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..data.transforms import set_processor_size
from ..model.arguments import ARCHITECTURES, DEFAULT_FREEZE_PRETRAINED, ModelArguments
from ..model.parts import parse_parts
from .freezing import freeze
from .loading import check_model_source, load_errors

logger = logging.getLogger(__name__)

_FROZEN_HOOK = "_hf_resnet_frozen_bn_hook"


def default_image_processor(size: int = 224) -> ConvNextImageProcessor:
    """The preprocessing of microsoft/resnet-50 (resize to size/0.875, centre crop, ImageNet mean/std)."""
    return ConvNextImageProcessor(
        size={"shortest_edge": size},
        crop_pct=0.875,
        resample=3,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )


def resnet_config(arch: str, variant: str = "v1.5", **overrides) -> ResNetConfig:
    """The config of a named architecture; v1 puts the stride in the bottleneck's first 1x1 conv.

    >>> resnet_config("resnet-50", "v1").downsample_in_bottleneck
    True
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if variant not in ("v1", "v1.5"):
        raise ValueError(f"--variant {variant!r}: choose v1 or v1.5")
    return ResNetConfig(**{**ARCHITECTURES[arch], "downsample_in_bottleneck": variant == "v1", **overrides})


def _label_fields(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _load_checkpoint(model_args: ModelArguments, labels: list[str]) -> ResNetForImageClassification:
    path = model_args.model_name_or_path
    hub = {"revision": model_args.revision, "cache_dir": model_args.cache_dir}
    check_model_source(path, "--model_name_or_path", need_processor=False)  # the processor has a fallback
    with load_errors(path, "--model_name_or_path"):
        config = AutoConfig.from_pretrained(path, **hub)
    if config.model_type != "resnet":
        raise ValueError(f"--model_name_or_path {path}: a {config.model_type!r} model; hf_resnet fine-tunes ResNets")
    same_head = [config.id2label.get(i) for i in range(config.num_labels)] == labels
    with load_errors(path, "--model_name_or_path"):
        model = AutoModelForImageClassification.from_pretrained(
            path, **_label_fields(labels), ignore_mismatched_sizes=True, **hub
        )
    if not same_head:
        # Same class count but other classes (or a resized head): the old weights mean nothing here.
        model.classifier[-1].reset_parameters()
        logger.info("New %d-class head on %s (its %d-class head is dropped)", len(labels), path, config.num_labels)
    return model


def build_model(model_args: ModelArguments, labels: list[str], config: ResNetConfig | None = None):
    """Return (model, image processor, frozen part names) for a run, head sized for `labels`.

    `config` builds a randomly initialised model of that exact layout (used by the embedded
    default and tests); otherwise `--model_name_or_path` loads a checkpoint, or `--arch` builds one.

    >>> model, processor, frozen = build_model(ModelArguments(arch="resnet-18"), ["cat", "dog"])
    >>> model.config.id2label, frozen
    ({0: 'cat', 1: 'dog'}, [])
    """
    if model_args.model_name_or_path:
        model = _load_checkpoint(model_args, labels)
        try:
            processor = AutoImageProcessor.from_pretrained(
                model_args.model_name_or_path, revision=model_args.revision, cache_dir=model_args.cache_dir
            )
        except OSError:
            logger.warning(
                "%s has no preprocessor_config.json: using microsoft/resnet-50's preprocessing",
                model_args.model_name_or_path,
            )
            processor = default_image_processor()
        default_freeze = DEFAULT_FREEZE_PRETRAINED
    else:
        if config is None:
            config = resnet_config(model_args.arch, model_args.variant)
        for key, value in _label_fields(labels).items():
            setattr(config, key, value)
        model = ResNetForImageClassification(config)
        processor = default_image_processor()
        default_freeze = "none"  # random features are not worth keeping
    if model_args.image_processor_name:
        with load_errors(model_args.image_processor_name, "--image_processor_name"):
            processor = AutoImageProcessor.from_pretrained(
                model_args.image_processor_name, revision=model_args.revision, cache_dir=model_args.cache_dir
            )
    if model_args.image_size:
        set_processor_size(processor, model_args.image_size)
    frozen = parse_parts(model_args.freeze if model_args.freeze is not None else default_freeze)
    freeze(model, frozen)
    return model, processor, frozen
