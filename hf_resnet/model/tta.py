"""Test-time augmentation: a prediction averaged over a few views of the same picture.

A classifier trained with random flips and crops has seen every training image mirrored and
shifted; scoring several such views at test time and averaging removes the part of its answer
that depends on which way the picture faces or where the object sits in the frame.

- `flip`: the image and its mirror image. Only where a mirrored image is the same class
  (not for text, digits or road signs). One extra forward pass.
- `crops`: the image and four crops moved toward its corners by 1/16 of its size (edges
  repeated), for any task whose classes do not depend on a few pixels of position. Four extra passes.
- `flip+crops`: both, ten views.

The logits are averaged (not the probabilities), so softmax, sigmoid, temperature and thresholds
apply to the result exactly as to a single forward pass; a model trained with `--tta` has its
temperature or thresholds fitted on these averaged logits and records the mode in config.json
(`tta`), which `classify` and `hf-resnet evaluate` then use by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .arguments import TTA_MODES

#: How far the `crops` views move toward each corner, as a fraction of the image's side.
CROP_SHIFT = 1 / 16


def resolve_mode(tta: bool | str | None, default: str | None = None) -> str:
    """A checked mode from what callers pass: True is `flip`, False `none`, None the model's own (`default`).

    >>> resolve_mode(True), resolve_mode(None, "crops"), resolve_mode(None)
    ('flip', 'crops', 'none')
    """
    if tta is None:
        tta = default or "none"
    if isinstance(tta, bool):
        return "flip" if tta else "none"
    if tta not in TTA_MODES:
        raise ValueError(f"tta {tta!r}: choose one of {', '.join(TTA_MODES)} (or True for flip)")
    return tta


def _shifted(pixel_values: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The batch moved by (dy, dx) pixels, the uncovered border filled by repeating the edge."""
    height, width = pixel_values.shape[-2:]
    padded = torch.nn.functional.pad(pixel_values, (abs(dx),) * 2 + (abs(dy),) * 2, mode="replicate")
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top : top + height, left : left + width].contiguous(memory_format=_layout(pixel_values))


def _layout(pixel_values: torch.Tensor) -> torch.memory_format:
    channels_last = pixel_values.ndim == 4 and pixel_values.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def views(pixel_values: torch.Tensor, mode: str) -> Iterator[torch.Tensor]:
    """The batches a mode scores: the batch itself first, then its flipped and/or shifted copies."""
    mode = resolve_mode(mode)
    bases = [pixel_values, pixel_values.flip(-1)] if "flip" in mode else [pixel_values]
    for base in bases:
        yield base
        if "crops" in mode:
            step = max(1, round(min(base.shape[-2:]) * CROP_SHIFT))
            for dy, dx in ((step, step), (step, -step), (-step, step), (-step, -step)):
                yield _shifted(base, dy, dx)


def averaged(forward: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor, mode: str) -> torch.Tensor:
    """The mean of `forward` over the mode's views (`forward` itself for `none`).

    >>> averaged(lambda x: x[..., :1], torch.tensor([[[[1.0, 3.0]]]]), "flip").item()  # mean of 1 and 3
    2.0
    """
    outputs = [forward(view) for view in views(pixel_values, mode)]
    return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(dim=0)
