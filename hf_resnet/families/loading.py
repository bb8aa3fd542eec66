"""Model folders and Hub ids checked before `from_pretrained`, so a load failure names the path and what is missing.

`from_pretrained` reports a missing local folder as "Repo id must be in the form...", a
truncated `model.safetensors` as a header error without the file's name, and an empty folder
as a missing config. Training (`model/build.py`) and inference (`inference/classifier.py`)
both look at a local folder here first, and turn what `from_pretrained` still raises into a
`ModelLoadError` that names the path or repo.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

#: Weight files `from_pretrained` reads, in the order it prefers them.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
CONFIG_FILE = "config.json"
#: What a Hub repo id looks like: `name` or `owner/name`.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PROCESSOR_FILE = "preprocessor_config.json"


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the one-line message names the path or repo, what is missing and what to do."""


def looks_local(name: str | os.PathLike) -> bool:
    """True when `name` can only be a local path: it exists, or is not shaped like a Hub id (`org/name`).

    >>> looks_local("microsoft/resnet-50"), looks_local("./outputs/beans"), looks_local("a/b/c")
    (False, True, True)
    """
    text = os.fspath(name)
    if os.path.exists(text):
        return True
    shaped_like_repo = text.count("/") <= 1 and not text.startswith((".", "/", "~")) and "\\" not in text
    return not shaped_like_repo or text.endswith("/")


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be read (truncated, not safetensors), or None; reads only its header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return None
    except Exception as error:  # SafetensorError is not importable under a stable name
        return f"{path.name} is truncated or corrupt ({error})"


def _processor_in_config(folder: Path) -> bool:
    """Whether config.json holds the preprocessing, as a timm checkpoint's does (transformers' own test)."""
    from transformers.utils.generic import is_timm_local_checkpoint

    return is_timm_local_checkpoint(str(folder))


def folder_problem(folder: Path, need_processor: bool = True) -> str | None:
    """What keeps `folder` from being loaded as a model (nothing there, no config, no or broken weights), or None."""
    if not folder.exists():
        return "no such folder (and not shaped like a Hub model id)"
    if not folder.is_dir():
        return "not a folder; give the model folder (the one holding config.json)"
    if not any(folder.iterdir()):
        return "the folder is empty; give a folder written by save_pretrained or hf-resnet train"
    if not (folder / CONFIG_FILE).is_file():
        return f"no {CONFIG_FILE} in it; give a folder written by save_pretrained or hf-resnet train"
    weights = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        return f"no weights in it (looked for {', '.join(WEIGHT_FILES)})"
    if weights[0] == "model.safetensors" and (problem := safetensors_problem(folder / weights[0])):
        return f"{problem}; copy or train it again"
    if need_processor and not (folder / PROCESSOR_FILE).is_file() and not _processor_in_config(folder):
        return f"no {PROCESSOR_FILE} in it; save the model's image processor there (processor.save_pretrained)"
    return None


def source_problem(
    name: str | os.PathLike, need_processor: bool = True, revision: str | None = None, cache_dir: str | None = None
) -> str | None:
    """What keeps a model from loading (a local folder's flaw; a Hub id not on the Hub, or unreachable and not
    cached: runtime/availability.py), or None."""
    if looks_local(name):
        return folder_problem(Path(name).expanduser(), need_processor)
    from ..runtime.availability import hub_model_problem

    return hub_model_problem(os.fspath(name), revision, cache_dir)


def check_model_source(
    name: str | os.PathLike,
    flag: str,
    need_processor: bool = True,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> None:
    """Raise `ModelLoadError`, one line naming `flag`, for a model that cannot load (`source_problem`)."""
    if problem := source_problem(name, need_processor, revision, cache_dir):
        raise ModelLoadError(f"{flag} {os.fspath(name)}: {problem}")


@contextlib.contextmanager
def load_errors(name: str | os.PathLike, flag: str) -> Iterator[None]:
    """Turn `from_pretrained`'s errors (unknown repo, offline, unreadable file) into one line naming `name`."""
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError) as error:
        detail = " ".join(str(error).split())
        if len(detail) > 300:
            detail = detail[:300] + "..."
        if looks_local(name):
            problem = f"cannot load this folder ({detail})"
        else:
            problem = f"no such local folder, and not loadable from the Hub ({detail})"
        raise ModelLoadError(f"{flag} {os.fspath(name)}: {problem}") from error
