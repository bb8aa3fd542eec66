"""Pixels in: the checkpoint's own preprocessing for evaluation, augmentation around it for training.

Evaluation calls the checkpoint's `AutoImageProcessor` itself, so validation numbers are
measured on exactly the tensors the model will see in `transformers.pipeline` or
`hf_resnet.classify`. Training replaces the processor's resize with a random resized crop to the
same output size and keeps its mean/std, so train and eval statistics agree.

How an image is framed (`--resize`) lives in the processor, so whatever loads the saved folder
frames it the same way: `crop` (shortest edge, centre crop: the outer parts of a wide image are
never seen), `squash` (the whole image stretched to the model's size) or `pad` (the whole image,
aspect kept, the rest filled with the mean colour). Training crops follow the same frame.

Training augmentation is split in two so it can run wherever is cheapest. `TrainAugment.plan`
draws every random choice of a sample (crop box, flip, erased patch, auto-augment seed) from its
seed and the image's size alone, before a pixel is decoded: that is what lets the loader decode a
JPEG at reduced size (it knows the crop) and what makes the result independent of where the rest
runs. `TrainAugment.finish` then resizes, flips, normalises and erases a list of crops as one
batch, with plain torch ops: in a DataLoader worker on a CPU, or on the GPU after the uint8 crops
are copied there. Both places run the same function, so they give the same pixels.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from .arguments import RESIZE_POLICIES, SINGLE_LABEL_DEFAULTS, fill_unset
from .prefetch import seeded

if TYPE_CHECKING:  # transforms must not import config at run time: config imports the loading defaults
    from ..data.arguments import DataArguments

_RESAMPLE_TO_INTERPOLATION = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}

#: RandomResizedCrop's aspect-ratio range: torchvision's default, the ImageNet training recipe.
CROP_RATIO = (3 / 4, 4 / 3)

#: Random erasing's area fraction and aspect-ratio ranges: torchvision's defaults (also timm's).
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)
#: Draws before RandomResizedCrop and RandomErasing give up (torchvision's count).
ATTEMPTS = 10
#: The kernels torch can resize with on every device; LANCZOS (CPU only), BOX and HAMMING fall back to BICUBIC.
_TENSOR_INTERPOLATIONS = (InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)


@dataclass(frozen=True)
class Geometry:
    """What a processor produces: output size, normalisation and interpolation."""

    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode
    #: How the image is framed: one of RESIZE_POLICIES.
    fit: str = "crop"
    #: With `pad`: the image sits in the middle (timm) rather than at the top left (transformers' `do_pad`).
    centred: bool = False
    #: With `crop`: the share of the resized image's shorter side the centred box keeps (ConvNext's and timm's
    #: `crop_pct`): the border beyond it is never seen either.
    crop_pct: float = 1.0


def _size_value(size, key_options):
    if size is None:
        return None
    if isinstance(size, int):
        return size
    getter = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    for key in key_options:
        value = getter(key)
        if value:
            return value
    return None


def processor_geometry(processor) -> Geometry:
    """Read the output size, mean/std and interpolation of an image processor.

    Handles the conventions in transformers: `crop_size` (most CNN processors),
    `size={"height", "width"}` (ViT-style), `size={"shortest_edge"}` (ConvNext/ResNet, which
    centre-crops to a square of that edge below 384 px), and the timm data config of a
    `TimmWrapperImageProcessor` (`data_config`: `input_size`, `interpolation`, `mean`, `std`).

    >>> from transformers import ConvNextImageProcessor
    >>> processor_geometry(ConvNextImageProcessor(size={"shortest_edge": 224})).height
    224
    """
    timm = getattr(processor, "data_config", None)
    if timm is not None:
        _, height, width = timm["input_size"]
        interpolation = timm.get("interpolation", "bicubic")
        return Geometry(
            height=int(height),
            width=int(width),
            mean=tuple(timm["mean"]),
            std=tuple(timm["std"]),
            # timm's "random" draws a kernel per image; training keeps to one, its default
            interpolation=InterpolationMode(interpolation if interpolation != "random" else "bicubic"),
            fit=_TIMM_FIT.get(timm.get("crop_mode"), "crop"),
            centred=True,
            crop_pct=float(timm.get("crop_pct") or 1.0) if timm.get("crop_mode", "center") == "center" else 1.0,
        )
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    pad = getattr(processor, "pad_size", None) if getattr(processor, "do_pad", False) else None
    height = _size_value(crop or pad, ("height",)) or _size_value(processor.size, ("height", "shortest_edge"))
    width = _size_value(crop or pad, ("width",)) or _size_value(processor.size, ("width", "shortest_edge"))
    resample = getattr(processor, "resample", 3)
    interpolation = _RESAMPLE_TO_INTERPOLATION.get(
        int(getattr(resample, "value", resample) or 3), InterpolationMode.BICUBIC
    )
    return Geometry(
        height=int(height),
        width=int(width),
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        interpolation=interpolation,
        fit=_fit(processor, crop, pad),
        crop_pct=_crop_pct(processor, crop, pad),
    )


def _crop_pct(processor, crop, pad) -> float:
    """The share of the resized shorter side a centre crop keeps: ConvNext's crop_pct, or crop over shortest edge."""
    if _fit(processor, crop, pad) != "crop":
        return 1.0
    shortest = _size_value(processor.size, ("shortest_edge",))
    if crop and shortest:
        return min(1.0, _size_value(crop, ("height",)) / shortest)
    return float(getattr(processor, "crop_pct", None) or 1.0) if not crop else 1.0


