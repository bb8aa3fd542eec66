"""Turning whatever a user's disk holds into the RGB picture a ResNet was trained on.

Photo folders nobody curated hold CMYK JPEGs from print workflows, palette PNGs with
transparency, 16-bit scans and phone photos whose pixels are stored sideways with an EXIF
"rotate me" tag. `PIL.Image.convert("RGB")` alone gets several of these wrong (16-bit
images saturate to white, transparent pixels turn black, EXIF rotation is ignored), so
every path into the model, training and inference alike, goes through `to_rgb`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Extensions treated as images when scanning folders; anything else in a class folder is
#: reported, because a stray file there usually means a mislabelled or half-copied dataset.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)


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


@contextmanager
def opened(source: str | os.PathLike | bytes, name: str | None = None) -> Iterator[Image.Image]:
    """Open a path or raw bytes with PIL; any decoding failure inside the block becomes an `ImageError` naming it.

    Shared by the full decode (`open_image`) and the training loader's reduced-size crop decode,
    so both report a bad file the same way.

    >>> with opened(Path("missing.jpg")) as image:
    ...     pass
    Traceback (most recent call last):
    ...
    hf_resnet.images.ImageError: missing.jpg: no such file. Check the path
    """
    name = name or ("<bytes>" if isinstance(source, bytes) else str(source))
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
    hf_resnet.images.ImageError: missing.jpg: no such file. Check the path
    """
    with opened(source, name) as image:
        image.load()
        return to_rgb(image)
