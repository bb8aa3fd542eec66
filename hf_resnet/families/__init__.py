"""Model families: what the recipe needs to know about one kind of network, in one module per kind.

The recipe speaks of parts (`embedder`, `stage1`..`stage4`, `head`): it freezes them, gives each
its learning rate, thaws them one by one, caches the output of a frozen front and explains a
prediction on the last stage. A `Family` maps those words onto one network's modules and knows
how its checkpoints load with a new head and where their preprocessing lives; nothing else in
hf_resnet names a module or checks a model's class.

Each module of this package defines one `FAMILY` object, found at first use: adding a family
is one new module (plus its tests and a README line). `family_of` answers which family a model,
a config or a config.json belongs to, and refuses anything else in one line.

Nothing here imports torch or transformers at import time, so the card writer and the argument
checks can ask a config.json which family it is without loading the training stack.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loading import CONFIG_FILE, ModelLoadError, load_errors, looks_local

#: Parts of a network a user can name in `--freeze`, from input to output (every family maps its modules to them).
BACKBONE_PARTS = ("embedder", "stage1", "stage2", "stage3", "stage4")
HEAD = "head"
#: Every part, from input to output: what `--freeze`, the learning-rate groups and the logs name.
PARTS = (*BACKBONE_PARTS, HEAD)


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """A field of a config, whether a `PretrainedConfig` or the dict of a config.json."""
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def model_type(config: Any) -> str | None:
    """A config's `model_type`; a timm config.json on the Hub names none and is `timm_wrapper`, as for AutoConfig."""
    value = config_value(config, "model_type")
    if value is None and isinstance(config, Mapping):
        from transformers.utils.generic import is_timm_config_dict

        value = "timm_wrapper" if is_timm_config_dict(dict(config)) else None
    return value


@dataclass(frozen=True)
class DropRates:
    """Training-time regularisation inside the network, in timm's terms (`timm.models.resnet.ResNet`).

    `drop_path_rate`: stochastic depth, the largest probability of skipping a residual branch; block i of
    n skips with `drop_path_rate * i / (n - 1)` (timm's linear rule: the first block never, the last at the
    full rate). `drop_rate`: dropout on the pooled features before the classifier. Both act only in training.
    """

    drop_path_rate: float = 0.0
    drop_rate: float = 0.0

    def as_timm_args(self) -> dict[str, float]:
        """The `timm.create_model` keyword arguments, without the ones left at 0 (timm's default)."""
        return {key: value for key, value in vars(self).items() if value}


class Family:
    """One kind of network, named by its config; subclasses fill in what differs between kinds."""

    #: How the README and the error messages name it.
    name: str = ""
    #: Hub tags the model card adds for this family.
    card_tags: tuple[str, ...] = ()
    #: Config fields that fix the network's layout (recorded so a resume can check it is the same network).
    layout_keys: tuple[str, ...] = ()

    def matches(self, config: Any) -> bool:
        """Whether this family handles a model with `config` (a `PretrainedConfig` or a config.json dict)."""
        raise NotImplementedError

    def part_of(self, name: str) -> str:
        """The part (`embedder`, `stage1`..`stage4`, `head`) a parameter or module name belongs to."""
        raise NotImplementedError

    def load(self, path: str, labels: list[str], drop_rates: DropRates | None = None, **hub):
        """The checkpoint at `path` with a new head for `labels`, whose names the saved config keeps.

        `drop_rates`: stochastic depth and dropout while training, as timm applies them (see `DropRates`).
        """
        raise NotImplementedError

    def build(self, config, labels: list[str], drop_rates: DropRates | None = None):
        """A randomly initialised model of `config`'s layout with a head for `labels` (from scratch)."""
        raise ValueError(f"{self.name} models are fine-tuned from a checkpoint; hf_resnet cannot build them")

    def image_processor(self, path: str, model, image_size: int | None = None, **hub):
        """The checkpoint's own preprocessing, producing `image_size` crops when given."""
        raise NotImplementedError

    def reframe(self, model, processor, resize: str | None):
        """The processor framing images by `--resize` (None: as it does); saved with the model, so loaders agree."""
        from ..data.transforms import reframe

        return reframe(processor, resize)

    def gradcam_layer(self, model):
        """The module whose output Grad-CAM weighs: the last stage, before pooling."""
        raise NotImplementedError

    def feature_front(self, model) -> list[list]:
        """The modules of each backbone part, input to output, as the model's forward runs them."""
        raise NotImplementedError

    def feature_pool(self, model):
        """The global pooling after the last stage, keeping `(N, C, 1, 1)`, which the model accepts in its place."""
        raise NotImplementedError

    def describe(self, config: Any) -> str:
        """What the network is, for people: the model card's first line."""
        return self.name

    def labels(self, config: Mapping) -> list[str]:
        """The class names a config.json holds, in class-index order."""
        id2label = config.get("id2label") or {}
        return [id2label[key] for key in sorted(id2label, key=int)]


@functools.cache
def families() -> tuple[Family, ...]:
    """Every family: the `FAMILY` of each module in this package."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return tuple(module.FAMILY for module in modules if hasattr(module, "FAMILY"))  # loading.py helps them all


def supported() -> str:
    """The families hf_resnet fine-tunes, for error messages."""
    return " and ".join(family.name for family in families())


def _config(model_or_config: Any) -> Any:
    model = getattr(model_or_config, "module", model_or_config)  # through a DistributedDataParallel wrapper
    return getattr(model, "config", model)


def _what(config: Any) -> str:
    architecture = config_value(config, "architecture")  # a timm checkpoint's network
    return f"{model_type(config)!r} ({architecture})" if architecture else repr(model_type(config))


def known_family(model_or_config: Any) -> Family | None:
    """The family of a model, a `PretrainedConfig` or a config.json dict, or None when no family handles it.

    >>> known_family({"model_type": "resnet"}).name, known_family({"model_type": "vit"})
    ('transformers ResNet', None)
    """
    config = _config(model_or_config)
    return next((family for family in families() if family.matches(config)), None)


def family_of(model_or_config: Any) -> Family:
    """`known_family`, or a `ModelLoadError` naming the network and the families hf_resnet fine-tunes."""
    family = known_family(model_or_config)
    if family is None:
        raise ModelLoadError(
            f"a {_what(_config(model_or_config))} model: hf_resnet fine-tunes {supported()} checkpoints only "
            "(README: Supported model families)"
        )
    return family


def config_labels(config: Mapping) -> list[str]:
    """The class names a config.json holds, in class-index order, however its family spells them.

    >>> config_labels({"model_type": "resnet", "id2label": {"1": "dog", "0": "cat"}})
    ['cat', 'dog']
    """
    return (known_family(config) or Family()).labels(config)


def checkpoint_family(
    path: str | os.PathLike, revision: str = "main", cache_dir: str | None = None, flag: str = "--model_name_or_path"
) -> Family:
    """The family of the checkpoint at `path` (a folder or Hub id), from its config.json alone: no weights are read.

    Raises `ModelLoadError`, one line naming `flag`, when the config cannot be had or belongs to no supported family.
    """
    with load_errors(path, flag):
        if looks_local(path):
            file = Path(path).expanduser() / CONFIG_FILE
        else:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(os.fspath(path), CONFIG_FILE, revision=revision, cache_dir=cache_dir))
        config = json.loads(file.read_text())
    try:
        return family_of(config)
    except ModelLoadError as error:
        raise ModelLoadError(f"{flag} {os.fspath(path)}: {error}") from None