#: timm's eval `crop_mode` for each policy (timm/data/transforms_factory.py), and back.
TIMM_CROP_MODES = {"crop": "center", "squash": "squash", "pad": "border"}
_TIMM_FIT = {mode: policy for policy, mode in TIMM_CROP_MODES.items()}


def _fit(processor, crop, pad) -> str:
    if pad:
        return "pad"
    if crop:
        return "crop"
    shortest = _size_value(processor.size, ("shortest_edge",))
    # ConvNext-style processors crop below 384 px and warp the whole image from 384 up.
    if shortest and not (hasattr(processor, "crop_pct") and shortest >= 384):
        return "crop"
    return "squash"


def reframe(processor, policy: str | None):
    """A processor producing the same size and normalisation as `processor`, framing images by `policy`.

    None keeps `processor`. `crop` is microsoft/resnet-50's ConvNext processor (shortest edge to
    size/0.875, centre crop); `squash` and `pad` are a `ViTImageProcessor`, whose `size` of height and
    width warps the whole image, and whose `max_height`/`max_width` size with `do_pad` letterboxes it at
    the top left, padding after normalisation with 0, that is the mean colour. Plain transformers
    classes, so the transformers pipeline frames images as training did without hf_resnet.

    >>> from transformers import ConvNextImageProcessor
    >>> squash = reframe(ConvNextImageProcessor(size={"shortest_edge": 64}), "squash")
    >>> geometry = processor_geometry(squash)
    >>> type(squash).__name__, geometry.height, geometry.width, geometry.fit
    ('ViTImageProcessor', 64, 64, 'squash')
    """
    geometry = processor_geometry(processor)
    if policy is None or policy == geometry.fit:
        return processor
    from transformers import ConvNextImageProcessor, ViTImageProcessor

    resample = getattr(processor, "resample", 3)
    common = {
        "resample": int(getattr(resample, "value", resample) or 3),
        "image_mean": list(geometry.mean),
        "image_std": list(geometry.std),
    }
    side = {"height": geometry.height, "width": geometry.width}
    if policy == "crop":
        if geometry.height != geometry.width:
            raise ValueError(
                f"--resize crop: the processor's output is not square ({geometry.height}x{geometry.width})"
            )
        return ConvNextImageProcessor(size={"shortest_edge": geometry.height}, crop_pct=0.875, **common)
    if policy == "squash":
        return ViTImageProcessor(size=side, **common)
    if policy == "pad":
        fit = {"max_height": geometry.height, "max_width": geometry.width}
        return ViTImageProcessor(size=fit, do_pad=True, pad_size=side, **common)
    raise ValueError(f"--resize {policy!r}: choose one of {', '.join(RESIZE_POLICIES)}")


