"""Running a PyTorch classifier over batches of pixels: the one loop `classify` and `evaluate` share.

Both must compute the same logits for the same image, so the device and memory layout, the
precision, inference mode and the test-time views are decided here once; the callers differ only
in where batches come from (pictures a user passed, a DataLoader over a test set) and in what they
do with the logits. Nothing here imports the training stack or `datasets`, so `classify` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from ..model.tta import averaged

Forward = Callable[[torch.Tensor], torch.Tensor]


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` in eval mode on `device`, its weights channels-last (oneDNN's and cuDNN's fastest convolutions)."""
    return model.eval().to(device=device, memory_format=torch.channels_last)


def model_forward(model: torch.nn.Module, device: torch.device, precision: str = "fp32") -> Forward:
    """pixel_values -> float32 logits on the CPU, with `model` (prepared by `prepare_model`) in `precision`.

    "bf16" runs fp32 weights under bf16 autocast; a checkpoint saved in bf16 or fp16 runs as it was saved.

    >>> from transformers import ResNetConfig, ResNetForImageClassification
    >>> cpu, tiny = torch.device("cpu"), ResNetConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1])
    >>> model = prepare_model(ResNetForImageClassification(tiny), cpu)
    >>> logits = model_forward(model, cpu, "bf16")(torch.zeros(2, 3, 32, 32))
    >>> logits.shape, logits.dtype, logits.device.type
    (torch.Size([2, 2]), torch.float32, 'cpu')
    """
    dtype = next(model.parameters()).dtype
    bf16 = precision == "bf16" and dtype == torch.float32

    @torch.inference_mode()
    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(device, dtype).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(pixel_values=pixel_values).logits.float().cpu()

    return forward


@torch.inference_mode()
def predict(
    forward: Forward, batches: Iterable[Mapping[str, Any]], tta: str = "none"
) -> Iterator[tuple[Mapping[str, Any], torch.Tensor]]:
    """Each batch (a mapping with `pixel_values`) with its logits, averaged over the `tta` views (model/tta.py).

    >>> batches = [{"pixel_values": torch.tensor([[[[1.0, 3.0]]]])}]
    >>> [logits.item() for _, logits in predict(lambda x: x[..., :1], batches, "flip")]  # mean of 1 and 3
    [2.0]
    """
    for batch in batches:
        yield batch, averaged(forward, batch["pixel_values"], tta)
