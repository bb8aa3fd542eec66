"""What the DataLoader indexes: decoded, transformed images whose randomness depends only on (seed, epoch, index).

Augmentation drawn from the global RNG depends on everything drawn before it: how many
batches were skipped on resume, how many workers there are, which rank ran what. Seeding each
sample's augmentation from (seed, epoch, index) makes a run resumed after a crash see exactly
the crops and flips an uninterrupted run would have seen, on any number of workers or ranks.

Training images are decoded for their crop only. The crop box is drawn from the image header
(its size), so a JPEG three times larger than the crop needs is decoded at half or quarter
size by libjpeg-turbo's DCT scaling (`PIL.Image.draft`), which is several times cheaper than a
full decode followed by a downscale, and keeps at least the output resolution inside the crop.
A sample then leaves the worker at one of three stages (`TrainImages(stage=...)`):

- "pixels": fully augmented float tensors, the cheapest for a CPU-only run;
- "crops": uint8 crops, finished in batch on the training device (GPU);
- "jpeg": the undecoded JPEG bytes where the GPU can decode them (`torchvision.io.decode_jpeg`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature

from ..data.device_batch import CropBatch
from ..data.image_cache import ImageCache
from ..data.images import ORIENTATION_TAG, ImageError, open_image, opened, stored_sideways, to_rgb
from ..data.prefetch import lower_priority, seeded
from ..data.transforms import Plan, TrainAugment, scaled_box

#: Where a training sample leaves the DataLoader worker (see the module docstring).
STAGES = ("pixels", "crops", "jpeg")
#: libjpeg's DCT scaling factors, largest first.
_JPEG_REDUCTIONS = (8, 4, 2, 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing the run seed, the epoch and the sample index (no collisions between neighbours).

    >>> sample_seed(42, 0, 1) != sample_seed(42, 1, 0)
    True
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def train_stage(augment_on: str, gpu_decode: bool, device: torch.device) -> str:
    """The `TrainImages` stage for a run's `--augment_on` and `--gpu_decode` on `device`.

    >>> train_stage("auto", False, torch.device("cpu")), train_stage("auto", True, torch.device("cuda"))
    ('pixels', 'jpeg')
    """
    on_device = augment_on == "device" or augment_on == "auto" and device.type == "cuda"
    if gpu_decode and device.type != "cuda":
        raise ValueError(f"--gpu_decode needs a CUDA device; training runs on {device.type}")
    if gpu_decode:
        return "jpeg"
    return "crops" if on_device else "pixels"


def _undecoded(dataset: Dataset) -> Dataset:
    # Decoding ourselves (not in datasets) names the file in errors and lets training decode JPEGs at reduced size.
    return dataset.cast_column("image", ImageFeature(decode=False))


def _decode(item: dict, index: int, decode: Callable = open_image):
    """Decode a `datasets.Image(decode=False)` value, naming its path (or index) in errors."""
    return decode(item["bytes"] if item.get("bytes") else item["path"], name=item.get("path") or f"image #{index}")


def _reduction(plan: Plan, out_height: int, out_width: int) -> int:
    """The largest JPEG scaling factor that still leaves the crop at least the output size."""
    _, _, height, width = plan.box
    return next(s for s in _JPEG_REDUCTIONS if height // s >= out_height and width // s >= out_width or s == 1)


def decode_crop(
    source: str | bytes, augment: TrainAugment, seed: int, name: str | None = None
) -> tuple[torch.Tensor, Plan]:
    """Plan a sample's augmentation from the image header, then decode just enough of the image for its crop.

    Returns the crop as a uint8 `(3, h, w)` tensor (at least the output size unless the image is
    smaller) and the plan. Errors name the file, as `open_image`'s do.
    """
    with opened(source, name) as image:
        turned = stored_sideways(image)
        height, width = (image.width, image.height) if turned else (image.height, image.width)
        plan = augment.plan(height, width, seed)
        reduction = _reduction(plan, augment.geometry.height, augment.geometry.width)
        if reduction > 1:  # a no-op for formats other than JPEG
            image.draft(None, (image.width // reduction, image.height // reduction))
        image.load()
        image = to_rgb(image)
    # The reduced image is ceil(size / reduction): map the box by the actual ratio, to the nearest pixel.
    y0, x0, y1, x1 = scaled_box(plan.box, image.height / height, image.width / width, image.height, image.width)
    crop = np.array(image.crop((x0, y0, x1, y1)))  # cropping first: converting the whole image costs a copy
    return torch.from_numpy(crop).permute(2, 0, 1), plan


def gpu_decodable(source: str | bytes) -> tuple[int, int] | None:
    """The `(height, width)` of a JPEG that `torchvision.io.decode_jpeg` on a GPU decodes as PIL would, else None.

    CMYK JPEGs and EXIF-rotated ones are left to the CPU, which converts and turns them upright.

    >>> gpu_decodable(b"not a jpeg") is None
    True
    """
    try:
        with opened(source) as image:
            if (
                image.format != "JPEG"
                or image.mode not in ("RGB", "L")
                or image.getexif().get(ORIENTATION_TAG, 1) != 1
            ):
                return None
            return image.height, image.width
    except ImageError:
        return None  # the CPU decode names the file


class TrainImages(torch.utils.data.Dataset):
    """Training split: decode, augment with a per-(seed, epoch, index) RNG, return tensors.

    With a `TrainAugment` transform (what `build_train_transform` returns) only the crop is
    decoded, at reduced size where the JPEG allows, or cut from the decoded copy in `cache`, and
    `stage` says how far the worker goes; any other transform gets the fully decoded PIL image.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable,
        seed: int,
        decode: Callable = open_image,
        stage: str = "pixels",
        cache: ImageCache | None = None,
    ):
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")
        if stage != "pixels" and not isinstance(transform, TrainAugment):
            raise ValueError(f"stage {stage!r} needs the TrainAugment of build_train_transform")
        self.dataset = _undecoded(dataset)
        self.transform, self.seed, self.decode, self.stage = transform, seed, decode, stage
        if cache is not None and (len(cache) != len(dataset) or not isinstance(transform, TrainAugment)):
            raise ValueError("an image cache needs the TrainAugment of build_train_transform and one entry per image")
        # Crops of the decoded copies (data/image_cache.py): nothing left for a GPU to decode.
        self.cache, self.stage = cache, "crops" if cache is not None and stage == "jpeg" else stage
        # With the cache a sample needs only its label from the table, not the image's bytes.
        self.labels = list(self.dataset["label"]) if cache is not None else None
        # Shared memory, so persistent DataLoader workers see the epoch the main process sets.
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._niced = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if not self._niced and torch.utils.data.get_worker_info() is not None:
            lower_priority()  # each worker holds its own copy of this object, so once per worker
            self._niced = True
        seed = sample_seed(self.seed, int(self.epoch), index)
        if self.cache is not None:
            crop, plan = self.cache.crop(index, self.transform, seed)
            return self._leave(crop, plan, f"image #{index}", {"labels": self.labels[index], "sample_seed": seed})
        item = self.dataset[index]
        example = {"labels": item["label"], "sample_seed": seed}
        image = item["image"]
        source = image["bytes"] if image.get("bytes") else image["path"]
        name = image.get("path") or f"image #{index}"
        if not isinstance(self.transform, TrainAugment) or self.decode is not open_image:
            decoded = _decode(image, index, self.decode)
            with seeded(seed):
                return {"pixel_values": self.transform(decoded), **example}
        if self.stage == "jpeg" and (size := gpu_decodable(source)) is not None:
            plan = self.transform.plan(*size, seed)
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            return {"jpeg": data, "plan": plan, "name": name, "augment": self.transform, **example}
        crop, plan = decode_crop(source, self.transform, seed, name=name)
        return self._leave(crop, plan, name, example)

    def _leave(self, crop: torch.Tensor, plan: Plan, name: str, example: dict) -> dict:
        """The sample as it leaves the worker at this dataset's stage."""
        if self.stage == "pixels":
            return {"pixel_values": self.transform.finish([crop], [plan])[0], **example}
        return {"crop": crop, "plan": plan, "name": name, "augment": self.transform, **example}