def unseen_share(height: int, width: int, geometry: Geometry) -> float:
    """The share of an image's area that evaluation's frame leaves out (0 unless the policy crops).

    A `crop` processor resizes the image so that its `crop_pct` share covers the output, and keeps
    a centred box of the output's aspect: what is left out is the sides of an image of another
    aspect and the crop_pct border all round.

    >>> geometry = Geometry(32, 32, (0.5,) * 3, (0.5,) * 3, InterpolationMode.BILINEAR)
    >>> bordered = Geometry(32, 32, (0.5,) * 3, (0.5,) * 3, InterpolationMode.BILINEAR, crop_pct=0.875)
    >>> unseen_share(100, 200, geometry), round(unseen_share(100, 400, bordered), 3)
    (0.5, 0.809)
    """
    if geometry.fit != "crop":
        return 0.0
    return 1.0 - geometry.crop_pct**2 * aspect_kept(height, width, geometry)


def aspect_kept(height: int, width: int, geometry: Geometry) -> float:
    """The share of an image a box of the output's aspect keeps, border aside: 1 for the same aspect."""
    aspect, image_aspect = geometry.width / geometry.height, width / height
    return min(aspect, image_aspect) / max(aspect, image_aspect)


#: An input size chosen from the data is a multiple of this (a ResNet halves its input five times) within these bounds:
#: below 32 the last stage has nothing left to see; above 224, the ImageNet size, compute grows for detail few
#: from-scratch runs on CPU-sized data can use.
SIZE_STEP, SIZE_RANGE = 32, (32, 224)


