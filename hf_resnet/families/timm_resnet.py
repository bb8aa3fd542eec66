"""timm's ResNets (`timm/resnet50.a1_in1k`, `timm/resnet18.tv_in1k`, ResNeXt, SE-ResNet, ...) through transformers.

`AutoModelForImageClassification` loads a timm Hub checkpoint as `TimmWrapperForImageClassification`
around the timm network (`model.timm_model`), and `AutoImageProcessor` gives a
`TimmWrapperImageProcessor` built from the checkpoint's timm data config (`pretrained_cfg` in
config.json: input size, crop_pct, interpolation, mean/std). The processor has no file of its own:
a saved model's config.json carries it, so an output folder loads in the transformers pipeline as
the Hub checkpoint did.

The parts are timm's `ResNet` modules (`timm/models/resnet.py`): `conv1`, `bn1`, `act1`, `maxpool`
are the stem (embedder), `layer1`..`layer4` the stages, `global_pool` and `fc` the head. Every
architecture of that timm module shares them; timm's other networks (ResNetV2 included) do not,
and are refused.
"""

from __future__ import annotations

import logging
import re

from . import HEAD, Family, config_value, model_type
from .loading import load_errors
from .resnet import label_fields, same_classes

logger = logging.getLogger(__name__)

#: The timm module whose architectures this family handles (`timm.models.resnet`).
TIMM_MODULE = "resnet"
_PART = re.compile(r"^timm_model\.(?:(conv1|bn1|act1|maxpool)|layer([1-4])|(fc|global_pool))\.")


class TimmResNet(Family):
    name = "timm ResNet"
    card_tags = ("timm",)

    def matches(self, config) -> bool:
        if model_type(config) != "timm_wrapper":
            return False
        from timm.models import is_model_in_modules

        architecture = str(config_value(config, "architecture", "")).split(".")[0]  # a name may carry its tag
        return is_model_in_modules(architecture, [TIMM_MODULE])

    def part_of(self, name: str) -> str:
        """
        >>> FAMILY.part_of("timm_model.layer3.0.downsample.1.weight"), FAMILY.part_of("timm_model.conv1.0.weight")
        ('stage3', 'embedder')
        """
        match = _PART.match(name.removeprefix("module."))
        if match is None:
            raise ValueError(f"{name!r} is not part of a timm ResNet in TimmWrapperForImageClassification")
        stem, stage, _ = match.groups()
        return "embedder" if stem else f"stage{stage}" if stage else HEAD

    def load(self, path: str, labels: list[str], **hub):
        from transformers import AutoConfig, AutoModelForImageClassification

        with load_errors(path, "--model_name_or_path"):
            config = AutoConfig.from_pretrained(path, **hub)  # names ImageNet's classes when config.json has none
            # TimmWrapperConfig saves the names as `label_names`, which the pipeline reads back as id2label.
            model = AutoModelForImageClassification.from_pretrained(
                path, **label_fields(labels), ignore_mismatched_sizes=True, **hub
            )
        if not same_classes(config, labels):
            # Same class count but other classes (or a resized head): the old weights mean nothing here.
            model.timm_model.get_classifier().reset_parameters()
            logger.info("New %d-class head on %s (its %d-class head is dropped)", len(labels), path, config.num_labels)
        return model

    def image_processor(self, path: str | None, model, image_size: int | None = None, **hub):
        """The processor `AutoImageProcessor` makes from the model's config.json, at `image_size` when given.

        The size goes into the model's `pretrained_cfg`, which is saved with it: the saved folder's processor
        (the pipeline's, `classify`'s) then crops as training did.
        """
        from transformers import TimmWrapperImageProcessor

        config = model.config
        if image_size:
            resized = {key: value for key, value in config.pretrained_cfg.items() if key != "test_input_size"}
            config.pretrained_cfg = {**resized, "input_size": [3, image_size, image_size]}
        return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg, architecture=config.architecture)

    def reframe(self, model, processor, resize: str | None):
        """timm frames by its data config's `crop_mode` (`border` centres and pads with the mean colour).

        It goes into the model's `pretrained_cfg`, with crop_pct 1 so the whole image is kept; the
        saved folder's processor is made from it.
        """
        from ..data.transforms import TIMM_CROP_MODES, processor_geometry

        if resize is None or processor_geometry(processor).fit == resize:
            return processor
        config = model.config
        framing = {"crop_mode": TIMM_CROP_MODES[resize], "crop_pct": 0.875 if resize == "crop" else 1.0}
        config.pretrained_cfg = {**config.pretrained_cfg, **framing}
        return self.image_processor(None, model)

    def gradcam_layer(self, model):
        return model.timm_model.layer4

    def feature_front(self, model) -> list[list]:
        net = model.timm_model  # in the order of timm's ResNet.forward_features
        return [[net.conv1, net.bn1, net.act1, net.maxpool], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]

    def feature_pool(self, model):
        return model.timm_model.global_pool.pool  # its flatten follows in the head, on (N, C, 1, 1) as on features

    def describe(self, config) -> str:
        return f"timm ResNet ({config_value(config, 'architecture')})"

    def labels(self, config) -> list[str]:
        return list(config.get("label_names") or []) or super().labels(config)


FAMILY = TimmResNet()
