"""Optimizer parameter groups: one learning rate for the head, another (optionally decayed per stage) for the backbone.

Every parameter is placed in a group, frozen ones included: they get no gradient, so AdamW
leaves them untouched, and gradual unfreezing only has to flip `requires_grad` without
rebuilding the optimizer or the schedule.
"""

from __future__ import annotations

import math

from torch import nn

from ..config.arguments import ResNetTrainingArguments
from ..families import HEAD
from ..model.arguments import BACKBONE_PARTS
from ..model.parts import named_parameters_by_part


def part_learning_rates(head_lr: float, backbone_lr: float, lr_decay: float = 1.0) -> dict[str, float]:
    """Learning rate of each part: stage4 gets `backbone_lr`, each part closer to the input `lr_decay` times less.

    >>> part_learning_rates(1e-3, 1e-4, 0.5)["stage3"]
    5e-05
    """
    rates = {HEAD: head_lr}
    for depth, part in enumerate(reversed(BACKBONE_PARTS)):
        rates[part] = backbone_lr * lr_decay**depth
    return rates


def parameter_groups(
    model: nn.Module, head_lr: float, backbone_lr: float, lr_decay: float = 1.0, weight_decay: float = 0.0
) -> list[dict]:
    """AdamW groups named `<part>` and `<part>/no_decay`; BatchNorm and bias parameters get no weight decay.

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> model = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))
    >>> [group["name"] for group in parameter_groups(model, 1e-3, 1e-5)][:2]
    ['embedder', 'embedder/no_decay']
    """
    rates = part_learning_rates(head_lr, backbone_lr, lr_decay)
    groups = []
    for part, named in named_parameters_by_part(model).items():
        # 1-D tensors are BatchNorm scales/shifts and biases: decaying them only fights the normalisation.
        decay = [p for _, p in named if p.ndim > 1]
        no_decay = [p for _, p in named if p.ndim <= 1]
        if decay:
            groups.append({"name": part, "params": decay, "lr": rates[part], "weight_decay": weight_decay})
        if no_decay:
            groups.append({"name": f"{part}/no_decay", "params": no_decay, "lr": rates[part], "weight_decay": 0.0})
    return groups


def scaled_learning_rates(
    head_lr: float, backbone_lr: float, args: ResNetTrainingArguments
) -> tuple[float, float, str]:
    """Apply `--lr_scaling` for the effective batch; also return the sentence printed at start."""
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    ratio = effective / args.lr_reference_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[args.lr_scaling]  # checked in checks.py
    rule = (
        f"LR scaling: {args.lr_scaling} (effective batch {effective}, reference {args.lr_reference_batch}: "
        f"x{factor:.4g})"
        if args.lr_scaling != "none"
        else f"LR scaling: none (rates used as given at effective batch {effective}; "
        f"--lr_scaling linear would multiply them by {ratio:.4g})"
    )
    return head_lr * factor, backbone_lr * factor, rule
