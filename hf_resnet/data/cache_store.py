"""The decoded-image caches on disk as a store: published whole, checked before reuse, listed and cleared.

A cache is a folder named by its key (a hash of the images' bytes and the output size) under
`cache_root()`, holding `pixels.bin` (every image's uint8 pixels, one flat run of bytes) and
`manifest.json` (what the pixels are, their length and checksums). It is written into
`<key>.<pid>.<host>.partial` with ordinary writes, which report a full disk as an error (a page of a
memory map written on a full disk kills the process with SIGBUS instead), and renamed to `<key>` once
the manifest, written last, is in place: a folder named by a key is whole or absent. A partial folder
whose process is gone is removed by the next build and by `hf-resnet cache clear`.

A cache is checked before each reuse, cheaply: the manifest's format, the pixels' byte length and a
checksum of `SAMPLED_BLOCKS` blocks spread over them (a truncated, zeroed or overwritten file fails
it); `hf-resnet cache list --verify` checks every byte. Only stdlib here: `hf-resnet cache` stays torch-free.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

#: Bumped whenever what a cache folder holds changes, so an old folder is never read as a new one.
FORMAT_VERSION = 2
PIXELS_FILE = "pixels.bin"
MANIFEST_FILE = "manifest.json"
#: Blocks of the pixels read to check a cache before reuse, spread evenly from its first byte to its last.
SAMPLED_BLOCKS = 64
BLOCK_BYTES = 4096
#: Free space a disk cache leaves on its disk: the same disk often holds the run's checkpoints.
SPARE_BYTES = 256 * 2**20
_KEY = re.compile(r"^[0-9a-f]{32}$")
_PARTIAL = re.compile(r"^(?P<key>[0-9a-f]{32})\.(?P<pid>\d+)\.(?P<host>[\w-]+)\.partial$")


class CacheError(Exception):
    """A disk cache that was asked for (`--image_cache disk`) and cannot be used: the one line the user sees.

    `usage` is True when a setting is wrong (`HF_RESNET_CACHE`), False when the disk is (full).
    """

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


class CacheUnwritable(OSError):
    """The disk cache cannot be written here and now; `reason` says why without naming a folder of the machine."""

    def __init__(self, reason: str, usage: bool = False):
        super().__init__(reason)
        self.reason, self.usage = reason, usage


def cache_root() -> Path:
    """Where `disk` caches live: `$HF_RESNET_CACHE/images`, by default `~/.cache/hf_resnet/images`.

    An empty HF_RESNET_CACHE counts as unset: as a path it would be the working folder.
    """
    return Path(os.environ.get("HF_RESNET_CACHE") or Path.home() / ".cache" / "hf_resnet") / "images"


def shown_root() -> str:
    """The cache folder as the user set it, without this machine's home folder: for records that travel."""
    return "$HF_RESNET_CACHE/images" if os.environ.get("HF_RESNET_CACHE") else "~/.cache/hf_resnet/images"


def root_problem() -> str | None:
    """Why no cache can be written under `cache_root()` (a file in its path, no write access), or None.

    Asked of the nearest folder that exists, so checking creates nothing.
    """
    folder = cache_root()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    setting = "HF_RESNET_CACHE" if os.environ.get("HF_RESNET_CACHE") else "the default cache folder"
    if not folder.is_dir():
        inside = "" if folder == cache_root().parent else f" ({folder} is a file)"
        return f"{setting} {cache_root().parent} is a file, not a folder{inside}"
    if not os.access(folder, os.W_OK | os.X_OK):  # also False on a read-only file system, even for root
        return f"{setting} {cache_root().parent} cannot be written (no write access to {folder})"
    return None


def free_bytes() -> int:
    folder = cache_root()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _host() -> str:
    return re.sub(r"[^\w-]", "-", socket.gethostname()) or "host"


