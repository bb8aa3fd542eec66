"""Training images decoded once: each step then only crops, flips and normalises (FFCV's idea, in our data path).

Decoding a JPEG is most of a training sample's CPU cost, and it is the same work every epoch.
The cache decodes each training image once, upright RGB, shrunk so its shortest side is a little
more than the model's input side (`SIDE_MARGIN`), and keeps the uint8 pixels of all images in one
flat array: in memory, or in a file under the cache folder that later runs on the same data and
processor reuse (its name is a hash of every image's bytes and of the output size). How a file on disk
is published whole, checked before reuse and cleared is data/cache_store.py's part.

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
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ..data import cache_store
from ..data.cache_store import CacheError, CacheUnwritable, cache_root
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
#: Decoded bytes written to disk at a time: the pixels of the images in between are held in memory once.
CHUNK_BYTES = 64 * 2**20

__all__ = ["CacheError", "ImageCache", "build", "cache_root", "decide_mode", "estimated_bytes", "prepare"]


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


def decide_mode(requested: str | None, dataset: Dataset, geometry: Geometry, processes: int = 1) -> tuple[str, str]:
    """`(mode, why)`: the mode asked for, or by default the one the decoded copy fits (`BUDGET_SHARE`).

    `disk` where it fits both in the memory available (its pages are read at random, so they must stay
    in the page cache) and in the disk free under `cache_root()`; `memory` (one copy per process) where
    it fits the memory only; otherwise `off`. `why` names the cache folder as the user set it
    (`cache_store.shown_root`), never this machine's path: recipe.json records it, and is pushed.
    """
    unusable = cache_store.root_problem()
    if requested == "disk" and unusable:
        raise CacheError(f"--image_cache disk: {unusable}; set HF_RESNET_CACHE to a writable folder", usage=True)
    if requested is not None:
        return requested, f"--image_cache {requested}"
    import psutil

    size = estimated_bytes(dataset, geometry)
    memory, disk = psutil.virtual_memory().available, 0 if unusable else _free_disk()
    facts = f"decoded copy about {size / 2**20:,.0f} MB; {memory / 2**30:,.1f} GB of memory available"
    if unusable:
        logger.warning("Image cache: not on disk: %s", unusable)
    fits_disk = size <= BUDGET_SHARE * disk and size + cache_store.SPARE_BYTES <= disk  # as the build checks
    if size <= BUDGET_SHARE * memory and fits_disk:
        return "disk", f"{facts}, {disk / 2**30:,.1f} GB free in {cache_store.shown_root()}"
    shown = cache_store.shown_root()
    where = f"{shown} cannot be written" if unusable else f"too little disk free in {shown} ({disk / 2**30:,.1f} GB)"
    if size * processes <= BUDGET_SHARE * memory:
        return "memory", f"{facts}; {where}"
    return "off", f"{facts}: over a quarter of it"


def _free_disk() -> int:
    return cache_store.free_bytes()


@dataclass
class ImageCache:
    """Every training image's shrunk uint8 pixels in one flat array, and where each one lies in it."""

    #: Per image: offset in `pixels`, cached height and width, original (upright) height and width.
    index: np.ndarray
    pixels: np.ndarray | None
    #: The folder of the memory-mapped file (`disk`), opened again in each process that unpickles the cache.
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn gets the file's path, not a copy of its pixels.
        return {**self.__dict__, "pixels": None if self.path is not None else self.pixels}

    def image(self, position: int) -> np.ndarray:
        if self.pixels is None:
            self.pixels = _mapped(self.path)
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
    key.update(f"v{cache_store.FORMAT_VERSION} {SIDE_MARGIN} {geometry.height}x{geometry.width}".encode())
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


def _mapped(folder: Path) -> np.ndarray:
    return np.memmap(folder / cache_store.PIXELS_FILE, dtype=np.uint8, mode="r")


def _decode_range(pool, target: np.ndarray, base: int, positions: range, index: np.ndarray, sources: list) -> None:
    """Decode the images at `positions` into `target`, which starts at byte `base` of the whole cache.

    On any exception, Ctrl-C included, the images not yet started are cancelled and the running ones
    awaited, so nothing writes into `target` (or a folder being removed) after this returns.
    """

    def decode(position: int) -> None:
        offset, height, width = (int(value) for value in index[position, :3])
        start = offset - base
        _decode_into(target[start : start + height * width * 3], *sources[position], height, width)

    futures = [pool.submit(decode, position) for position in positions]
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


def _chunks(index: np.ndarray, sizes: np.ndarray) -> Iterator[range]:
    """Consecutive runs of images of about `CHUNK_BYTES` (at least one image each)."""
    start = 0
    while start < len(index):
        end = start + 1
        while end < len(index) and index[end, 0] + sizes[end] - index[start, 0] <= CHUNK_BYTES:
            end += 1
        yield range(start, end)
        start = end


