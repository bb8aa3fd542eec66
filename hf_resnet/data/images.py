"""Turning whatever a user's disk holds into the RGB picture a ResNet was trained on.

Photo folders nobody curated hold CMYK JPEGs from print workflows, palette PNGs with
transparency, 16-bit scans and phone photos whose pixels are stored sideways with an EXIF
"rotate me" tag. `PIL.Image.convert("RGB")` alone gets several of these wrong (16-bit
images saturate to white, transparent pixels turn black, EXIF rotation is ignored), so
every path into the model, training and inference alike, goes through `to_rgb`.
"""

from __future__ import annotations

import io
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: Extensions treated as images when scanning folders; anything else in a class folder is
#: reported, because a stray file there usually means a mislabelled or half-copied dataset.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)


#: Seconds to wait for an image URL; a hung server should not hang a batch job.
URL_TIMEOUT_S = 10.0
#: Largest download accepted from a URL (bytes). 20 MB holds any photo; more is likely not an image.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
#: Most pixels decoded in full (64 MP, 8000x8000). A model sees a few hundred pixels a side, and a small file
#: can hold a huge image (a 12000x12000 1-bit PNG is 17.5 KB and would take gigabytes as RGB floats).
#: Larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg; anything else that large is refused.
MAX_PIXELS = 64_000_000
#: Everything `load_picture` accepts.
Picture = str | os.PathLike | bytes | Image.Image | np.ndarray | torch.Tensor


class ImageError(ValueError):
    """An input that is not a usable image; the message names it and says what to do."""

    def __init__(self, source: str, problem: str, hint: str = ""):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}" + (f". {hint}" if hint else ""))


def _white_background(image: Image.Image) -> Image.Image:
    # Transparent pixels carry arbitrary (often black) colour; white is what a viewer shows.
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    # PIL's convert("L") clips 16-bit values at 255, which turns most scans pure white.
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    else:
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = array / peak * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Return `image` upright, in 8-bit RGB, whatever mode it was stored in.

    >>> to_rgb(Image.new("CMYK", (4, 4))).mode
    'RGB'
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_bit_depth_to_l(image).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        return _white_background(image)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _white_background(image)
    return image.convert("RGB")


#: EXIF tag of the stored orientation; values 5-8 mean the upright image is the stored one turned 90 degrees.
ORIENTATION_TAG = 0x0112


def stored_sideways(image: Image.Image) -> bool:
    """Whether the upright picture is `image` turned 90 degrees (its EXIF orientation), read from the header only."""
    return image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)


@contextmanager
def opened(source: str | os.PathLike | bytes, name: str | None = None) -> Iterator[Image.Image]:
    """Open a path or raw bytes with PIL; any decoding failure inside the block becomes an `ImageError` naming it.

    Shared by the full decode (`open_image`) and the training loader's reduced-size crop decode,
    so both report a bad file the same way.

    >>> with opened(Path("missing.jpg")) as image:
    ...     pass
    Traceback (most recent call last):
    ...
    hf_resnet.data.images.ImageError: missing.jpg: no such file. Check the path
    """
    name = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    if not isinstance(source, bytes) and Path(source).is_dir():
        raise ImageError(name, "a folder, not an image", "Pass the image files inside it, e.g. FOLDER/*.jpg")
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageError(name, "no such file", "Check the path")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            yield image
    except UnidentifiedImageError:
        raise ImageError(name, "not an image PIL can decode", "Remove it or convert it to JPEG/PNG") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(name, f"truncated or corrupt image ({error})", "Re-export or remove the file") from None