def staging_name(key: str) -> str:
    """The partial folder of this process: the pid and host let a later build tell whether its writer is gone."""
    return f"{key}.{os.getpid()}.{_host()}.partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def abandoned(name: str) -> bool:
    """Whether `name` is a partial folder left by a process of this machine that no longer runs."""
    match = _PARTIAL.match(name)
    if match is None or match["host"] != _host():  # another machine's process, on a shared disk: not ours to judge
        return False
    return int(match["pid"]) != os.getpid() and not _alive(int(match["pid"]))


def remove_abandoned() -> list[Path]:
    """Remove the partial folders of dead processes under `cache_root()`; returns what was removed."""
    root = cache_root()
    removed = [path for path in root.iterdir() if path.is_dir() and abandoned(path.name)] if root.is_dir() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _sampled_digest(path: Path, length: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    last = max(0, length - BLOCK_BYTES)
    with path.open("rb") as file:
        for block in range(SAMPLED_BLOCKS):
            file.seek(last * block // (SAMPLED_BLOCKS - 1))
            digest.update(file.read(BLOCK_BYTES))
    return digest.hexdigest()


def _full_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        while chunk := file.read(2**24):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, images: int, index_digest: str, pixel_digest: str) -> None:
    """Written last into a finished partial folder: what its pixels are, and how to check them."""
    length = (folder / PIXELS_FILE).stat().st_size
    manifest = {
        "format": FORMAT_VERSION,
        "images": images,
        "dtype": "uint8",
        "shape": [length],
        "bytes": length,
        "index": index_digest,
        "blake2b": pixel_digest,
        "sampled_blake2b": _sampled_digest(folder / PIXELS_FILE, length),
    }
    with (folder / MANIFEST_FILE).open("w") as file:
        json.dump(manifest, file, indent=2)
        file.flush()
        os.fsync(file.fileno())


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def problem(folder: Path, index_digest: str | None = None, full: bool = False) -> str | None:
    """Why the cache in `folder` must not be used (for images whose index hashes to `index_digest`), or None.

    Cheap unless `full`: the manifest, the byte length and a sampled checksum.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return f"no readable {MANIFEST_FILE}"
    if manifest.get("format") != FORMAT_VERSION:
        return f"format {manifest.get('format')}, not {FORMAT_VERSION}"
    if index_digest is not None and manifest.get("index") != index_digest:
        return "made for other image sizes"
    try:
        length = (folder / PIXELS_FILE).stat().st_size
        if length != manifest.get("bytes") or manifest.get("shape") != [length] or manifest.get("dtype") != "uint8":
            return f"{PIXELS_FILE} holds {length:,} bytes, its manifest says {manifest.get('bytes')}"
        if _sampled_digest(folder / PIXELS_FILE, length) != manifest.get("sampled_blake2b"):
            return f"{PIXELS_FILE} does not match its checksum"
        if full and _full_digest(folder / PIXELS_FILE) != manifest.get("blake2b"):
            return f"{PIXELS_FILE} does not match its checksum"
    except OSError as error:
        return f"{PIXELS_FILE} cannot be read ({error.strerror or error})"
    return None


def is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Entry:
    """One folder under `cache_root()` as `hf-resnet cache list` shows it."""

    path: Path
    bytes: int
    state: str
    images: int | None = None

    @property
    def removable(self) -> bool:
        return not self.state.startswith("being written")


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def entries(full: bool = False) -> list[Entry]:
    """The caches and partial folders under `cache_root()`; anything else there is not ours and not listed."""
    root = cache_root()
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir():
            continue
        if _KEY.match(path.name):
            why = problem(path, full=full)
            manifest = read_manifest(path) or {}
            found.append(Entry(path, _size(path), f"damaged: {why}" if why else "ok", manifest.get("images")))
        elif match := _PARTIAL.match(path.name):
            state = "left by a stopped run" if abandoned(path.name) else f"being written by process {match['pid']}"
            found.append(Entry(path, _size(path), state))
    return found


def clear() -> tuple[list[Entry], list[Entry]]:
    """Remove every cache and abandoned partial folder; returns (removed, kept because a run is writing them)."""
    removed, kept = [], []
    for entry in entries():
        if entry.removable:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry)
        else:
            kept.append(entry)
    return removed, kept
