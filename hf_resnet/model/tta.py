"""Test-time augmentation: a prediction averaged over the image and its mirror image.

A classifier trained with random horizontal flips has seen both orientations of every
training image; scoring both at test time and averaging removes the part of its answer that
depends on which way the picture happens to face. The logits are averaged (not the
probabilities), so softmax, sigmoid, temperature and thresholds apply to the result exactly as
to a single forward pass. Use it only where a mirrored image is the same class (not for text,
digits or road signs). Costs one extra forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def flip_averaged(forward: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
    """The mean of `forward` on the batch and on its horizontal mirror (width is the last dimension).

    >>> flip_averaged(lambda x: x[..., :1], torch.tensor([[[[1.0, 3.0]]]])).item()  # mean of 1 and 3
    2.0
    """
    return (forward(pixel_values) + forward(pixel_values.flip(-1))) / 2
