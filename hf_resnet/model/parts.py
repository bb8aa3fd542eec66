"""The parts of a network (`embedder`, `stage1`..`stage4`, `head`) and what belongs to each.

Freezing, BatchNorm handling and learning-rate groups all ask this module which part a
parameter or module belongs to; it asks the model's family (`hf_resnet.families`), which alone
knows the network's module names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import nn

from ..families import BACKBONE_PARTS, PARTS, Family, family_of


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


def named_parameters_by_part(
    model: nn.Module, family: Family | None = None
) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Each part's named parameters; `family`: the model's, as the run's plan holds it (else found from the model)."""
    if family is None:  # a direct caller's model; a run passes its plan's family
        family = family_of(model)
    part_of = family.part_of
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {part: [] for part in PARTS}
    for name, parameter in model.named_parameters():
        groups[part_of(name)].append((name, parameter))
    return groups


def batchnorms_in(
    model: nn.Module, parts: list[str], family: Family | None = None
) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    if family is None:
        family = family_of(model)
    part_of, wanted = family.part_of, set(parts)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and part_of(name + ".") in wanted:
            yield module


#: Cache only when the frozen front is embedder..stage3 at least: what is left to train is then stage4 and the
#: head at most, a small share of the step; caching earlier outputs would cost megabytes per image and save less.
MIN_CACHED_PARTS = 4


def cached_parts(frozen: Sequence[str]) -> int:
    """How many leading backbone parts can be cached: the frozen ones, if they are the network's front.

    >>> cached_parts(["embedder", "stage1", "stage2", "stage3", "stage4"]), cached_parts(["stage2"])
    (5, 0)
    """
    count = 0
    while count < len(BACKBONE_PARTS) and BACKBONE_PARTS[count] in frozen:
        count += 1
    return count
