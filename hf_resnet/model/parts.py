"""The parts of a network (`embedder`, `stage1`..`stage4`, `head`) and what belongs to each.

Freezing, BatchNorm handling and learning-rate groups all ask this module which part a
parameter or module belongs to; it asks the model's family (`hf_resnet.families`), which alone
knows the network's module names.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from ..families import PARTS, family_of
from ..model.arguments import BACKBONE_PARTS


def parse_parts(spec: str | None) -> list[str]:
    """Parse a `--freeze` value (`"embedder,stage1"`, `"none"`) into part names, in network order.

    >>> parse_parts("stage1, embedder")
    ['embedder', 'stage1']
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return []
    names = {item.strip() for item in spec.split(",") if item.strip()}
    unknown = sorted(names - set(BACKBONE_PARTS))
    if unknown:
        raise ValueError(f"--freeze: unknown part(s) {unknown}; choose from {', '.join(BACKBONE_PARTS)} or 'none'")
    return [part for part in BACKBONE_PARTS if part in names]


def named_parameters_by_part(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    part_of = family_of(model).part_of
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {part: [] for part in PARTS}
    for name, parameter in model.named_parameters():
        groups[part_of(name)].append((name, parameter))
    return groups


def batchnorms_in(model: nn.Module, parts: list[str]) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    part_of, wanted = family_of(model).part_of, set(parts)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and part_of(name + ".") in wanted:
            yield module
