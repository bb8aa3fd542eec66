"""Building the network of a run: a checkpoint of a supported family with a new head, or a fresh ResNet.

What differs between families (how a checkpoint loads, where its preprocessing lives) is asked
of the family (`hf_resnet.families`); freezing is `model/freezing.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..families import Family, checkpoint_family, family_of
from ..families.loading import check_model_source
from ..families.resnet import ARCHITECTURES, resnet_config
from ..families.timm_resnet import scratch_config
from ..model.arguments import ModelArguments, arch_problem
from .freezing import freeze


def build_model(
    model_args: ModelArguments,
    labels: list[str],
    config=None,
    resize: str | None = None,
    family: Family | None = None,
    frozen: Sequence[str] | None = None,
):
    """Return (model, image processor, frozen part names) for a run, head sized for `labels`.

    `resize`: how the processor frames images (`--resize`); None keeps the checkpoint's own framing.
    `family` and `frozen`: as the run's plan resolved them (config/plan.py); when not given they are found
    from the checkpoint's config.json (or the layout) and `--freeze`.

    `config` builds a randomly initialised model of that exact layout (used by the embedded
    default and tests); otherwise `--model_name_or_path` loads a checkpoint, or `--arch` builds one.

    >>> model, processor, frozen = build_model(ModelArguments(arch="resnet-18"), ["cat", "dog"])
    >>> model.config.id2label, frozen
    ({0: 'cat', 1: 'dog'}, [])
    """
    path = model_args.model_name_or_path
    if path:
        hub = {"revision": model_args.revision, "cache_dir": model_args.cache_dir}
        if family is None:  # a run's plan has checked the source and read its family (config/checks.py)
            check_model_source(path, "--model_name_or_path", need_processor=False, **hub)  # a family may default
            family = checkpoint_family(path, **hub)
        model = family.load(path, labels, model_args.drop_rates(), **hub)
        processor = family.image_processor(
            model_args.image_processor_name or path, model, model_args.image_size, **hub
        )
    else:
        config = config if config is not None else arch_config(model_args.arch, model_args.variant)
        if family is None:
            family = family_of(config)
        model = family.build(config, labels, model_args.drop_rates())
        processor = family.image_processor(model_args.image_processor_name, model, model_args.image_size)
    processor = family.reframe(model, processor, resize)
    frozen = list(frozen) if frozen is not None else model_args.frozen_parts()
    freeze(model, frozen, family)
    return model, processor, frozen


def arch_config(arch: str, variant: str = "v1.5"):
    """The config of `--arch`: a transformers layout (`resnet-50`, with its `--variant`) or a timm architecture."""
    if problem := arch_problem(arch):
        raise ValueError(f"--arch {arch!r}: {problem}")
    return resnet_config(arch, variant) if arch in ARCHITECTURES else scratch_config(arch)
