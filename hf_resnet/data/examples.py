"""A handful of the user's own validation images, kept next to the model for people to try it on.

A demo or a model card's widget is judged by its first click; a picture from the model's own
classes gets a meaningful answer where a random photo from the web would not. They come from
the validation split (never from training images, which the model has memorised), one per class,
shrunk so that a model folder with hundreds of classes stays a few megabytes. Each carries
`EXAMPLE_MARKER` as its JPEG comment: the record that it is ours, so a later run replaces it, and
never a picture the user put in the folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .images import IMAGE_EXTENSIONS, open_image, to_rgb

#: Folder, inside a model folder (and its Hub repo), that holds the example images.
EXAMPLES_DIR = "examples"
#: Longest side of a kept example: enough for the demo to show, small enough for the repo.
EXAMPLE_MAX_SIDE = 256
#: More classes than this keep examples for the first ones only: a demo shows a page of them anyway.
MAX_EXAMPLES = 50
#: The JPEG comment of every example this package writes: only images carrying it are replaced or removed.
EXAMPLE_MARKER = b"hf_resnet example: written from the validation split, replaced by the next run"

logger = logging.getLogger(__name__)


def example_name(index: int, label: str) -> str:
    """A file name that sorts in class order and says the label, safe on every file system.

    >>> example_name(3, "golden retriever / dog")
    '003_golden_retriever_dog.jpg'
    """
    safe = re.sub(r"[^\w.-]+", "_", label).strip("._") or "class"
    return f"{index:03d}_{safe[:60]}.jpg"


def keep_examples(split, labels: list[str], output_dir: str | Path, max_examples: int = MAX_EXAMPLES) -> list[Path]:
    """Save the first image of each class in `split` (a dataset with `image` and `label`) as a small JPEG.

    Returns the written paths. The examples an earlier run wrote are replaced, so a re-run never mixes
    images from two datasets; any other image in the folder is the user's and stays, one of the same
    name as an example included (that class then has none written, with a warning).
    """
    folder = Path(output_dir) / EXAMPLES_DIR
    first: dict[int, int] = {}
    for row, label in enumerate(split["label"]):
        # A multi-label image is the example of each class it shows.
        for index in [i for i, value in enumerate(label) if value > 0.5] if isinstance(label, list) else [label]:
            first.setdefault(int(index), row)
    if folder.exists() and not folder.is_dir():
        logger.warning("Kept %s, a file this package did not write: no examples saved", folder)
        return []
    for old in written_examples(output_dir):
        old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label in sorted(first)[:max_examples]:
        path = folder / example_name(label, labels[label])
        if path.exists():
            logger.warning(
                "Kept %s, an image this package did not write: no example saved for %r", path, labels[label]
            )
            continue
        image = _picture(split[first[label]]["image"])
        image.thumbnail((EXAMPLE_MAX_SIDE, EXAMPLE_MAX_SIDE))
        image.save(path, quality=90, comment=EXAMPLE_MARKER)
        written.append(path)
    return written


def written_example(path: Path) -> bool:
    """Whether the image at `path` is an example this package wrote (its JPEG comment is `EXAMPLE_MARKER`)."""
    try:
        with Image.open(path) as image:
            return image.info.get("comment") == EXAMPLE_MARKER
    except (OSError, UnidentifiedImageError):
        return False


def written_examples(model_dir: str | Path) -> list[Path]:
    """The examples in a model folder that this package wrote: the only ones a run replaces or removes."""
    return [path for path in find_examples(model_dir) if written_example(path)]


def _picture(item) -> Image.Image:
    # A streamed validation split keeps its images undecoded ({"bytes", "path"}); an indexed one decodes them.
    if isinstance(item, dict):
        return open_image(item.get("bytes") or item["path"], name=item.get("path"))
    return to_rgb(item)


def find_examples(model_dir: str | Path) -> list[Path]:
    """The example images of a model folder, in class order (none for a folder trained without them)."""
    folder = Path(model_dir) / EXAMPLES_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
