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

import functools
import importlib.util
import logging
import re
from pathlib import Path

from . import HEAD, DropRates, Family, config_value, model_type
from .loading import load_errors
from .resnet import label_fields, same_classes

logger = logging.getLogger(__name__)

#: The timm module whose architectures this family handles (`timm.models.resnet`).
TIMM_MODULE = "resnet"
#: The data-config keys of timm's `pretrained_cfg` a model built from scratch keeps (its processor's), not the
#: Hub and license fields of the weights it does not have.
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode", "fixed_input_size")
_REGISTERED = re.compile(r"@register_model\s*\ndef\s+(\w+)\(")
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

    def load(self, path: str, labels: list[str], drop_rates: DropRates | None = None, **hub):
        from transformers import AutoConfig, AutoModelForImageClassification

        with load_errors(path, "--model_name_or_path"):
            config = AutoConfig.from_pretrained(path, **hub)  # names ImageNet's classes when config.json has none
            # TimmWrapperConfig saves the names as `label_names`, which the pipeline reads back as id2label.
            model = AutoModelForImageClassification.from_pretrained(
                path,
                **label_fields(labels),
                model_args=timm_model_args(config.model_args, drop_rates),
                ignore_mismatched_sizes=True,
                **hub,
            )
        if not same_classes(config, labels):
            # Same class count but other classes (or a resized head): the old weights mean nothing here.
            model.timm_model.get_classifier().reset_parameters()
            logger.info("New %d-class head on %s (its %d-class head is dropped)", len(labels), path, config.num_labels)
        return model

    def build(self, config, labels: list[str], drop_rates: DropRates | None = None):
        """timm's network with timm's own initialisation, wrapped as a checkpoint of it would load.

        Loading its weights through `from_pretrained` (as a Hub timm checkpoint loads) makes the wrapper save them
        under timm's own names, so `timm.create_model(..., pretrained_cfg_overlay=dict(file=...))` reads the output.
        """
        import timm
        from transformers import TimmWrapperForImageClassification

        for key, value in label_fields(labels).items():
            setattr(config, key, value)
        config.model_args = timm_model_args(config.model_args, drop_rates)
        network = timm.create_model(config.architecture, num_classes=len(labels), **config.model_args)
        return TimmWrapperForImageClassification.from_pretrained(None, config=config, state_dict=network.state_dict())

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


def timm_model_args(saved: dict | None, drop_rates: DropRates | None) -> dict:
    """The `timm.create_model` arguments a config.json records: never None, which timm cannot read back.

    transformers writes `"model_args": null` when there are none, and `timm.create_model("hf-hub:...")`
    then fails reading it; an empty mapping loads in both. `num_classes` is the head's, which the
    wrapper passes itself. The drop rates are this run's flags, not the checkpoint's (a rate it trained
    with is not kept unasked), recorded as timm records them, so timm rebuilds the same network.

    >>> timm_model_args(None, None), timm_model_args({"num_classes": 5, "drop_path_rate": 0.1, "in_chans": 3}, None)
    ({}, {'in_chans': 3})
    """
    run_flags = ("num_classes", *vars(DropRates()))
    kept = {key: value for key, value in (saved or {}).items() if key not in run_flags}
    return {**kept, **(drop_rates.as_timm_args() if drop_rates else {})}


@functools.cache
def timm_architectures() -> tuple[str, ...]:
    """The architectures of timm's `resnet` module, read from its source without importing timm (or torch).

    The argument checks run before torch is imported, so that a refusal is immediate; timm's registry
    lives in the imported module, its `@register_model` functions in this file.
    """
    return tuple(_REGISTERED.findall(_module_source()))


@functools.cache
def _module_source() -> str:
    """The source of timm's `resnet` module ("" without timm)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return ""
    source = Path(next(iter(spec.submodule_search_locations))) / "models" / f"{TIMM_MODULE}.py"
    return source.read_text(encoding="utf-8") if source.is_file() else ""


def timm_default_tag(architecture: str) -> str | None:
    """The tag of timm's default weights for an architecture (`a1_in1k` for resnet50), read as `timm_architectures`.

    timm's default is the first tag its `default_cfgs` lists for the architecture.
    """
    source = _module_source()
    match = re.search(rf"['\"]{re.escape(architecture)}\.([\w.]+)['\"]\s*:", source) if source else None
    return match.group(1) if match else None


def timm_publishes(architecture: str, tag: str) -> bool:
    """Whether timm's `resnet` module lists weights `architecture.tag` (read as `timm_architectures`)."""
    return re.search(rf"['\"]{re.escape(architecture)}\.{re.escape(tag)}['\"]\s*:", _module_source()) is not None


def scratch_config(architecture: str):
    """A `TimmWrapperConfig` for a timm architecture built from scratch, with timm's data config for it.

    The preprocessing is that of timm's default weights for the architecture (input size, crop, mean/std),
    so the processor saved with the model, and timm's own `resolve_data_config`, read the same numbers.
    """
    from timm.models import get_pretrained_cfg
    from transformers import TimmWrapperConfig

    defaults = get_pretrained_cfg(architecture)
    data_config = {key: value for key, value in (defaults.to_dict() if defaults else {}).items()}
    pretrained_cfg = {key: data_config[key] for key in DATA_CONFIG_KEYS if data_config.get(key) is not None}
    return TimmWrapperConfig(architecture=architecture, pretrained_cfg=pretrained_cfg, model_args={})


FAMILY = TimmResNet()
