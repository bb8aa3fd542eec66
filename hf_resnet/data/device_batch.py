"""A batch of uint8 crops on its way from the DataLoader workers to the training device, finished there.

On a GPU the model is fast enough that per-sample float work in the workers (resize,
normalise) becomes the bottleneck, and float tensors are four times the bytes of uint8 ones to
pin and copy. So workers send only what they must decode: uint8 crops packed back to back in
one buffer (one pinned copy, one host-to-device transfer, no padding), or the JPEG bytes
themselves for `torchvision.io.decode_jpeg` to decode on the GPU. `CropBatch.finish` then runs
`TrainAugment.finish` on the device. The crop boxes and sizes stay Python ints, so slicing the
batch apart on the GPU never reads a value back from it.

A `CropBatch` has `pin_memory()` and `to()`, so the DataLoader pins it and accelerate moves it
with the rest of the batch (non-blocking with pinned memory).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ..data.images import ImageError
from ..data.transforms import Plan, TrainAugment


def _shared_empty(numel: int) -> torch.Tensor:
    # In a worker, allocate in shared memory directly, as torch's default_collate does: no copy when sent.
    tensor = torch.empty(numel, dtype=torch.uint8)
    return tensor.share_memory_() if torch.utils.data.get_worker_info() is not None else tensor


def decode_jpegs(data: list[bytes], device: torch.device, names: list[str]) -> list[torch.Tensor]:
    """Decode JPEG bytes to uint8 `(3, H, W)` tensors on `device` (nvjpeg on a GPU), naming a file that fails."""
    encoded = [torch.frombuffer(bytearray(item), dtype=torch.uint8) for item in data]
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its decoders in favour of TorchCodec, which is not a dependency here.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            for item, name in zip(encoded, names):  # the batch call says nothing about which image failed
                try:
                    decode_jpeg(item, mode=ImageReadMode.RGB, device=device)
                except RuntimeError as error:
                    raise ImageError(name, f"corrupt JPEG ({error})", "Re-export or remove the file") from None
            raise


@dataclass(frozen=True)
class CropBatch:
    """Per sample, either a CPU-decoded crop (packed in `pixels`) or JPEG bytes and the crop box to cut from them."""

    augment: TrainAugment
    pixels: torch.Tensor  # uint8, the HWC crops back to back
    shapes: tuple[tuple[int, int], ...]  # (h, w) of each packed crop; (0, 0) for a JPEG sample
    jpegs: tuple[bytes | None, ...]
    names: tuple[str, ...]
    plans: tuple[Plan, ...]

    @classmethod
    def collate(cls, examples: list[dict]) -> CropBatch:
        """Pack the crops of `TrainImages(stage="crops" or "jpeg")` examples into one buffer."""
        crops = [example.get("crop") for example in examples]
        sizes = [0 if crop is None else crop.numel() for crop in crops]
        pixels = _shared_empty(sum(sizes))
        offset = 0
        for crop, size in zip(crops, sizes):
            if crop is not None:  # crops are (3, h, w) views of HWC arrays: pack them in HWC order
                pixels[offset : offset + size].view(crop.shape[1], crop.shape[2], 3).copy_(crop.permute(1, 2, 0))
            offset += size
        return cls(
            augment=examples[0]["augment"],
            pixels=pixels,
            shapes=tuple((0, 0) if crop is None else (crop.shape[1], crop.shape[2]) for crop in crops),
            jpegs=tuple(example.get("jpeg") for example in examples),
            names=tuple(example["name"] for example in examples),
            plans=tuple(example["plan"] for example in examples),
        )

    def __len__(self) -> int:
        return len(self.shapes)

    def pin_memory(self) -> CropBatch:
        return replace(self, pixels=self.pixels.pin_memory())

    def to(self, device, non_blocking: bool = False) -> CropBatch:
        return replace(self, pixels=self.pixels.to(device, non_blocking=non_blocking))

    def crops(self) -> list[torch.Tensor]:
        """The uint8 `(3, h, w)` crops on the batch's device, decoding the JPEG samples there."""
        device = self.pixels.device
        jpeg_indices = [i for i, data in enumerate(self.jpegs) if data is not None]
        decoded = {}
        if jpeg_indices:
            images = decode_jpegs([self.jpegs[i] for i in jpeg_indices], device, [self.names[i] for i in jpeg_indices])
            decoded = dict(zip(jpeg_indices, images))
        crops, offset = [], 0
        for i, (height, width) in enumerate(self.shapes):
            if i in decoded:
                top, left, box_height, box_width = self.plans[i].box  # JPEG samples: in the decoded image
                crops.append(decoded[i][:, top : top + box_height, left : left + box_width])
            else:
                size = height * width * 3
                crops.append(self.pixels[offset : offset + size].view(height, width, 3).permute(2, 0, 1))
                offset += size
        return crops

    def finish(self) -> torch.Tensor:
        """The augmented, normalised float batch `(B, 3, H, W)`, channels-last, on the batch's device."""
        return self.augment.finish(self.crops(), self.plans)
