"""Memory layout of the network: channels-last (NHWC) wherever it is both faster and safe.

oneDNN (CPU) and cuDNN's tensor-core kernels (GPU) compute convolutions in NHWC; a model kept
in PyTorch's default NCHW pays a layout conversion around every convolution. On a CPU,
though, torch 2.14's oneDNN backward of a 1x1 stride-2 convolution with fewer than 16 input
channels in channels-last corrupts memory (a crash a few steps in, found on an AVX-512 CPU with
the 8-channel test configurations). Real ResNets start those shortcuts at 64 channels; only
toy layouts fall under the limit, and they stay in NCHW.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Fewest input channels of a 1x1 stride-2 convolution that oneDNN trains safely in channels-last (see above).
MIN_SAFE_SHORTCUT_CHANNELS = 16


def channels_last_is_safe(model: nn.Module, device: torch.device) -> bool:
    """Whether `model` can train channels-last on `device` without hitting the oneDNN defect above.

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> narrow = ResNetForImageClassification(ResNetConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]))
    >>> channels_last_is_safe(narrow, torch.device("cpu")), channels_last_is_safe(narrow, torch.device("cuda"))
    (False, True)
    """
    if device.type != "cpu":
        return True
    return all(
        module.in_channels >= MIN_SAFE_SHORTCUT_CHANNELS
        for module in model.modules()
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride != (1, 1)
    )


def use_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Convert `model` to channels-last if that is safe on `device`; return whether it was converted."""
    if not channels_last_is_safe(model, device):
        logger.debug("Keeping NCHW: a 1x1 stride-2 convolution with < %d channels", MIN_SAFE_SHORTCUT_CHANNELS)
        return False
    model.to(memory_format=torch.channels_last)
    return True