def size_from_data(sizes: list[tuple[int, int]], fit: str) -> tuple[int, str]:
    """The square input size for a model trained from scratch on images of `sizes` (height, width), and why.

    The median image's side, rounded to a multiple of 32 within 32..224: with `crop` its shorter side
    (the frame is a square of the shorter side: more pixels would only upsample it); with `squash` or
    `pad` its longer side (the whole image is fitted in: fewer pixels would shrink its long side).

    >>> size_from_data([(32, 64)] * 3, "crop")[0], size_from_data([(32, 64)] * 3, "squash")[0]
    (32, 64)
    >>> print(size_from_data([(480, 640), (500, 375), (90, 100)], "crop")[1])
    the median training image is 500x375 (height x width) and --resize crop frames its shorter side, 375 px:
    384 as a multiple of 32, held within 32..224
    """
    if not sizes:
        return SIZE_RANGE[1], "no training image sizes to read: the ImageNet size"
    side = min if fit == "crop" else max
    height, width = sorted(sizes, key=lambda size: side(size))[len(sizes) // 2]
    rounded = SIZE_STEP * math.floor(side(height, width) / SIZE_STEP + 0.5)
    size = min(max(rounded, SIZE_RANGE[0]), SIZE_RANGE[1])
    which = "shorter" if fit == "crop" else "longer"
    held = f", held within {SIZE_RANGE[0]}..{SIZE_RANGE[1]}" if size != rounded else ""
    return size, (
        f"the median training image is {height}x{width} (height x width) and --resize {fit} frames its {which} "
        f"side, {side(height, width)} px: {rounded} as a multiple of {SIZE_STEP}{held}"
    )


def set_processor_size(processor, size: int) -> None:
    """Make `processor` produce `size` x `size` crops, keeping its resize-to-crop ratio."""
    if isinstance(processor.size, dict) and "shortest_edge" in processor.size or hasattr(processor, "crop_pct"):
        processor.size = {"shortest_edge": size}
    elif _size_value(processor.size, ("max_height",)):
        processor.size = {"max_height": size, "max_width": size}
    else:
        processor.size = {"height": size, "width": size}
    if getattr(processor, "crop_size", None):
        processor.crop_size = {"height": size, "width": size}
    if getattr(processor, "pad_size", None):
        processor.pad_size = {"height": size, "width": size}


def crop_box(
    rng: random.Random, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float] = CROP_RATIO
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box `(top, left, height, width)`, drawn as torchvision draws it.

    >>> crop_box(random.Random(0), 100, 100, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    (0, 0, 100, 100)
    """
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    # Fallback, as torchvision: the largest centred box within the ratio range.
    if width / height < min(ratio):
        w, h = width, round(width / min(ratio))
    elif width / height > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def scaled_box(
    box: tuple[int, int, int, int], fy: float, fx: float, height: int, width: int
) -> tuple[int, int, int, int]:
    """A crop box `(top, left, height, width)` of the full-size image as `(y0, x0, y1, x1)` in a copy scaled by
    `(fy, fx)` to `height` x `width`, to the nearest pixel and never empty.

    >>> scaled_box((10, 20, 100, 200), 0.5, 0.5, 240, 320)
    (5, 10, 55, 110)
    """
    top, left, box_height, box_width = box
    y0, x0 = min(round(top * fy), height - 1), min(round(left * fx), width - 1)
    y1 = max(y0 + 1, min(round((top + box_height) * fy), height))
    x1 = max(x0 + 1, min(round((left + box_width) * fx), width))
    return y0, x0, y1, x1


def erase_box(rng: random.Random, height: int, width: int, p: float) -> tuple[int, int, int, int]:
    """RandomErasing's patch `(top, left, height, width)` in output pixels; `(0, 0, 0, 0)` when none.

    >>> erase_box(random.Random(0), 224, 224, p=0.0)
    (0, 0, 0, 0)
    """
    if p <= 0 or rng.random() >= p:
        return (0, 0, 0, 0)
    log_ratio = (math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]))
    for _ in range(ATTEMPTS):
        erase_area = height * width * rng.uniform(*ERASE_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        h, w = round(math.sqrt(erase_area * aspect)), round(math.sqrt(erase_area / aspect))
        if h < height and w < width:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    return (0, 0, 0, 0)


@functools.lru_cache(maxsize=16)
def _normaliser(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(shift, scale) with uint8 * scale + shift = (uint8 / 255 - mean) / std."""
    # Built once per device: a tensor made from Python floats each batch would be a blocking host-to-GPU copy.
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32, device=device)
    scale = torch.tensor([1 / (255 * s) for s in std], dtype=torch.float32, device=device)
    return shift.view(1, -1, 1, 1), scale.view(1, -1, 1, 1)


@dataclass(frozen=True)
class Plan:
    """Every random choice of one training sample, drawn before its pixels are decoded."""

    box: tuple[int, int, int, int]  # crop (top, left, height, width) in the upright, full-size image
    flip: bool
    erase: tuple[int, int, int, int]  # erased patch in output pixels; zero size = none
    aug_seed: int  # seeds the auto-augment operation and magnitude
    vflip: bool = False  # upside down (drawn last, so the other draws are those of a run without it)


@dataclass(frozen=True)
class TrainAugment:
    """Training augmentation: random resized crop, flip, optional auto-augment, normalisation, random erasing.

    Callable on a PIL image like any torchvision transform; the loader uses `plan` and `finish`
    directly, to decode only what the crop needs and to finish whole batches on the GPU.

    >>> from transformers import ConvNextImageProcessor
    >>> from hf_resnet.data.arguments import DataArguments
    >>> augment = build_train_transform(ConvNextImageProcessor(size={"shortest_edge": 224}), DataArguments())
    >>> plan = augment.plan(300, 400, seed=1)
    >>> plan == augment.plan(300, 400, seed=1)  # the same seed and image size: the same choices
    True
    >>> top, left, height, width = plan.box  # the pixels to decode
    >>> augment.finish([torch.zeros(3, height, width, dtype=torch.uint8)], [plan]).shape
    torch.Size([1, 3, 224, 224])
    """

    geometry: Geometry
    crop_scale: tuple[float, float]
    hflip: float
    auto_augment: str
    random_erasing: float
    vflip: float = 0.0

    def plan(self, height: int, width: int, seed: int) -> Plan:
        """Draw a sample's crop, flip, erased patch and auto-augment seed from `seed` and the image size."""
        rng = random.Random(seed)
        ratio = CROP_RATIO
        if self.geometry.fit != "crop":  # boxes shaped like the image, as the whole image is what evaluation sees
            ratio = (CROP_RATIO[0] * width / height, CROP_RATIO[1] * width / height)
        box = crop_box(rng, height, width, self.crop_scale, ratio)
        flip = rng.random() < self.hflip
        erase = erase_box(rng, self.geometry.height, self.geometry.width, self.random_erasing)
        aug_seed = rng.getrandbits(63)
        return Plan(
            box=box, flip=flip, erase=erase, aug_seed=aug_seed, vflip=self.vflip > 0 and rng.random() < self.vflip
        )

    @functools.cached_property
    def _auto(self) -> Callable | None:
        if self.auto_augment == "trivial":
            return T.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR)
        if self.auto_augment == "rand":
            return T.RandAugment(interpolation=InterpolationMode.BILINEAR)
        return None

    def finish(self, crops: Sequence[torch.Tensor], plans: Sequence[Plan]) -> torch.Tensor:
        """Resize uint8 crops `(3, h, w)` to the output size, flip, auto-augment, normalise and erase them.

        Runs on the crops' device; returns a float32 batch (channels-last on a GPU). Every choice
        comes from the plans as Python values, so on a GPU nothing is read back from it and nothing
        waits for the previous step; normalisation is done once for the whole batch.
        """
        g = self.geometry
        device = crops[0].device
        size = [g.height, g.width]
        interpolation = g.interpolation if g.interpolation in _TENSOR_INTERPOLATIONS else InterpolationMode.BICUBIC
        shape = (len(crops), 3, g.height, g.width)
        # On a CPU, per-channel arithmetic broadcast over a channels-last batch is several times slower than over
        # NCHW; the training step puts the batch in the model's layout anyway.
        layout = torch.contiguous_format if device.type == "cpu" else torch.channels_last
        batch = torch.empty(shape, dtype=torch.uint8, device=device, memory_format=layout)
        placed = []  # with `pad`: where each image sits in its frame (top, left, height, width)
        for i, (crop, plan) in enumerate(zip(crops, plans)):
            if g.fit == "pad":
                placed.append(letterbox(crop.shape[-2], crop.shape[-1], g))
                size = list(placed[-1][2:])
            image = TF.resize(crop, size, interpolation=interpolation, antialias=True)
            if plan.flip:
                image = image.flip(-1)
            if plan.vflip:
                image = image.flip(-2)
            if self._auto is not None:
                with seeded(plan.aug_seed):  # torchvision draws the operation on the CPU generator
                    image = self._auto(image)
            if placed:
                top, left, height, width = placed[-1]
                batch[i, :, top : top + height, left : left + width] = image
            else:
                batch[i] = image
        shift, scale = _normaliser(g.mean, g.std, device)
        batch = batch.float().mul_(scale).add_(shift)
        for i, (top, left, height, width) in enumerate(
            placed
        ):  # the border is the mean colour: 0, as the processor pads
            inside = torch.zeros(g.height, g.width, dtype=torch.bool, device=device)
            inside[top : top + height, left : left + width] = True
            batch[i].masked_fill_(~inside, 0.0)
        for i, plan in enumerate(plans):
            top, left, height, width = plan.erase
            if height and width:  # 0 after normalisation is the dataset mean, torchvision's value=0
                batch[i, :, top : top + height, left : left + width] = 0.0
        return batch

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Augment one PIL image (fully decoded) into a normalised `(3, H, W)` tensor; randomness from torch's RNG."""
        seed = int(torch.randint(0, 2**63 - 1, ()))
        plan = self.plan(image.height, image.width, seed)
        top, left, height, width = plan.box
        crop = np.array(image.convert("RGB").crop((left, top, left + width, top + height)))
        return self.finish([torch.from_numpy(crop).permute(2, 0, 1)], [plan])[0]