def _write(folder: Path, pool, index: np.ndarray, sizes: np.ndarray, sources: list) -> str:
    """Decode every image into `folder`'s pixel file, chunk by chunk, with ordinary writes; returns its checksum."""
    digest = hashlib.blake2b(digest_size=16)
    with (folder / cache_store.PIXELS_FILE).open("wb") as file:
        for positions in _chunks(index, sizes):
            base = int(index[positions.start, 0])
            chunk = np.empty(int(index[positions.stop - 1, 0] + sizes[positions.stop - 1]) - base, dtype=np.uint8)
            _decode_range(pool, chunk, base, positions, index, sources)
            digest.update(chunk)
            file.write(chunk.data)
        file.flush()
        os.fsync(file.fileno())  # a full disk may only show here, on a file system that allocates late
    return digest.hexdigest()


def _index_digest(index: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(index).tobytes(), digest_size=16).hexdigest()


def _reused(folder: Path, index: np.ndarray) -> ImageCache | None:
    """The published cache in `folder` if it passes its check; a failing one is removed, with one warning."""
    if not folder.is_dir():
        return None
    why = cache_store.problem(folder, _index_digest(index))
    if why is None:
        logger.info("Image cache: reusing %s", folder)
        return ImageCache(index, _mapped(folder), folder)
    logger.warning("Image cache: %s failed its check (%s); building it again", folder, why)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _remove_staging(staging: Path, created_root: bool) -> None:
    """Remove a partial folder, and the cache folder too when this build made it and it holds nothing else."""
    shutil.rmtree(staging, ignore_errors=True)
    if created_root:
        try:
            staging.parent.rmdir()
        except OSError:  # another run's cache or partial folder is there now, or it was never made
            pass


def _build_on_disk(folder: Path, pool, index: np.ndarray, sizes: np.ndarray, sources: list) -> ImageCache:
    """Write the cache into a partial folder, publish it by one rename; on any failure nothing is left behind."""
    needed, created = int(sizes.sum()), not folder.parent.exists()
    try:
        cache_store.remove_abandoned()
        free = cache_store.free_bytes()
    except OSError as error:
        raise CacheUnwritable(f"the cache folder cannot be written ({error.strerror or error})", usage=True) from None
    if needed + cache_store.SPARE_BYTES > free:
        raise CacheUnwritable(
            f"too little disk free in {cache_store.shown_root()}: the cache needs {needed / 2**20:,.1f} MB "
            f"and {cache_store.SPARE_BYTES / 2**20:,.0f} MB to spare, {free / 2**20:,.1f} MB are free"
        )
    staging = folder.with_name(cache_store.staging_name(folder.name))
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        logger.info("Image cache: decoding %d images once (disk, %.0f MB)", len(sources), needed / 2**20)
        pixel_digest = _write(staging, pool, index, sizes, sources)
        cache_store.write_manifest(staging, len(sources), _index_digest(index), pixel_digest)
    except OSError as error:
        _remove_staging(staging, created)
        if cache_store.is_disk_full(error):
            raise CacheUnwritable(
                f"the disk of {cache_store.shown_root()} filled up while the cache was written"
            ) from None
        raise CacheUnwritable(f"the cache could not be written ({error.strerror or error})") from None
    except BaseException:  # Ctrl-C, SIGTERM, an unreadable image: no partial folder stays
        _remove_staging(staging, created)
        raise
    try:
        staging.rename(folder)  # whole or absent
    except OSError:  # another process published the same cache first; both hold the same pixels
        shutil.rmtree(staging, ignore_errors=True)
        return _reused(folder, index) or _build_on_disk(folder, pool, index, sizes, sources)
    return ImageCache(index, _mapped(folder), folder)


def build(dataset: Dataset, geometry: Geometry, mode: str) -> ImageCache | None:
    """The cache of `dataset`'s images for `geometry`'s output size, built or (`disk`) reused; None when `off`.

    Raises `CacheUnwritable` when a disk cache cannot be written (`prepare` decides what that means).
    """
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
        if mode == "disk":
            folder = cache_root() / _key([digest for _, digest in inspected], geometry)
            return _reused(folder, index) or _build_on_disk(folder, pool, index, sizes, sources)
        pixels = np.empty(int(sizes.sum()), dtype=np.uint8)
        logger.info("Image cache: decoding %d images once (memory, %.0f MB)", len(sources), sizes.sum() / 2**20)
        _decode_range(pool, pixels, 0, range(len(sources)), index, sources)
    return ImageCache(index, pixels)


def prepare(dataset: Dataset, geometry: Geometry, choice: dict, asked: bool) -> tuple[ImageCache | None, dict]:
    """The cache `choice` (`{"mode", "why"}`) names, and the choice as it turned out.

    A disk cache that cannot be written (a full disk, an unusable cache folder) ends the run in one line
    (`CacheError`) when the user asked for it (`asked`); when it was the default's choice, the run goes on
    without a cache, with one warning, and the record says so.
    """
    try:
        return build(dataset, geometry, choice["mode"]), choice
    except CacheUnwritable as error:
        if asked:
            advice = "free space or set HF_RESNET_CACHE to another disk, or use --image_cache memory or off"
            raise CacheError(f"--image_cache disk: {error.reason}; {advice}", usage=error.usage) from None
        logger.warning("Image cache: %s; training without one", error.reason)
        return None, {"mode": "off", "why": f"a disk cache was chosen, but {error.reason}"}