class EvalImages(torch.utils.data.Dataset):
    """Validation split: full-resolution decode and the processor itself, exactly as at inference."""

    def __init__(self, dataset: Dataset, transform: Callable[[list], torch.Tensor]):
        self.dataset = _undecoded(dataset)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        pixels = self.transform([_decode(item["image"], index)])[0]
        return {"pixel_values": pixels, "labels": item["label"]}


def collate(examples: list[dict]) -> dict:
    """Stack examples into a batch; module-level so DataLoader workers can pickle it.

    `mix_seed` is a Python int, not a tensor, so seeding the batch mix never reads a value back
    from the GPU. Crops (stages "crops" and "jpeg") travel as one `CropBatch`.
    """
    labels = [example["labels"] for example in examples]
    # Multi-hot rows (multi-label data) stay floats, the targets a BCE loss takes; class indices are longs.
    batch: dict = {"labels": torch.tensor(labels, dtype=torch.float32 if isinstance(labels[0], list) else torch.long)}
    if "pixel_values" in examples[0]:
        batch["pixel_values"] = torch.stack([example["pixel_values"] for example in examples])
    else:
        batch["crops"] = CropBatch.collate(examples)
    if "sample_seed" in examples[0]:
        batch["sample_seed"] = torch.tensor([example["sample_seed"] for example in examples], dtype=torch.int64)
        batch["mix_seed"] = int(examples[0]["sample_seed"])
    return batch