def letterbox(height: int, width: int, geometry: Geometry) -> tuple[int, int, int, int]:
    """Where `pad` puts an image of this size in the output: `(top, left, height, width)`.

    As transformers resizes to fit (`get_image_size_for_max_height_width`, truncating) and pads at the
    bottom and right; timm rounds (`ResizeKeepRatio`) and centres it (`CenterCropOrPad`).

    >>> letterbox(40, 100, Geometry(32, 32, (0.5,) * 3, (0.5,) * 3, InterpolationMode.BILINEAR, fit="pad"))
    (0, 0, 12, 32)
    """
    scale = min(geometry.height / height, geometry.width / width)
    size = round if geometry.centred else int
    fitted = max(1, size(height * scale)), max(1, size(width * scale))
    if not geometry.centred:
        return 0, 0, *fitted
    return (geometry.height - fitted[0]) // 2, (geometry.width - fitted[1]) // 2, *fitted


def build_train_transform(processor, data_args: DataArguments) -> TrainAugment:
    """Training augmentation producing the processor's output size, framing and normalisation.

    A run fills the flags left unset with its task's defaults first (`Task.with_data_defaults`);
    for a direct call, what is still unset means what it means for a single-label run.

    >>> from transformers import ConvNextImageProcessor
    >>> from hf_resnet.data.arguments import DataArguments
    >>> build_train_transform(ConvNextImageProcessor(size={"shortest_edge": 224}), DataArguments()).geometry.height
    224
    """
    data_args = fill_unset(data_args, SINGLE_LABEL_DEFAULTS)
    return TrainAugment(
        geometry=processor_geometry(processor),
        crop_scale=(data_args.crop_scale_min, 1.0),
        hflip=data_args.hflip,
        vflip=data_args.vflip,
        auto_augment=data_args.auto_augment,
        random_erasing=data_args.random_erasing,
    )