def open_image(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """Decode a file path or raw bytes completely, raising `ImageError` naming the input.

    Decoding completely (not just reading the header) is what catches truncated JPEGs,
    which PIL otherwise opens happily and only fails on later, deep inside a DataLoader.

    >>> open_image(Path("missing.jpg"))
    Traceback (most recent call last):
    ...
    hf_resnet.data.images.ImageError: missing.jpg: no such file. Check the path
    """
    with opened(source, name) as image:
        _within_pixel_budget(image, name or ("<bytes>" if isinstance(source, bytes) else str(source)))
        image.load()
        return to_rgb(image)


def _within_pixel_budget(image: Image.Image, name: str) -> None:
    """Shrink a JPEG larger than `MAX_PIXELS` while decoding (DCT scaling); refuse any other image that large."""
    budget = MAX_PIXELS  # read at call time, so callers can change it
    if image.width * image.height > budget and image.format == "JPEG":
        scale = math.ceil(math.sqrt(image.width * image.height / budget))
        image.draft(image.mode, (math.ceil(image.width / scale), math.ceil(image.height / scale)))
    if image.width * image.height > budget:
        raise ImageError(
            name,
            f"{image.width}x{image.height} pixels, over the {budget / 1e6:g}-megapixel limit for a full decode",
            "Downscale it first: the model sees a few hundred pixels a side",
        )


def _fetch_url(url: str) -> bytes:
    timeout, max_bytes = URL_TIMEOUT_S, MAX_DOWNLOAD_BYTES  # read at call time, so callers can change them
    request = urllib.request.Request(url, headers={"User-Agent": "hf_resnet"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and int(length) > max_bytes:
                raise ImageError(url, f"download of {int(length)} bytes exceeds the {max_bytes}-byte limit")
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ImageError(url, f"could not download ({error})", "Check the URL and the network") from None
    if len(data) > max_bytes:
        raise ImageError(url, f"download exceeds the {max_bytes}-byte limit")
    return data


def _array_to_image(array: np.ndarray, name: str) -> Image.Image:
    # Arrays follow numpy/OpenCV convention (HWC); tensors are moved to HWC before coming here.
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise ImageError(
            name,
            f"wrong shape {tuple(array.shape)}",
            "Expected HxW, HxWx1, HxWx3 or HxWx4 (a list of images for a batch)",
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise ImageError(name, "float pixels outside [0, 1]", "Scale floats to [0, 1] or pass uint8 0-255")
        array = np.rint(array * 255.0).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = array.astype(np.int32) if array.ndim == 2 else (array // 257).astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise ImageError(name, f"unsupported dtype {array.dtype}", "Pass uint8 (0-255) or float (0-1) pixels")
    if array.dtype == np.int32:  # 16-bit greyscale: let to_rgb spread the full range
        return to_rgb(Image.fromarray(array, mode="I"))
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def _tensor_to_image(tensor: torch.Tensor, name: str) -> Image.Image:
    array = tensor.detach().cpu().numpy()
    # torchvision convention is CHW; HWC is accepted when the first axis cannot be channels.
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    return _array_to_image(array, name)


def describe(source: Any) -> str:
    if isinstance(source, (np.ndarray, torch.Tensor)):
        kind = "numpy array" if isinstance(source, np.ndarray) else "tensor"
        return f"<{kind} of shape {tuple(source.shape)}, dtype {source.dtype}>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def load_picture(source: Picture, name: str | None = None) -> Image.Image:
    """Turn any supported input into an upright 8-bit RGB PIL image; errors name the input.

    Accepts a path, an http(s) URL, raw bytes, a PIL image (any mode), a numpy array (HWC uint8
    or float in [0, 1]) or a tensor (CHW or HWC), so callers never convert by hand.

    >>> load_picture(np.zeros((4, 6, 3), dtype=np.uint8)).size
    (6, 4)
    """
    name = name or describe(source)
    if isinstance(source, Image.Image):
        try:
            source.load()
            return to_rgb(source)
        except (OSError, ValueError) as error:
            raise ImageError(name, f"truncated or corrupt image ({error})") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            return open_image(bytes(source))
        except ImageError as error:
            raise ImageError(name, error.problem) from None
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        try:
            return open_image(_fetch_url(source))
        except ImageError as error:
            raise ImageError(source, error.problem) from None
    if isinstance(source, (str, os.PathLike)):
        return open_image(source)
    if isinstance(source, np.ndarray):
        return _array_to_image(source, name)
    if isinstance(source, torch.Tensor):
        return _tensor_to_image(source, name)
    raise ImageError(
        name, f"unsupported input type {type(source).__name__}", "Pass a path, URL, bytes, image or array"
    )
