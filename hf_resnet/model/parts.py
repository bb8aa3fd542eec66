"""The one map from the transformers ResNet's parameter names to the parts of the network.

Freezing, BatchNorm handling and learning-rate groups all ask this module which part a
parameter or module belongs to; nothing else parses names. The names follow
`transformers.models.resnet.modeling_resnet`: `resnet.embedder.*` is the stem,
`resnet.encoder.stages.{i}.*` is stage i+1, `classifier.*` is the head.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn

from ..model.arguments import BACKBONE_PARTS

HEAD = "head"
#: Every part, from input to output.
PARTS = (*BACKBONE_PARTS, HEAD)

_STAGE = re.compile(r"^resnet\.encoder\.stages\.(\d+)\.")


def part_of(name: str) -> str:
    """Return the part (`embedder`, `stage1`..`stage4`, `head`) a parameter or module name belongs to.

    >>> part_of("resnet.encoder.stages.3.layers.0.shortcut.convolution.weight")
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
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {part: [] for part in PARTS}
    for name, parameter in model.named_parameters():
        groups[part_of(name)].append((name, parameter))
    return groups


def batchnorms_in(model: nn.Module, parts: list[str]) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    wanted = set(parts)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and part_of(name + ".") in wanted:
            yield module