def build_eval_transform(processor) -> Callable[[list[Image.Image]], torch.Tensor]:
    """The processor itself: evaluation sees exactly what inference will see."""

    def transform(images: list[Image.Image]) -> torch.Tensor:
        return processor(images, return_tensors="pt")["pixel_values"]

    return transform


class MultiHotMix:
    """Mixup or CutMix for multi-hot targets, which torchvision's versions (class indices only) refuse.

    As torchvision does, each image is mixed with its neighbour in the batch (a roll by one), with
    lam ~ Beta(alpha, alpha); the targets are mixed by the same (for CutMix: the pasted area's) share.
    """

    def __init__(self, alpha: float, cutmix: bool = False):
        self.alpha, self.cutmix = alpha, cutmix

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        rolled = images.roll(1, 0)
        if self.cutmix:
            height, width = images.shape[-2:]
            cut_h, cut_w = int(height * math.sqrt(1.0 - lam)), int(width * math.sqrt(1.0 - lam))
            cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
            y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
            x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
            images = images.clone()
            images[..., y0:y1, x0:x1] = rolled[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
        else:
            images = rolled.mul(1.0 - lam).add_(images.mul(lam))
        targets = targets.float()
        return images, targets.roll(1, 0).mul(1.0 - lam).add_(targets.mul(lam))


def _pick_one(mixes: list) -> Callable:
    def mix(images, targets):
        return mixes[int(torch.randint(len(mixes), ()))](images, targets)

    return mix


def _one_of(mixes: list, choose: Callable = _pick_one) -> Callable | None:
    return None if not mixes else mixes[0] if len(mixes) == 1 else choose(mixes)


def build_batch_mix(num_labels: int, data_args: DataArguments) -> Callable | None:
    """Mixup and/or CutMix on a whole batch of class indices (one of the two per batch when both are on), or None."""
    mixes = []
    if data_args.mixup_alpha > 0:
        mixes.append(T.MixUp(alpha=data_args.mixup_alpha, num_classes=num_labels))
    if data_args.cutmix_alpha > 0:
        mixes.append(T.CutMix(alpha=data_args.cutmix_alpha, num_classes=num_labels))
    return _one_of(mixes, T.RandomChoice)


def build_multi_hot_mix(data_args: DataArguments) -> Callable | None:
    """The same for multi-hot targets (`MultiHotMix`), which torchvision's versions refuse."""
    mixes = [MultiHotMix(data_args.mixup_alpha)] if data_args.mixup_alpha > 0 else []
    mixes += [MultiHotMix(data_args.cutmix_alpha, cutmix=True)] if data_args.cutmix_alpha > 0 else []
    return _one_of(mixes)
