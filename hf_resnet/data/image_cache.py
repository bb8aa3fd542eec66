"""Training images decoded once: each step then only crops, flips and normalises (FFCV's idea, in our data path).

Decoding a JPEG is most of a training sample's CPU cost, and it is the same work every epoch.
The cache decodes each training image once, upright RGB, shrunk so its shortest side is a little
more than the model's input side (`SIDE_MARGIN`), and keeps the uint8 pixels of all images in one
flat array: in memory, or in a memory-mapped file under the cache folder that later runs on the
same data and processor reuse (its name is a hash of every image's bytes and of the output size).

The augmentation is unchanged: every random choice is still drawn from the sample's seed and the
*original* image size (`TrainAugment.plan`), and the crop box is mapped onto the smaller copy, as
the JPEG reduced-size decode maps it already. Only the pixels a crop is resampled from differ: a
small crop of a large photo is upsampled from fewer of them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ..data.images import opened, stored_sideways, to_rgb
from ..data.transforms import Geometry, Plan, TrainAugment, scaled_box
from ..runtime.launcher import cores_per_process

logger = logging.getLogger(__name__)

#: The cached copy's shortest side as a multiple of the model's input side. RandomResizedCrop's largest boxes
#: span most of the image, so a copy just above the output size keeps those at full resolution.
SIDE_MARGIN = 1.15
#: The share of the memory available (and of the disk free in the cache folder) a cache may take by default.
BUDGET_SHARE = 0.25
#: Images whose headers are read to estimate the cache's size before deciding to build it.
ESTIMATE_SAMPLE = 200
#: Bumped whenever what a cache file holds changes, so an old file is never read as a new one.
FORMAT_VERSION = 1


def cache_root() -> Path:
    """Where `disk` caches live: `$HF_RESNET_CACHE/images`, by default `~/.cache/hf_resnet/images`."""
    return Path(os.environ.get("HF_RESNET_CACHE", Path.home() / ".cache" / "hf_resnet")) / "images"


def cached_size(height: int, width: int, geometry: Geometry) -> tuple[int, int]:
    """The `(height, width)` an image of this upright size is kept at: shrunk to the margin, never enlarged.

    >>> from torchvision.transforms import InterpolationMode
    >>> cached_size(480, 640, Geometry(224, 224, (0.5,) * 3, (0.5,) * 3, InterpolationMode.BILINEAR))
    (258, 344)
    """
    target = math.ceil(SIDE_MARGIN * max(geometry.height, geometry.width))
    scale = target / min(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def _sources(dataset: Dataset) -> Iterator[tuple[str | bytes, str]]:
    raw = dataset.cast_column("image", ImageFeature(decode=False))
    for index, item in enumerate(raw["image"]):
        yield (item["bytes"] if item.get("bytes") else item["path"]), item.get("path") or f"image #{index}"


def _upright_size(source: str | bytes, name: str) -> tuple[int, int]:
    with opened(source, name) as image:
        turned = stored_sideways(image)
        return (image.width, image.height) if turned else (image.height, image.width)


def estimated_bytes(dataset: Dataset, geometry: Geometry) -> int:
    """The cache's size, from the headers of up to `ESTIMATE_SAMPLE` images spread over `dataset`."""
    if not len(dataset):
        return 0
    step = max(1, len(dataset) // ESTIMATE_SAMPLE)
    sample = list(_sources(dataset.select(range(0, len(dataset), step))))[:ESTIMATE_SAMPLE]
    sizes = [cached_size(*_upright_size(source, name), geometry) for source, name in sample]
    return round(len(dataset) * 3 * sum(h * w for h, w in sizes) / len(sizes))


def _free_disk(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def decide_mode(requested: str | None, dataset: Dataset, geometry: Geometry, processes: int = 1) -> tuple[str, str]:
    """`(mode, why)`: the mode asked for, or by default the one the decoded copy fits (`BUDGET_SHARE`).

    `disk` where it fits both in the memory available (its pages are read at random, so they must stay
    in the page cache) and in the disk free under `cache_root()`; `memory` (one copy per process) where
    it fits the memory only; otherwise `off`.
    """
    if requested is not None:
        return requested, f"--image_cache {requested}"
    import psutil

    size = estimated_bytes(dataset, geometry)
    memory, disk = psutil.virtual_memory().available, _free_disk(cache_root())
    facts = f"decoded copy about {size / 2**20:,.0f} MB; {memory / 2**30:,.1f} GB of memory available"
    if size <= BUDGET_SHARE * memory and size <= BUDGET_SHARE * disk:
        return "disk", f"{facts}, {disk / 2**30:,.1f} GB free in {cache_root()}"
    if size * processes <= BUDGET_SHARE * memory:
        return "memory", f"{facts}; too little disk free in {cache_root()} ({disk / 2**30:,.1f} GB)"
    return "off", f"{facts}: over a quarter of it"


@dataclass
class ImageCache:
    """Every training image's shrunk uint8 pixels in one flat array, and where each one lies in it."""

    #: Per image: offset in `pixels`, cached height and width, original (upright) height and width.
    index: np.ndarray
    pixels: np.ndarray | None
    #: The memory-mapped file (`disk`), opened again in each process that unpickles the cache.
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn gets the file's path, not a copy of its pixels.
        return {**self.__dict__, "pixels": None if self.path is not None else self.pixels}

    def image(self, position: int) -> np.ndarray:
        if self.pixels is None:
            self.pixels = np.load(self.path / "pixels.npy", mmap_mode="r")
        offset, height, width = (int(value) for value in self.index[position, :3])
        return self.pixels[offset : offset + height * width * 3].reshape(height, width, 3)

    def crop(self, position: int, augment: TrainAugment, seed: int) -> tuple[torch.Tensor, Plan]:
        """The sample's plan, drawn from the original size as without the cache, and its crop of the kept copy."""
        _, height, width, original_height, original_width = (int(value) for value in self.index[position])
        plan = augment.plan(original_height, original_width, seed)
        y0, x0, y1, x1 = scaled_box(plan.box, height / original_height, width / original_width, height, width)
        crop = np.array(self.image(position)[y0:y1, x0:x1])  # a writable copy of the crop only
        return torch.from_numpy(crop).permute(2, 0, 1), plan


def _inspect(source: str | bytes, name: str, hashed: bool) -> tuple[tuple[int, int], bytes]:
    """An image's upright size from its header and, if `hashed`, a digest of its bytes: the file read once."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes() if hashed else source
    digest = hashlib.blake2b(data, digest_size=16).digest() if hashed else b""
    return _upright_size(data, name), digest


def _key(digests: list[bytes], geometry: Geometry) -> str:
    key = hashlib.blake2b(digest_size=16)
    key.update(f"v{FORMAT_VERSION} {SIDE_MARGIN} {geometry.height}x{geometry.width}".encode())
    for digest in digests:
        key.update(digest)
    return key.hexdigest()


def _decode_into(target: np.ndarray, source: str | bytes, name: str, height: int, width: int) -> None:
    """Decode one image upright, shrunk to `height` x `width`, into `target`; errors name the file."""
    with opened(source, name) as image:
        if image.format == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for
            turned = stored_sideways(image)
            image.draft("RGB", (height, width) if turned else (width, height))
        image.load()
        image = to_rgb(image)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    target[:] = np.asarray(image).reshape(-1)


def build(dataset: Dataset, geometry: Geometry, mode: str) -> ImageCache | None:
    """The cache of `dataset`'s images for `geometry`'s output size, built or (`disk`) reused; None when `off`."""
    if mode == "off" or not len(dataset):
        return None
    sources = list(_sources(dataset))
    # PIL releases the GIL while it reads headers and decodes, hashlib while it hashes.
    with ThreadPoolExecutor(max_workers=cores_per_process()) as pool:
        inspected = list(pool.map(lambda item: _inspect(*item, hashed=mode == "disk"), sources))
    index = np.zeros((len(sources), 5), dtype=np.int64)
    for position, ((height, width), _) in enumerate(inspected):
        index[position, 1:] = (*cached_size(height, width, geometry), height, width)
    sizes = index[:, 1] * index[:, 2] * 3
    index[1:, 0] = np.cumsum(sizes)[:-1]
    folder = cache_root() / _key([digest for _, digest in inspected], geometry) if mode == "disk" else None
    if folder is not None and (folder / "index.npy").exists() and np.array_equal(np.load(folder / "index.npy"), index):
        logger.info("Image cache: reusing %s", folder)
        return ImageCache(index, np.load(folder / "pixels.npy", mmap_mode="r"), folder)
    if folder is not None:
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
        staging.mkdir(parents=True, exist_ok=True)
        pixels = np.lib.format.open_memmap(
            staging / "pixels.npy", mode="w+", dtype=np.uint8, shape=(int(sizes.sum()),)
        )
    else:
        pixels = np.empty(int(sizes.sum()), dtype=np.uint8)
    logger.info("Image cache: decoding %d images once (%s, %.0f MB)", len(sources), mode, sizes.sum() / 2**20)

    def decode(position: int) -> None:
        offset, height, width = (int(value) for value in index[position, :3])
        _decode_into(pixels[offset : offset + height * width * 3], *sources[position], height, width)

    with ThreadPoolExecutor(max_workers=cores_per_process()) as pool:
        list(pool.map(decode, range(len(sources))))
    if folder is None:
        return ImageCache(index, pixels)
    pixels.flush()
    np.save(staging / "index.npy", index)
    try:
        staging.rename(folder)  # whole or absent: a run killed mid-build leaves only a .partial folder
    except OSError:  # another process finished the same cache first; both hold the same pixels
        shutil.rmtree(staging, ignore_errors=True)
    return ImageCache(index, np.load(folder / "pixels.npy", mmap_mode="r"), folder)
