"""Freezing parts of a network for transfer learning, and thawing them again.

Freezing means two things, and both matter for transfer learning: frozen parameters get no
gradient, and frozen BatchNorm layers stay in eval mode so their running statistics keep
describing the pretraining data instead of drifting towards a small fine-tuning set (which
silently changes what the frozen convolutions compute). A forward pre-hook enforces the eval
mode because `Trainer` calls `model.train()` at every step.
"""

from __future__ import annotations

import logging

from torch import nn

from ..families import Family
from ..model.parts import batchnorms_in, named_parameters_by_part

logger = logging.getLogger(__name__)

_FROZEN_HOOK = "_hf_resnet_frozen_bn_hook"


def _hold_eval(module: nn.Module, _inputs) -> None:
    module.training = False


def freeze(model: nn.Module, parts: list[str], family: Family | None = None) -> None:
    """Stop gradients and BatchNorm statistic updates in `parts` (e.g. `["embedder", "stage1"]`).

    `family`: the model's (a run passes its plan's); found from the model when not given.

    >>> import torch
    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))
    >>> freeze(model, ["embedder"])
    >>> _ = model.train()(pixel_values=torch.rand(2, 3, 32, 32))  # what the Trainer does at every step
    >>> embedder = model.resnet.embedder.embedder
    >>> embedder.convolution.weight.requires_grad, embedder.normalization.training
    (False, False)
    """
    by_part = named_parameters_by_part(model, family)
    for part in parts:
        for _, parameter in by_part[part]:
            parameter.requires_grad_(False)
    for module in batchnorms_in(model, parts, family):
        if not hasattr(module, _FROZEN_HOOK):
            setattr(module, _FROZEN_HOOK, module.register_forward_pre_hook(_hold_eval))


def unfreeze(model: nn.Module, parts: list[str], family: Family | None = None) -> None:
    """Undo `freeze` for `parts`: gradients flow and BatchNorm follows train/eval mode again."""
    by_part = named_parameters_by_part(model, family)
    for part in parts:
        for _, parameter in by_part[part]:
            parameter.requires_grad_(True)
    for module in batchnorms_in(model, parts, family):
        handle = getattr(module, _FROZEN_HOOK, None)
        if handle is not None:
            handle.remove()
            delattr(module, _FROZEN_HOOK)
