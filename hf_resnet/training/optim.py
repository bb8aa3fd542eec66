"""Optimizer parameter groups: one learning rate for the head, another (optionally decayed per stage) for the backbone.

Every parameter is placed in a group, frozen ones included: they get no gradient, so AdamW
leaves them untouched, and gradual unfreezing only has to flip `requires_grad` without
rebuilding the optimizer or the schedule.
"""

from __future__ import annotations

from torch import nn

from ..config.plan import part_learning_rates
from ..families import Family
from ..model.parts import named_parameters_by_part


def parameter_groups(
    model: nn.Module,
    head_lr: float,
    backbone_lr: float,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
    family: Family | None = None,
) -> list[dict]:
    """AdamW groups named `<part>` and `<part>/no_decay`; BatchNorm and bias parameters get no weight decay.

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))
    >>> [group["name"] for group in parameter_groups(model, 1e-3, 1e-5)][:2]
    ['embedder', 'embedder/no_decay']
    """
    rates = part_learning_rates(head_lr, backbone_lr, lr_decay)
    groups = []
    for part, named in named_parameters_by_part(model, family).items():
        # 1-D tensors are BatchNorm scales/shifts and biases: decaying them only fights the normalisation.
        decay = [p for _, p in named if p.ndim > 1]
        no_decay = [p for _, p in named if p.ndim <= 1]
        if decay:
            groups.append({"name": part, "params": decay, "lr": rates[part], "weight_decay": weight_decay})
        if no_decay:
            groups.append({"name": f"{part}/no_decay", "params": no_decay, "lr": rates[part], "weight_decay": 0.0})
    return groups
